//! No input makes the readers, the validator or the phone parser panic: arbitrary bytes,
//! and mutations of real exports — XML, CSV and XLSX.

use std::sync::Arc;

use crm_import::layout::Layout;
use crm_import::parse::{RecordReader, Records};
use crm_import::validate::validate;
use proptest::prelude::*;

use crate::common::testdata;

fn read_all(bytes: &[u8]) -> usize {
    let mut reader = RecordReader::from_bytes(Arc::from("fuzz.xml"), &Layout::native(), bytes);
    let mut n = 0;
    while let Ok(Some(record)) = reader.read_record() {
        let _ = validate(record);
        n += 1;
        if n > 10_000 {
            break;
        }
    }
    n
}

/// Reads bytes through a shipped layout (CSV or XLSX), validating each record.
fn read_table(bytes: &[u8], layout: &str) -> usize {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("layouts")
        .join(layout);
    let layout = Layout::load(&path).unwrap();
    let mut records = Records::open(
        Arc::from("fuzz"),
        &layout,
        std::io::Cursor::new(bytes.to_vec()),
        "read",
        || {},
    )
    .unwrap();
    let mut n = 0;
    while let Ok(Some(record)) = records.read_record() {
        let _ = validate(record);
        n += 1;
        if n > 10_000 {
            break;
        }
    }
    n
}

fn mutated(file: &str, edits: Vec<(prop::sample::Index, u8)>, cut: prop::sample::Index) -> Vec<u8> {
    let mut bytes = std::fs::read(testdata(file)).unwrap();
    for (at, byte) in edits {
        let i = at.index(bytes.len());
        bytes[i] = byte;
    }
    let end = cut.index(bytes.len() + 1);
    bytes.truncate(end);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        read_all(&bytes);
    }

    #[test]
    fn a_mutated_export_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = std::fs::read(testdata("demo.xml")).unwrap();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let end = cut.index(bytes.len() + 1);
        read_all(&bytes[..end]);
    }

    #[test]
    fn arbitrary_bytes_as_csv_or_xlsx_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        read_table(&bytes, "clients-csv.toml");
        read_table(&bytes, "premises-csv.toml");
        read_table(&bytes, "residents-xlsx.toml");
    }

    #[test]
    fn a_mutated_csv_or_workbook_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
    ) {
        read_table(&mutated("layouts/clients.csv", edits.clone(), cut), "clients-csv.toml");
        read_table(&mutated("layouts/residents.xlsx", edits, cut), "residents-xlsx.toml");
    }

    #[test]
    fn arbitrary_phone_text_never_panics(text in "\\PC{0,40}") {
        let _ = crm_import::phone::normalize(&text);
    }

    #[test]
    fn phone_like_text_never_panics(text in "[+78() 0-9-]{0,24}") {
        let _ = crm_import::phone::normalize(&text);
    }
}
