//! SPEC §6: halt at the first error; everything before it stays, nothing after it is applied.

use crate::common::*;

fn clients(n: usize, bad: Option<usize>) -> String {
    let body: String = (1..=n)
        .map(|i| {
            let phone = if Some(i) == bad {
                "не телефон".to_string()
            } else {
                format!("+7916{i:07}")
            };
            client(&format!("C-{i}"), &format!("Клиент {i}"), Some(&phone), "")
        })
        .collect();
    doc("", &body)
}

async fn ids(db: &Db) -> Vec<String> {
    let mut ids: Vec<String> = db
        .of_type(ORG, "client")
        .await
        .iter()
        .map(|c| c["external_ids"][0]["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort_by_key(|id| id[2..].parse::<u32>().unwrap());
    ids
}

fn expected(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("C-{i}")).collect()
}

#[tokio::test]
async fn an_error_in_the_first_record_applies_nothing() {
    let db = Db::new().await;
    let path = db.file(&clients(5, Some(1)));
    let report = db.import_files(ORG, SRC, &[path], 10).await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(
        (error.code.as_str(), error.record_index),
        ("invalid_phone", Some(1))
    );
    assert_eq!(report.records, 0);
    assert!(ids(&db).await.is_empty());
}

#[tokio::test]
async fn an_error_mid_chunk_keeps_the_records_before_it() {
    for chunk in [1, 3, 4, 10, 1000] {
        let db = Db::new().await;
        let path = db.file(&clients(9, Some(6)));
        let report = db.import_files(ORG, SRC, &[path], chunk).await;
        let error = report.error.as_ref().unwrap();
        assert_eq!(
            (error.record_index, error.record_id.as_deref()),
            (Some(6), Some("C-6")),
            "chunk {chunk}"
        );
        assert_eq!(error.field.as_deref(), Some("phone"));
        assert!(error.line.is_some() && error.column.is_some());
        assert_eq!(report.records, 5, "chunk {chunk}");
        assert_eq!(ids(&db).await, expected(1..=5), "chunk {chunk}");
    }
}

/// A chunk bigger than the batches the stages hand over (1,000 records) is gathered from
/// several of them; an invalid record in a later batch still keeps everything before it.
#[tokio::test]
async fn an_error_in_a_chunk_gathered_from_several_batches_keeps_the_records_before_it() {
    for (chunk, bad) in [(2500, 2100), (2500, 1000), (1500, 1501), (2500, 2600)] {
        let db = Db::new().await;
        let path = db.file(&clients(3000, Some(bad)));
        let report = db.import_files(ORG, SRC, &[path], chunk).await;
        let error = report.error.as_ref().unwrap();
        let at = format!("chunk {chunk}, error at {bad}");
        assert_eq!(error.record_index, Some(bad as u64), "{at}");
        assert_eq!(report.records, bad as u64 - 1, "{at}");
        assert_eq!(ids(&db).await, expected(1..=bad - 1), "{at}");
    }
}

#[tokio::test]
async fn an_error_in_the_last_record_keeps_all_others() {
    let db = Db::new().await;
    let path = db.file(&clients(7, Some(7)));
    let report = db.import_files(ORG, SRC, &[path], 3).await;
    assert_eq!(report.error.as_ref().unwrap().record_index, Some(7));
    assert_eq!(ids(&db).await, expected(1..=6));
}

#[tokio::test]
async fn a_refused_record_mid_chunk_keeps_the_records_before_it() {
    let db = Db::new().await;
    let path = testdata("defects/unknown_premise_ref.xml");
    let report = db.import_files(ORG, SRC, &[path], 1000).await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(
        (
            error.code.as_str(),
            error.record_id.as_deref(),
            error.record_index
        ),
        ("unknown_premise_ref", Some("C-2"), Some(4))
    );
    assert_eq!(report.counts.premise.created, 2);
    assert_eq!(report.counts.client.created, 1);
    assert_eq!(ids(&db).await, vec!["C-1"]);
}

#[tokio::test]
async fn an_error_in_the_second_file_keeps_the_first_and_skips_the_third() {
    let db = Db::new().await;
    let first = db.file(&doc("", &client("C-1", "Первый", Some("+79160000001"), "")));
    let second = db.file(&doc(
        "",
        &format!(
            "{}{}",
            client("C-2", "Второй", Some("+79160000002"), ""),
            client("C-3", "", Some("+79160000003"), "")
        ),
    ));
    let third = db.file(&doc(
        "",
        &client("C-4", "Четвёртый", Some("+79160000004"), ""),
    ));
    let report = db
        .import_files(ORG, SRC, &[first, second.clone(), third], 1000)
        .await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "missing_field");
    assert_eq!(error.file.as_deref(), Some(second.as_str()));
    assert_eq!(error.record_index, Some(2), "indexes count within the file");
    assert_eq!(ids(&db).await, expected(1..=2));
    assert_eq!(report.files.len(), 2, "the third file is not opened");
}

#[tokio::test]
async fn a_failing_premise_applies_none_of_its_accounts() {
    let db = Db::new().await;
    let report = db
        .import_files(
            ORG,
            SRC,
            &[testdata("defects/invalid_account_residents.xml")],
            1000,
        )
        .await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(
        (error.code.as_str(), error.record_id.as_deref()),
        ("negative_number", Some("P-2"))
    );
    assert_eq!(error.field.as_deref(), Some("account.residents"));
    assert!(error.message.contains("A-3"), "{}", error.message);
    let premises = db.of_type(ORG, "premise").await;
    assert_eq!(premises.len(), 1);
    assert!(
        db.of_type(ORG, "account").await.is_empty(),
        "A-2 of the failing premise is not applied"
    );
}

#[tokio::test]
async fn a_missing_file_fails_the_run_after_the_files_before_it() {
    let db = Db::new().await;
    let first = db.file(&doc("", &client("C-1", "Первый", Some("+79160000001"), "")));
    let missing = db
        .dir
        .path()
        .join("nope.xml")
        .to_string_lossy()
        .into_owned();
    let report = db.import_files(ORG, SRC, &[first, missing], 1000).await;
    assert_eq!(error_code(&report).as_deref(), Some("source_unreadable"));
    assert_eq!(ids(&db).await, vec!["C-1"]);
}
