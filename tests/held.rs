//! A transaction the SQLite store holds across chunks: the report counts exactly what the
//! database keeps — when a record halts the run inside the held transaction, and when the
//! database fails in it.

use std::sync::Arc;

use crm_import::apply::{Applier, Flow};
use crm_import::layout::Layout;
use crm_import::model::{Record, Validated};
use crm_import::observe::Silent;
use crm_import::parse::RecordReader;
use crm_import::report::RunReport;
use crm_import::stage::Batch;
use crm_import::store::{Hold, Store};
use crm_import::validate::validate_chunk;

use crate::common::*;

/// Chunks of `size` validated records, as the pipeline hands them to the apply stage.
fn chunks(xml: &str, size: usize) -> Vec<Vec<Validated>> {
    let mut reader =
        RecordReader::from_bytes(Arc::from("held.xml"), &Layout::native(), xml.as_bytes());
    let mut parsed = Vec::new();
    while let Some(record) = reader.read_record().unwrap() {
        parsed.push(record);
    }
    parsed
        .chunks(size)
        .map(|c| validate_chunk(c.to_vec()))
        .collect()
}

/// Applies the chunks one after another without ever committing between them: the store
/// decides alone when to commit, as in a fast import whose next chunk is always waiting.
async fn apply(db: &Db, xml: &str) -> RunReport {
    apply_in(db, xml, 5, true).await
}

/// `grouping` off: every chunk commits before the next begins.
async fn apply_in(db: &Db, xml: &str, size: usize, grouping: bool) -> RunReport {
    let scope = db.store.scope(ORG, SRC).await.unwrap();
    let mut report = RunReport::default();
    let mut applier = Applier::new(&db.store, &scope, &mut report, Arc::new(Silent));
    if grouping {
        applier = applier.grouping();
    }
    for chunk in chunks(xml, size) {
        if applier.batch(Batch::Records(chunk), "held.xml").await == Flow::Halt {
            break;
        }
    }
    applier.commit("held.xml").await;
    report
}

/// The clients in the database, by number.
async fn kept(db: &Db) -> Vec<usize> {
    let mut ids: Vec<usize> = db
        .of_type(ORG, "client")
        .await
        .iter()
        .map(|c| {
            c["external_ids"][0]["id"].as_str().unwrap()[2..]
                .parse()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn a_database_failure_loses_only_records_the_report_does_not_count() {
    let db = Db::new().await;
    if db.url.starts_with("sqlite:") {
        db.execute(
            "CREATE TRIGGER refuse_c23 BEFORE INSERT ON client_external_ids WHEN NEW.ext_id = 'C-23' \
             BEGIN SELECT RAISE(ABORT, 'the disk is full'); END",
        )
        .await;
    } else {
        db.execute(
            "CREATE FUNCTION refuse_c23() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN IF NEW.ext_id = 'C-23' THEN RAISE EXCEPTION 'the disk is full'; END IF; RETURN NEW; END $$",
        )
        .await;
        db.execute(
            "CREATE TRIGGER refuse_c23 BEFORE INSERT ON client_external_ids \
             FOR EACH ROW EXECUTE FUNCTION refuse_c23()",
        )
        .await;
    }
    let report = apply(&db, &clients(1, 40)).await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "database");
    assert!(
        error.message.contains("the disk is full"),
        "{}",
        error.message
    );
    let stored = kept(&db).await;
    // Exactly what the report counts is in the database, and it is a prefix of the input.
    assert_eq!(report.records as usize, stored.len());
    assert_eq!(stored, (1..=stored.len()).collect::<Vec<_>>());
    if db.url.starts_with("sqlite:") {
        // Chunks 1–4 were held with chunk 5 and rolled back with it; the report says so.
        assert!(stored.is_empty(), "{stored:?}");
        assert!(
            error
                .message
                .contains("the 20 records applied since the last commit were rolled back"),
            "{}",
            error.message
        );
    } else {
        // PostgreSQL commits every chunk.
        assert_eq!(stored.len(), 20);
    }

    // What the message advises: once the database works again, the same input completes.
    if db.url.starts_with("sqlite:") {
        db.execute("DROP TRIGGER refuse_c23").await;
    } else {
        db.execute("DROP TRIGGER refuse_c23 ON client_external_ids")
            .await;
    }
    let report = apply(&db, &clients(1, 40)).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(kept(&db).await, (1..=40).collect::<Vec<_>>());
}

/// A held transaction commits once it has 1,875 records per MiB of the writer's cache: with
/// 1 MiB, chunks 1–4 of 500 (2,000 records) commit together, and a failure in chunk 5 rolls
/// back only chunk 5. A fixed size, or one that ignored the cache, would keep all of them in
/// one transaction and lose them all.
#[tokio::test]
async fn a_held_transaction_commits_after_a_size_set_by_the_writer_cache() {
    let settings = crm_import::store::Settings {
        cache_mib: 1,
        ..Default::default()
    };
    let db = Db::tuned(None, &settings).await;
    db.execute(
        "CREATE TRIGGER refuse_c2100 BEFORE INSERT ON client_external_ids WHEN NEW.ext_id = 'C-2100' \
         BEGIN SELECT RAISE(ABORT, 'the disk is full'); END",
    )
    .await;
    let report = apply_in(&db, &clients(1, 2_500), 500, true).await;
    assert_eq!(report.error.as_ref().unwrap().code, "database");
    let stored = kept(&db).await;
    assert_eq!((report.records, stored.len()), (2_000, 2_000));
    assert_eq!(stored, (1..=2_000).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_halt_inside_a_held_transaction_commits_the_records_before_it() {
    let db = Db::new().await;
    let mut xml = clients(1, 40);
    xml = xml.replace("+79160000023", "не телефон");
    let report = apply(&db, &xml).await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(
        (error.code.as_str(), error.record_id.as_deref()),
        ("invalid_phone", Some("C-23"))
    );
    assert_eq!(report.records, 22);
    assert_eq!(kept(&db).await, (1..=22).collect::<Vec<_>>());
}

#[tokio::test]
async fn chunks_of_one_held_transaction_see_each_others_writes() {
    // Premises in the first chunks, clients after them referring back; phones shared across
    // chunks (external ids added to cards created chunks earlier), a client repeated with
    // another name (updated).
    let premises: String = (1..=8)
        .map(|i| {
            premise(
                &format!("P-{i}"),
                &[(&format!("A-{i}"), &format!("{}", 100 + i))],
            )
        })
        .collect();
    let clients: String = (1..=14)
        .map(|i| {
            let phone = format!("+7916000000{}", i % 5);
            let name = if i == 13 {
                "Повтор".to_string()
            } else {
                format!("Клиент {i}")
            };
            let id = if i == 13 {
                "C-3".to_string()
            } else {
                format!("C-{i}")
            };
            let links = format!(
                "<premise ref=\"P-{}\" role=\"owner\"/><account ref=\"A-{}\"/>",
                i % 8 + 1,
                i % 8 + 1
            );
            client(&id, &name, Some(&phone), &links)
        })
        .collect();
    let xml = doc(&premises, &clients);

    let held = Db::new().await;
    let report = apply_in(&held, &xml, 3, true).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    let one_by_one = Db::new().await;
    let expected = apply_in(&one_by_one, &xml, 1, false).await;
    assert_eq!(report.counts, expected.counts);
    assert_eq!(held.export(ORG).await, one_by_one.export(ORG).await);
}

#[tokio::test]
async fn an_abandoned_held_transaction_rolls_back_and_frees_the_writer() {
    let db = Db::new().await;
    let scope = db.store.scope(ORG, SRC).await.unwrap();
    let chunk = chunks(&clients(1, 5), 5).remove(0);
    let records: Vec<&Record> = chunk.iter().map(|v| v.body.as_ref().unwrap()).collect();
    let mut held = db.store.hold();
    db.store
        .apply_chunk(&scope, &records, &mut held)
        .await
        .unwrap();
    let was_held = held.open();
    // Dropped without a commit, as when a run's task is cancelled.
    drop(held);
    // The writer is free again, and nothing of the abandoned transaction is left.
    let report = apply(&db, &clients(6, 10)).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    if db.url.starts_with("sqlite:") {
        assert!(was_held);
        assert_eq!(kept(&db).await, (6..=10).collect::<Vec<_>>());
    } else {
        // PostgreSQL committed the chunk before returning.
        assert!(!was_held);
        assert_eq!(kept(&db).await, (1..=10).collect::<Vec<_>>());
    }
}

/// A nightly re-import, where every record comes back unchanged, holds its transaction
/// across chunks like a fresh import: a chunk that writes nothing still leaves the
/// transaction open for the next one on SQLite, and the report still counts every record.
#[tokio::test]
async fn a_re_import_that_writes_nothing_is_held_like_a_fresh_import() {
    let db = Db::new().await;
    let xml = clients(1, 10);
    let report = apply(&db, &xml).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    let before = db.export(ORG).await;

    let scope = db.store.scope(ORG, SRC).await.unwrap();
    let chunk = chunks(&xml, 5).remove(0);
    let records: Vec<&Record> = chunk.iter().map(|v| v.body.as_ref().unwrap()).collect();
    let mut held = db.store.hold();
    let applied = db
        .store
        .apply_chunk(&scope, &records, &mut held)
        .await
        .unwrap();
    assert_eq!(applied.outcomes.len(), 5);
    assert_eq!(held.open(), db.url.starts_with("sqlite:"));
    db.store.commit(&mut held).await.unwrap();
    assert!(!held.open());

    let report = apply(&db, &xml).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(report.counts.client.unchanged, 10);
    assert_eq!(db.export(ORG).await, before);
}
