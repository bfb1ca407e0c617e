//! Any text as a pipeline file: checked into a pipeline or a list of mistakes, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(errors) = crm_import::config::parse_text("fuzz.toml", text, Path::new("."))
    {
        assert!(!errors.errors.is_empty(), "a refusal names its mistakes");
    }
});
