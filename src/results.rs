//! Per-record results (SPEC §12): one line per record applied or refused — file, index,
//! line, kind, source id, outcome, and for an error its code and message — then one closing
//! line with the records a halt left unprocessed. CSV as Russian Excel opens it (UTF-8 with a
//! BOM, `;`) or NDJSON, by the file's extension. Lines are written as chunks commit, so the
//! file says what the database holds, and memory stays that of one chunk.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::Serialize;

/// One line of the results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub file: String,
    /// The record's 1-based number in its file, and the line it starts on; none on the
    /// closing line.
    pub index: Option<u64>,
    pub line: Option<u64>,
    /// `premise` or `client`; empty on the closing line.
    pub kind: &'static str,
    pub id: String,
    /// `created`, `updated`, `unchanged`, `merged`, `external_id_added`, `error`, or
    /// `not_processed` on the closing line.
    pub outcome: &'static str,
    /// An error's code and message; on the closing line, why records were not processed.
    pub code: Option<String>,
    pub message: Option<String>,
    /// On the closing line: how many records were not processed.
    pub count: Option<u64>,
}

enum Format {
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Ndjson(BufWriter<File>),
}

/// A results file being written.
pub struct Results {
    format: Format,
    /// Records read but not applied: after a halt, or rolled back with their transaction.
    not_processed: u64,
    /// The first write that failed; the run goes on, the file is reported broken at its end.
    failed: Option<io::Error>,
}

/// A results file shared by the stages of a run.
pub type Shared = std::sync::Arc<std::sync::Mutex<Results>>;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("--results {0}: name a .csv or a .ndjson file")]
    Extension(String),
    #[error("cannot write the results to {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl Results {
    pub fn create(path: &Path) -> Result<Results, ResultsError> {
        let shown = path.display().to_string();
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let io = |source| ResultsError::Io {
            path: shown.clone(),
            source,
        };
        let csv = match extension.as_deref() {
            Some("csv") => true,
            Some("ndjson" | "jsonl") => false,
            _ => return Err(ResultsError::Extension(shown)),
        };
        let mut out = BufWriter::new(File::create(path).map_err(io)?);
        let format = if csv {
            // The BOM makes Excel read the file as UTF-8, not as windows-1251.
            out.write_all("\u{feff}".as_bytes()).map_err(io)?;
            // The header row comes from `Line`'s field names, with the first line.
            let writer = csv::WriterBuilder::new().delimiter(b';').from_writer(out);
            Format::Csv(Box::new(writer))
        } else {
            Format::Ndjson(out)
        };
        Ok(Results {
            format,
            not_processed: 0,
            failed: None,
        })
    }

    /// Writes a line; a failure is kept for [`Results::close`].
    pub fn write(&mut self, line: &Line) {
        if self.failed.is_none()
            && let Err(e) = self.line(line)
        {
            self.failed = Some(e);
        }
    }

    /// Counts records that were read but not applied.
    pub fn not_processed(&mut self, records: u64) {
        self.not_processed += records;
    }

    fn line(&mut self, line: &Line) -> io::Result<()> {
        match &mut self.format {
            Format::Csv(writer) => writer.serialize(line).map_err(io::Error::from),
            Format::Ndjson(out) => {
                serde_json::to_writer(&mut *out, line)?;
                out.write_all(b"\n")
            }
        }
    }

    /// The closing line (how many records were not processed, and why), then the bytes to
    /// disk; the first failure of any write.
    pub fn close(&mut self, why: String) -> io::Result<()> {
        let not_processed = self.not_processed;
        self.write(&Line {
            file: String::new(),
            index: None,
            line: None,
            kind: "",
            id: String::new(),
            outcome: "not_processed",
            code: None,
            message: Some(why),
            count: Some(not_processed),
        });
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        match &mut self.format {
            Format::Csv(writer) => writer.flush(),
            Format::Ndjson(out) => out.flush(),
        }
    }
}
