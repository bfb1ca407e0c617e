//! What a command prints, and how it ends: exit codes (SPEC §6: 0 ok, 1 import error, 2 bad
//! configuration or usage) and the typed failure that carries one.

use std::io::Write;

use crate::store::StoreError;

/// A command's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The data, a source or the database failed.
    ImportError = 1,
    /// Bad configuration or usage: nothing was imported.
    Config = 2,
}

/// Why a command failed: its exit code and what to tell the user (on standard error).
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    /// `None` when the command already said what happened (an import's summary).
    pub message: Option<String>,
}

impl Failure {
    /// Bad configuration or usage (exit 2).
    pub fn config(message: impl Into<String>) -> Failure {
        Failure {
            exit: Exit::Config,
            message: Some(message.into()),
        }
    }

    /// A failure while working (exit 1).
    pub fn import(message: impl Into<String>) -> Failure {
        Failure {
            exit: Exit::ImportError,
            message: Some(message.into()),
        }
    }

    /// Ends with `exit`; the command has printed why.
    pub fn reported(exit: Exit) -> Failure {
        Failure {
            exit,
            message: None,
        }
    }
}

/// The database failed while a command worked with it (exit 1).
impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::import(format!("{e} [{}]", e.code()))
    }
}

/// Prints to standard output. A closed pipe (`crm-import check … | head`) is not an error
/// of the import, so it is ignored rather than turned into a panic.
pub fn say(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// `200000 records in 10.2 s: 19600 records/s, peak memory 48 MiB` — what a bench reads.
pub fn throughput(records: u64, seconds: f64) -> String {
    let rate = if seconds > 0.0 {
        records as f64 / seconds
    } else {
        0.0
    };
    let mut line = format!("  {records} records in {seconds:.2} s: {rate:.0} records/s");
    if let Some(kib) = crate::telemetry::peak_rss_kib() {
        line.push_str(&format!(", peak memory {:.1} MiB", kib as f64 / 1024.0));
    }
    line.push('\n');
    line
}
