//! SPEC §6: re-running the same input is idempotent.

use crate::common::*;

#[tokio::test]
async fn reimport_reports_only_unchanged_and_keeps_the_export() {
    let db = Db::new().await;
    let demo = testdata("demo.xml");
    let first = db
        .import_files(ORG, SRC, std::slice::from_ref(&demo), 2)
        .await;
    assert!(first.is_ok(), "{}", first.summary());
    assert_eq!(first.counts.premise.created, 3);
    assert_eq!(first.counts.account.created, 3);
    assert_eq!(first.counts.client.created, 4);
    let before = db.export(ORG).await;
    let second = db.import_files(ORG, SRC, &[demo], 3).await;
    assert!(second.is_ok());
    assert!(second.counts.all_unchanged(), "{:?}", second.counts);
    assert_eq!(
        second.counts.premise.unchanged + second.counts.client.unchanged,
        7
    );
    assert_eq!(second.counts.account.unchanged, 3);
    assert_eq!(db.export(ORG).await, before);
}

#[tokio::test]
async fn warnings_are_grouped_with_counts_and_never_halt() {
    let db = Db::new().await;
    let report = db
        .import_files(ORG, SRC, &[testdata("defects/unknown_elements.xml")], 1000)
        .await;
    assert!(report.is_ok(), "{}", report.summary());
    let groups: Vec<(String, u64)> = report
        .warnings
        .iter()
        .map(|w| (w.code.as_str().to_owned(), w.count))
        .collect();
    assert_eq!(
        groups,
        vec![
            ("unknown_element".into(), 1),
            ("unknown_attribute".into(), 1),
            ("unknown_element".into(), 2)
        ]
    );
    assert_eq!(report.warnings_total, 4);
    assert!(report.warnings[2].message.contains("<nickname>"));
    assert_eq!(report.warnings[2].record_id.as_deref(), Some("C-1"));
}

#[tokio::test]
async fn an_implausible_email_is_a_warning_and_not_written() {
    let db = Db::new().await;
    db.import(&doc(
        "",
        "<client id=\"C-1\"><name>Петров Пётр 1</name><phone>8 912 000-00-01</phone><email>petrov@example.ru</email></client>",
    ))
    .await;
    let report = db
        .import_files(ORG, SRC, &[testdata("defects/email_invalid.xml")], 1000)
        .await;
    assert!(report.is_ok());
    assert_eq!(report.warnings[0].code.as_str(), "invalid_email");
    assert_eq!(
        db.client(ORG, SRC, "C-1").await.unwrap()["email"],
        "petrov@example.ru"
    );
}
