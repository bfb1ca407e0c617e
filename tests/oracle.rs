//! The one-by-one oracle: on random inputs with random errors, importing in chunks of any
//! size gives the same export and the same error as applying the records one at a time
//! (each record its own file in one run, so each is its own transaction).

use proptest::prelude::*;

use crate::common::*;

const PHONES: [&str; 4] = [
    "+79160000000",
    "+79160000001",
    "+79160000002",
    "+79160000003",
];

#[derive(Debug, Clone)]
enum Rec {
    Premise {
        id: u8,
        accounts: Vec<(u8, u8)>,
        bad_area: bool,
    },
    Client {
        id: u8,
        name: u8,
        phone: Option<u8>,
        bad_phone: bool,
        premises: Vec<(u8, u8)>,
        accounts: Vec<u8>,
    },
}

fn rec() -> impl Strategy<Value = Rec> {
    prop_oneof![
        (
            0u8..5,
            prop::collection::vec((0u8..6, 0u8..5), 0..3),
            prop::bool::weighted(0.05)
        )
            .prop_map(|(id, accounts, bad_area)| Rec::Premise {
                id,
                accounts,
                bad_area
            }),
        (
            0u8..6,
            0u8..2,
            prop::option::weighted(0.85, 0u8..4),
            prop::bool::weighted(0.04),
            prop::collection::vec((0u8..6, 0u8..3), 0..3),
            prop::collection::vec(0u8..7, 0..2)
        )
            .prop_map(
                |(id, name, phone, bad_phone, premises, accounts)| Rec::Client {
                    id,
                    name,
                    phone,
                    bad_phone,
                    premises,
                    accounts
                }
            ),
    ]
}

fn xml(recs: &[Rec]) -> String {
    let mut premises = String::new();
    let mut clients = String::new();
    // The format keeps premises and clients in two sections: the document order is all
    // premises, then all clients (see `document_order`).
    for r in recs {
        match r {
            Rec::Premise {
                id,
                accounts,
                bad_area,
            } => {
                let area = if *bad_area {
                    "<area>-3</area>"
                } else {
                    "<area>42.5</area>"
                };
                let accounts: String = accounts
                    .iter()
                    .map(|(a, n)| format!("<account id=\"A-{a}\"><number>{n}00</number></account>"))
                    .collect();
                premises.push_str(&format!(
                    "<premise id=\"P-{id}\"><address>Казань</address><number>{id}</number>{area}<accounts>{accounts}</accounts></premise>\n"
                ));
            }
            Rec::Client {
                id,
                name,
                phone,
                bad_phone,
                premises: links,
                accounts,
            } => {
                let phone = if *bad_phone {
                    Some("12")
                } else {
                    phone.map(|p| PHONES[p as usize])
                };
                let mut l = String::new();
                for (p, role) in links {
                    let role = ["owner", "tenant", "resident"][*role as usize];
                    l.push_str(&format!("<premise ref=\"P-{p}\" role=\"{role}\"/>"));
                }
                for a in accounts {
                    l.push_str(&format!("<account ref=\"A-{a}\"/>"));
                }
                clients.push_str(&client(
                    &format!("C-{id}"),
                    &format!("Клиент {name}"),
                    phone,
                    &l,
                ));
            }
        }
    }
    doc(&premises, &clients)
}

/// A file's records in document order: premises first, then clients, as `xml` writes them.
fn document_order(recs: &[Rec]) -> Vec<Rec> {
    let mut out: Vec<Rec> = recs
        .iter()
        .filter(|r| matches!(r, Rec::Premise { .. }))
        .cloned()
        .collect();
    out.extend(
        recs.iter()
            .filter(|r| matches!(r, Rec::Client { .. }))
            .cloned(),
    );
    out
}

type Outcome = (
    String,
    Option<(String, Option<String>)>,
    Option<(String, Option<String>)>,
);

fn error_of(report: &crm_import::report::RunReport) -> Option<(String, Option<String>)> {
    report
        .error
        .as_ref()
        .map(|e| (e.code.clone(), e.record_id.clone()))
}

async fn run(first: &[Rec], login: u8, second: &[Rec], chunk: Option<usize>) -> Outcome {
    let db = Db::new().await;
    db.import_as(
        "uo-2",
        SRC,
        &doc("", &client("X-1", "Чужой", Some(PHONES[3]), "")),
    )
    .await;
    let mut errors = Vec::new();
    for (i, part) in [first, second].into_iter().enumerate() {
        if i == 1 {
            db.login(PHONES[login as usize]).await;
        }
        let report = match chunk {
            Some(chunk) => {
                let path = db.file(&xml(part));
                db.import_files(ORG, SRC, &[path], chunk).await
            }
            None => {
                let files: Vec<String> = document_order(part)
                    .iter()
                    .map(|r| db.file(&xml(std::slice::from_ref(r))))
                    .collect();
                db.import_files(ORG, SRC, &files, 1).await
            }
        };
        errors.push(error_of(&report));
    }
    (db.export(ORG).await, errors[0].clone(), errors[1].clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_chunk_size_gives_the_one_by_one_result(
        first in prop::collection::vec(rec(), 0..14),
        login in 0u8..4,
        second in prop::collection::vec(rec(), 0..14),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let oracle = run(&first, login, &second, None).await;
            for chunk in [1, 2, 5, 1000] {
                let got = run(&first, login, &second, Some(chunk)).await;
                prop_assert_eq!(&got, &oracle, "chunk size {}", chunk);
            }
            Ok(())
        })?;
    }
}

/// The records with their invalid values made valid: the data as it is after the fix.
fn fixed(recs: &[Rec]) -> Vec<Rec> {
    recs.iter()
        .cloned()
        .map(|mut r| {
            match &mut r {
                Rec::Premise { bad_area, .. } => *bad_area = false,
                Rec::Client { bad_phone, .. } => *bad_phone = false,
            }
            r
        })
        .collect()
}

/// Imports `recs` in chunks of `chunk`; if that halts, fixes the file in place and resumes the
/// run. The export and the last error.
async fn resumed(recs: &[Rec], chunk: usize) -> (String, Option<(String, Option<String>)>) {
    use crm_import::pipeline::Options;
    use crm_import::run::{Job, resumable, run_import};
    use crm_import::source::Files;
    use crm_import::store::Trigger;
    let db = Db::new().await;
    let path = db.file(&xml(recs));
    let files = Files::local(std::slice::from_ref(&path));
    let job = Job {
        pipeline: None,
        org: ORG,
        source: SRC,
        files: &files,
        trigger: Trigger::Manual,
    };
    let options = || Options {
        chunk_size: chunk,
        ..Options::default()
    };
    let first = run_import(&db.store, &job, options()).await.unwrap();
    if first.report.error.is_none() {
        return (db.export(ORG).await, None);
    }
    std::fs::write(&path, xml(&fixed(recs))).unwrap();
    let resume = resumable(&db.store, ORG, first.run_id).await.unwrap();
    let again = run_import(
        &db.store,
        &job,
        Options {
            resume: Some(std::sync::Arc::new(resume)),
            ..options()
        },
    )
    .await
    .unwrap();
    (db.export(ORG).await, error_of(&again.report))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A run that halted, resumed after the fix, ends where a clean import of the fixed file
    /// does — the same export, the same error if the database still refuses a record.
    #[test]
    fn a_resumed_run_ends_where_a_clean_import_of_the_fixed_file_does(
        recs in prop::collection::vec(rec(), 0..20),
        chunk in prop::sample::select(vec![1usize, 3, 1000]),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let clean = Db::new().await;
            let report = clean.import(&xml(&fixed(&recs))).await;
            let oracle = (clean.export(ORG).await, error_of(&report));
            let got = resumed(&recs, chunk).await;
            prop_assert_eq!(&got, &oracle, "chunk size {}", chunk);
            Ok(())
        })?;
    }
}
