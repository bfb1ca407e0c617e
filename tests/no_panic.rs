//! No input makes the reader, the validator or the phone parser panic: arbitrary bytes,
//! and mutations of a real export.

use std::sync::Arc;

use crm_import::layout::Layout;
use crm_import::parse::RecordReader;
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
    fn arbitrary_phone_text_never_panics(text in "\\PC{0,40}") {
        let _ = crm_import::phone::normalize(&text);
    }

    #[test]
    fn phone_like_text_never_panics(text in "[+78() 0-9-]{0,24}") {
        let _ = crm_import::phone::normalize(&text);
    }
}
