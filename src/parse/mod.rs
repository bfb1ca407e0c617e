//! Stream-parses an export into records, one at a time, through a layout (SPEC §13): XML
//! with quick-xml events (never a DOM), CSV and XLSX row by row. The native format is the
//! built-in layout.
//!
//! Like `csv::Reader::read_record`, [`Records::read_record`] hands out one record at a
//! time. A problem inside a record (a missing id, a value outside a layout's map, a field
//! that is too long) is returned as data with the record, so `check` can go on to the next
//! one; a problem with the file itself (broken syntax, the file cut short, a column the
//! layout names missing) ends the file.

mod encoding;
mod lines;
mod plan;
mod table;
mod xml;

use std::io::Read;
use std::sync::Arc;

pub use encoding::{Detected, Utf8Reader};
pub use table::TableReader;
pub use xml::{FORMAT_VERSION, RecordReader};

use crate::error::{Code, Position, Problem, Warnings};
use crate::layout::{Format, Layout};
use crate::model::{Parsed, RawRecord};

/// SPEC §4: any text field holds at most this many characters.
pub const MAX_FIELD_CHARS: usize = 4096;
/// A field is no longer collected past this many bytes: the longest a field of
/// `MAX_FIELD_CHARS` characters can be in UTF-8, plus one, so memory stays bounded.
const MAX_FIELD_BYTES: usize = MAX_FIELD_CHARS * 4 + 1;

/// The characters of an over-long id kept to name its record in messages.
const ID_SHOWN: usize = 64;

/// The records of one export, read through its layout.
pub enum Records {
    Xml(Box<RecordReader<lines::Ahead>>),
    Table(Box<TableReader>),
}

impl Records {
    /// Starts reading `bytes` through `layout`. XML is read and decoded ahead on a thread
    /// of its own, `thread`, which first runs `started`; a table is read on this thread.
    pub fn open<R: Read + Send + 'static>(
        file: Arc<str>,
        layout: &Layout,
        bytes: R,
        thread: &str,
        started: fn(),
    ) -> std::io::Result<Records> {
        Ok(match layout.format {
            Format::Xml => Records::Xml(Box::new(RecordReader::read_ahead(
                file, layout, bytes, thread, started,
            )?)),
            Format::Csv | Format::Xlsx { .. } => {
                Records::Table(Box::new(TableReader::new(file, layout, bytes)))
            }
        })
    }

    /// The next record, `None` at the end of the file, or the problem that makes the rest
    /// of the file unreadable.
    pub fn read_record(&mut self) -> Result<Option<Parsed>, Box<Problem>> {
        match self {
            Records::Xml(reader) => reader.read_record(),
            Records::Table(reader) => reader.read_record(),
        }
    }

    /// Warnings found after the last record.
    pub fn take_trailing_warnings(&mut self) -> Warnings {
        match self {
            Records::Xml(reader) => reader.take_trailing_warnings(),
            Records::Table(_) => Warnings::default(),
        }
    }
}

/// The code and message of a failed read: an encoding that is not supported, or the source.
fn io_problem(io: &std::io::Error) -> (Code, String) {
    match io
        .get_ref()
        .and_then(|e| e.downcast_ref::<encoding::UnsupportedEncoding>())
    {
        Some(unsupported) => (Code::UnsupportedEncoding, unsupported.to_string()),
        None => (
            Code::SourceUnreadable,
            format!("reading the file failed: {io}"),
        ),
    }
}

fn position_of(file: &Arc<str>, line: u64, column: u64) -> Position {
    Position {
        file: file.clone(),
        line,
        column,
        ..Position::default()
    }
}

/// Where record number `index` of `file` starts; a premise or a client by its scope.
fn record_position(
    file: &Arc<str>,
    index: u64,
    scope: plan::Scope,
    line: u64,
    column: u64,
) -> Position {
    Position {
        record_index: Some(index),
        kind: if scope == plan::Scope::Premise {
            "premise"
        } else {
            "client"
        },
        ..position_of(file, line, column)
    }
}

/// The record being read: its position, its first problem, its warnings.
pub struct Record {
    position: Position,
    problem: Option<Problem>,
    warnings: Warnings,
}

impl Record {
    fn new(position: Position, warnings: Warnings) -> Self {
        Record {
            position,
            problem: None,
            warnings,
        }
    }

    /// Keeps the first problem: it is the one a person fixes first.
    fn fail(&mut self, code: Code, message: impl Into<String>, field: impl Into<String>) {
        if self.problem.is_none() {
            let field: String = field.into();
            let mut problem = Problem::new(code, message, self.position.clone());
            if !field.is_empty() {
                problem.field = Some(field);
            }
            self.problem = Some(problem);
        }
    }

    fn warn(&mut self, code: Code, key: &str, message: impl Into<String>) {
        self.warnings
            .push(Problem::new(code, message, self.position.clone()).key(key));
    }

    /// The record with its id in its position and in the problems found before the id was.
    fn finish(mut self, body: RawRecord) -> Parsed {
        let id = body.id();
        if !id.is_empty() {
            self.position.record_id = Some(id.to_owned());
            if let Some(problem) = &mut self.problem {
                problem.position.record_id = Some(id.to_owned());
            }
            self.warnings.name_record(id);
        }
        Parsed {
            position: self.position,
            body: match self.problem {
                Some(problem) => Err(Box::new(problem)),
                None => Ok(body),
            },
            warnings: self.warnings,
            end: None,
        }
    }
}

/// Appends text unless the field is already over the limit, so a gigabyte-long field
/// costs no more memory than a field just over the limit.
fn push_bounded(text: &mut String, piece: &str) {
    if text.len() < MAX_FIELD_BYTES {
        let room = MAX_FIELD_BYTES - text.len();
        if piece.len() <= room {
            text.push_str(piece);
        } else {
            let mut cut = room;
            while !piece.is_char_boundary(cut) {
                cut -= 1;
            }
            text.push_str(&piece[..cut]);
            // Mark the field as over the limit even when the cut fell on a character edge.
            while text.len() < MAX_FIELD_BYTES {
                text.push(' ');
            }
        }
    }
}

#[cfg(test)]
mod tests;
