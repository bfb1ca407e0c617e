//! Any JSON as a pushed client or premise: read and validated into a record or a problem,
//! never a panic.
#![no_main]

use std::sync::Arc;

use crm_import::api::records::{self, Entity};
use crm_import::validate::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file: Arc<str> = Arc::from("request");
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(value) => {
            for entity in [Entity::Clients, Entity::Premises] {
                let _ = validate(records::parse(entity, &value, &file, 1, 1));
            }
        }
        Err(e) => {
            let _ = validate(records::unreadable(&file, 1, 1, &e));
        }
    }
});
