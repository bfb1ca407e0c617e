//! Any bytes as an export: the reader and validation end with records, a problem, or the
//! end of the document — never a panic or a hang.
#![no_main]

use std::sync::Arc;

use crm_import::layout::Layout;
use crm_import::parse::RecordReader;
use crm_import::validate::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = RecordReader::from_bytes(Arc::from("fuzz.xml"), &Layout::native(), data);
    // Every record consumes input, so the number of records is bounded by the bytes.
    for _ in 0..=data.len() {
        match reader.read_record() {
            Ok(Some(parsed)) => {
                let _ = validate(parsed);
            }
            Ok(None) | Err(_) => return,
        }
    }
    panic!("more records than bytes: the reader does not advance");
});
