//! Encodings are decided by the bytes: windows-1251, UTF-8 with a stale windows-1251
//! declaration, and a BOM all import the same Cyrillic text.

use crate::common::*;

async fn imported_name(file: &str) -> String {
    let db = Db::new().await;
    let report = db.import_files(ORG, SRC, &[testdata(file)], 1000).await;
    assert!(report.is_ok(), "{file}: {}", report.summary());
    let premise = &db.of_type(ORG, "premise").await[0];
    assert_eq!(premise["address"], "Казань, ул. Баумана, д. 5", "{file}");
    db.client(ORG, SRC, "C-1").await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn windows_1251_is_decoded() {
    assert_eq!(
        imported_name("encodings/windows1251.xml").await,
        "Шарипова Гульнара Ильдаровна"
    );
}

#[tokio::test]
async fn utf8_bytes_under_a_stale_windows_1251_declaration_are_read_as_utf8() {
    assert_eq!(
        imported_name("encodings/utf8_with_stale_windows1251_declaration.xml").await,
        "Шарипова Гульнара Ильдаровна"
    );
}

#[tokio::test]
async fn a_utf8_bom_is_accepted() {
    assert_eq!(
        imported_name("encodings/utf8_bom.xml").await,
        "Шарипова Гульнара Ильдаровна"
    );
}
