//! Broken input: a clear error with a position, the prefix kept, never a panic.

use crate::common::*;

async fn import_defect(name: &str) -> (Db, crm_import::report::RunReport) {
    let db = Db::new().await;
    let report = db
        .import_files(ORG, SRC, &[testdata(&format!("defects/{name}"))], 1000)
        .await;
    (db, report)
}

async fn client_ids(db: &Db) -> Vec<String> {
    db.of_type(ORG, "client")
        .await
        .iter()
        .map(|c| c["external_ids"][0]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn malformed_xml_keeps_the_records_before_it() {
    let (db, report) = import_defect("malformed_xml.xml").await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "xml_syntax");
    assert!(error.line.unwrap() > 1, "{error:?}");
    assert_eq!(report.counts.premise.created, 2);
    assert_eq!(client_ids(&db).await, vec!["C-1"]);
}

#[tokio::test]
async fn a_truncated_file_keeps_the_records_before_the_cut() {
    let (db, report) = import_defect("truncated.xml").await;
    let code = error_code(&report).unwrap();
    assert!(code == "truncated" || code == "xml_syntax", "{code}");
    assert_eq!(client_ids(&db).await, vec!["C-1", "C-2"]);
}

#[tokio::test]
async fn an_html_page_says_so_and_suggests_a_direct_link() {
    let (db, report) = import_defect("html_page.xml").await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "html_instead_of_xml");
    assert!(error.message.contains("dl=1"), "{}", error.message);
    assert!(db.of_type(ORG, "premise").await.is_empty());
}

#[tokio::test]
async fn dtd_entities_are_never_expanded() {
    let (db, report) = import_defect("billion_laughs.xml").await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(
        (error.code.as_str(), error.record_id.as_deref()),
        ("unknown_entity", Some("C-2"))
    );
    assert_eq!(client_ids(&db).await, vec!["C-1"]);
}

#[tokio::test]
async fn every_defect_fixture_fails_with_its_own_code() {
    for (file, code) in [
        ("invalid_phone.xml", "invalid_phone"),
        ("missing_name.xml", "missing_field"),
        ("unknown_premise_ref.xml", "unknown_premise_ref"),
        ("invalid_kind.xml", "invalid_kind"),
        ("invalid_account_residents.xml", "negative_number"),
        ("account_number_taken.xml", "account_number_taken"),
        ("unknown_entity.xml", "unknown_entity"),
        ("field_too_long.xml", "field_too_long"),
        ("billion_laughs.xml", "unknown_entity"),
        ("malformed_xml.xml", "xml_syntax"),
        ("html_page.xml", "html_instead_of_xml"),
        ("wrong_root.xml", "unexpected_root"),
    ] {
        let (_, report) = import_defect(file).await;
        assert_eq!(error_code(&report).as_deref(), Some(code), "{file}");
    }
}

/// An id obeys the field limit: a 10,000-character premise or client id halts the import
/// with `field_too_long` at its record (named by the id cut short), and is never stored.
#[tokio::test]
async fn an_id_longer_than_a_field_may_be_is_refused() {
    let long = "P".repeat(10_000);
    let db = Db::new().await;
    let premises = format!(
        "<premise id=\"P-1\"><address>Казань, ул. Ленина, д. 1</address><number>1</number></premise>\
         <premise id=\"{long}\"><address>Казань, ул. Ленина, д. 1</address><number>2</number></premise>"
    );
    let report = db.import(&doc(&premises, "")).await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.code, "field_too_long", "{error:?}");
    assert!(
        error.message.contains("attribute id of <premise>"),
        "{}",
        error.message
    );
    assert!(error.line.is_some(), "{error:?}");
    let shown = error.record_id.as_deref().unwrap();
    assert!(shown.len() < 100 && shown.ends_with('…'), "{shown}");
    let stored: Vec<String> = db
        .of_type(ORG, "premise")
        .await
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, vec!["P-1"]);

    let client = format!(
        "<client id=\"{}\"><name>Иванов</name></client>",
        "C".repeat(5000)
    );
    let report = db.import(&doc("", &client)).await;
    assert_eq!(error_code(&report).as_deref(), Some("field_too_long"));
    assert!(db.of_type(ORG, "client").await.is_empty());
}
