//! Per-record results (SPEC §12): one line per record applied or refused — file, index,
//! line, kind, source id, outcome, and for an error its code and message — then one closing
//! line with the records a halt left unprocessed. CSV as Russian Excel opens it (UTF-8 with a
//! BOM, `;`) or NDJSON, by the file's extension. Lines are written as chunks commit, so the
//! file says what the database holds, and memory stays that of one chunk. Every run keeps
//! the CSV gzip-compressed in the database, in parts, for the API and the console.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;

use crate::report::RunReport;

/// One line of the results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub file: Arc<str>,
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
    /// For `merged`: the card (its number in the CRM) the record's card was merged into.
    pub merged_into: Option<i64>,
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

/// Compressed output taken from the kept copy at a time: a part row per this much keeps a
/// 10M-record run's copy out of memory (it compresses to about 15 bytes a record).
const PART: usize = 256 * 1024;

/// The results of a run: kept with the run (gzip-compressed CSV, taken in parts that the
/// store appends in order; their concatenation is one gzip stream), and written to the
/// `--results` file when one was asked for.
pub struct Results {
    file: Option<Format>,
    kept: Option<csv::Writer<GzEncoder<Vec<u8>>>>,
    /// The number of the next kept part.
    part: i64,
    /// Records read but not applied: after a halt, or rolled back with their transaction.
    not_processed: u64,
    /// The first write to the file that failed; the run goes on, the file is reported broken
    /// at its end.
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

/// The CSV writer both the file and the kept copy use: `;`, as Russian Excel splits columns.
fn csv_writer<W: Write>(out: W, header: bool) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .delimiter(b';')
        .has_headers(header)
        .from_writer(out)
}

/// The BOM makes Excel read a CSV file as UTF-8, not as windows-1251.
const BOM: &str = "\u{feff}";

impl Results {
    /// Results kept with the run, and written to `file` too (`--results`).
    pub fn with_file(file: &Path) -> Result<Results, ResultsError> {
        Ok(Results {
            file: Some(open(file)?),
            ..Results::kept()
        })
    }

    /// Results kept with the run only.
    pub fn kept() -> Results {
        let mut kept = GzEncoder::new(Vec::new(), Compression::fast());
        kept.write_all(BOM.as_bytes())
            .expect("writing to memory does not fail");
        Results {
            file: None,
            kept: Some(csv_writer(kept, true)),
            part: 0,
            not_processed: 0,
            failed: None,
        }
    }

    /// Writes a line; a failure of the file is kept for [`Results::close`].
    pub fn write(&mut self, line: &Line) {
        if let Some(kept) = &mut self.kept {
            kept.serialize(line).expect("a line serializes into memory");
        }
        if self.failed.is_none()
            && let Err(e) = self.write_file(line)
        {
            self.failed = Some(e);
        }
    }

    /// Counts records that were read but not applied.
    pub fn not_processed(&mut self, records: u64) {
        self.not_processed += records;
    }

    fn write_file(&mut self, line: &Line) -> io::Result<()> {
        match &mut self.file {
            None => Ok(()),
            Some(Format::Csv(writer)) => writer.serialize(line).map_err(io::Error::from),
            Some(Format::Ndjson(out)) => {
                serde_json::to_writer(&mut *out, line)?;
                out.write_all(b"\n")
            }
        }
    }

    /// The next part of the kept copy once enough has been compressed: its number and bytes.
    pub fn take_part(&mut self) -> Option<(i64, Vec<u8>)> {
        let kept = self.kept.as_mut()?;
        if kept.get_ref().get_ref().len() < PART {
            return None;
        }
        let mut encoder = self.kept.take()?.into_inner().ok()?;
        let bytes = std::mem::take(encoder.get_mut());
        self.kept = Some(csv_writer(encoder, false));
        let part = self.part;
        self.part += 1;
        Some((part, bytes))
    }

    /// Writes the closing line (how many records were not processed, and why, from the
    /// run's report) and the file's bytes to disk; gives the kept copy's last part, and the
    /// file's first failure.
    pub fn close(&mut self, report: &RunReport) -> Closed {
        let why = match &report.error {
            None => "none: the run ended without an error".to_owned(),
            Some(e) if e.code == "interrupted" => {
                "the run was stopped: what came after it was not read".to_owned()
            }
            Some(e) => format!(
                "the run halted at {} [{}]: the rest of that file was read, not applied, and files after it were not read",
                e.record_id
                    .as_deref()
                    .or(e.file.as_deref())
                    .unwrap_or("its error"),
                e.code
            ),
        };
        let not_processed = self.not_processed;
        self.write(&Line {
            file: Arc::from(""),
            index: None,
            line: None,
            kind: "",
            id: String::new(),
            outcome: "not_processed",
            merged_into: None,
            code: None,
            message: Some(why),
            count: Some(not_processed),
        });
        let last = self
            .kept
            .take()
            .and_then(|kept| kept.into_inner().ok())
            .and_then(|encoder| encoder.finish().ok())
            .map(|bytes| (self.part, bytes));
        let file = match (self.failed.take(), &mut self.file) {
            (Some(e), _) => Err(e),
            (None, None) => Ok(()),
            (None, Some(Format::Csv(writer))) => writer.flush(),
            (None, Some(Format::Ndjson(out))) => out.flush(),
        };
        Closed { last, file }
    }
}

/// What closing the results leaves.
pub struct Closed {
    /// The kept copy's last part (its number and bytes).
    pub last: Option<(i64, Vec<u8>)>,
    /// How writing the `--results` file went.
    pub file: io::Result<()>,
}

/// Opens a `--results` file in the format its extension names.
fn open(path: &Path) -> Result<Format, ResultsError> {
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
    Ok(if csv {
        out.write_all(BOM.as_bytes()).map_err(io)?;
        // The header row comes from `Line`'s field names, with the first line.
        Format::Csv(Box::new(csv_writer(out, true)))
    } else {
        Format::Ndjson(out)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn kept_parts_in_order_are_one_csv() {
        let mut results = Results::kept();
        let mut gz = Vec::new();
        let mut parts = 0;
        for i in 0..100_000u64 {
            results.write(&Line {
                file: Arc::from("export.xml"),
                index: Some(i + 1),
                line: Some(i * 7 + 3),
                kind: "client",
                id: format!("C-{i}"),
                outcome: "created",
                merged_into: None,
                code: None,
                message: None,
                count: None,
            });
            if let Some((part, bytes)) = results.take_part() {
                assert_eq!(part, parts);
                parts += 1;
                gz.extend(bytes);
            }
        }
        let closed = results.close(&RunReport::default());
        let (last, bytes) = closed.last.unwrap();
        assert_eq!(last, parts);
        assert!(parts >= 2, "the copy came in parts: {parts}");
        gz.extend(bytes);
        let mut csv = String::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_string(&mut csv)
            .unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 100_002);
        assert!(lines[0].starts_with("\u{feff}file;index;line;kind;id;outcome"));
        assert_eq!(
            lines[100_000],
            "export.xml;100000;699996;client;C-99999;created;;;;"
        );
        assert!(lines[100_001].ends_with(";0"), "{}", lines[100_001]);
    }
}
