//! Any bytes as a CSV file and as an XLSX workbook, through the shipped layouts: the table
//! reader and validation end with records, a problem, or the end of the file — never a
//! panic or a hang.
#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock};

use crm_import::layout::Layout;
use crm_import::parse::Records;
use crm_import::validate::validate;
use libfuzzer_sys::fuzz_target;

static LAYOUTS: LazyLock<Vec<Layout>> = LazyLock::new(|| {
    ["clients-csv.toml", "premises-csv.toml", "residents-xlsx.toml"]
        .iter()
        .map(|name| Layout::load(&Path::new("layouts").join(name)).expect("a shipped layout"))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    for layout in LAYOUTS.iter() {
        let bytes = std::io::Cursor::new(data.to_vec());
        let Ok(mut records) = Records::open(Arc::from("fuzz"), layout, bytes, "read", || {}) else {
            return;
        };
        // Every record consumes a row, so the number of records is bounded by the bytes.
        let mut ended = false;
        for _ in 0..=data.len() {
            match records.read_record() {
                Ok(Some(parsed)) => {
                    let _ = validate(parsed);
                }
                Ok(None) | Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        assert!(ended, "more records than bytes: the reader does not advance");
    }
});
