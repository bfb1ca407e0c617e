//! crm-import: a streaming import of premises, personal accounts and residents of
//! housing-management companies into their CRM.
//!
//! The flow, one stage per module, types moving one way:
//!
//! ```text
//! source (bytes) → parse (RawRecord) → validate (Record) → apply (Outcome) → report
//!                                                            ↑ store (SQL), matching (the table)
//! ```
//!
//! `pipeline` wires the stages with bounded channels; `cli` is the command line over it.
// Denied, not forbidden: one measured exception, rusqlite on the SQLite handle sqlx opened
// (src/store/sqlite/direct.rs), allows it where it is.
#![deny(unsafe_code)]

pub mod api;
pub mod apply;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod error;
pub mod export;
pub mod generate;
pub mod layout;
pub mod matching;
pub mod mistakes;
pub mod model;
pub mod notify;
pub mod observe;
pub mod parse;
pub mod phone;
pub mod pipeline;
pub mod report;
pub mod results;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod source;
pub mod stage;
pub mod store;
pub mod telemetry;
pub mod validate;
