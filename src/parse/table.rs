//! Reads CSV files and XLSX sheets through a layout: a header row names the columns, each
//! row below is a record, and adjacent rows of one id are one record (a premise with an
//! account per row, a client with a link per row).
//!
//! CSV is read by the `csv` crate from the decoded text (UTF-8 or windows-1251, decided by
//! the bytes as for XML), its delimiter found in the first line. XLSX is read by calamine's
//! cell reader, row by row, on a thread of its own (the workbook and its reader borrow each
//! other); a zip needs its directory, so its bytes first go to a temporary file.

use std::io::{BufRead, BufReader, Read, Seek};
use std::sync::Arc;
use std::sync::mpsc;

use xxhash_rust::xxh3::Xxh3;

use super::encoding::Utf8Reader;
use super::plan::{Frame, Plan, Scope};
use super::{MAX_FIELD_CHARS, Record, io_problem, position_of, record_position};
use crate::error::{Code, Problem, Warnings};
use crate::layout::{Format, Layout};
use crate::model::{Mark, Parsed, RawRecord};

/// One row: where it is and its cells as text.
struct Row {
    /// The CSV line or the sheet's row number, 1-based.
    line: u64,
    cells: Vec<String>,
}

/// A CSV file's text, decoded, as the csv crate reads it.
type CsvReader = csv::Reader<BufReader<Utf8Reader<Box<dyn Read + Send>>>>;
/// An XLSX sheet's rows as its thread sends them; a problem ends them.
type SheetRows = mpsc::Receiver<Result<Row, Box<Problem>>>;

/// Rows of the file, the header row first.
enum Rows {
    /// Not opened yet: opening reads the bytes (and, for XLSX, spools them to disk).
    Closed(Box<dyn Read + Send>),
    Csv(Box<CsvReader>),
    Xlsx(SheetRows),
    Done,
}

/// Rows of an XLSX sheet waiting for the reader: a few rows keep its thread busy while
/// the records are assembled.
const XLSX_AHEAD: usize = 256;

/// Reads the records of one CSV file or XLSX sheet.
pub struct TableReader {
    file: Arc<str>,
    /// What positions name: the file, or for XLSX the file and the sheet.
    shown: Arc<str>,
    format: Format,
    plan: Plan,
    entity: Scope,
    rows: Rows,
    /// For each scope's slot, the column it is in.
    columns: Columns,
    /// The entity's slots its id is made of: what groups adjacent rows.
    id_slots: Vec<usize>,
    /// The row read after the last record, which starts the next one.
    next: Option<Row>,
    index: u64,
    /// What was read so far, for the resume marks.
    hash: Xxh3,
    ended_at: u64,
}

#[derive(Default)]
struct Columns {
    entity: Vec<Option<usize>>,
    account: Vec<Option<usize>>,
    premise_link: Vec<Option<usize>>,
    account_link: Vec<Option<usize>>,
}

impl TableReader {
    pub fn new<R: Read + Send + 'static>(file: Arc<str>, layout: &Layout, bytes: R) -> Self {
        let entity = if layout.premise.is_some() {
            Scope::Premise
        } else {
            Scope::Client
        };
        TableReader {
            shown: file.clone(),
            file,
            format: layout.format.clone(),
            plan: Plan::new(layout),
            entity,
            rows: Rows::Closed(Box::new(bytes)),
            columns: Columns::default(),
            id_slots: Vec::new(),
            next: None,
            index: 0,
            hash: Xxh3::new(),
            ended_at: 0,
        }
    }

    /// The next record, `None` at the end of the file, or the problem that makes the rest
    /// of the file unreadable.
    pub fn read_record(&mut self) -> Result<Option<Parsed>, Box<Problem>> {
        if let Rows::Closed(_) = self.rows {
            self.open()?;
        }
        let Some(first) = self.next_row()? else {
            return Ok(None);
        };
        self.index += 1;
        let position = record_position(&self.shown, self.index, self.entity, first.line, 0);
        let mut rec = Record::new(position, Warnings::default());
        let key = self.key(&first);
        let mut frame = self.frame(self.entity, &first, &mut rec);
        self.add_row(&first, &mut frame, &mut rec);
        self.consumed(&first);
        while let Some(row) = self.next_row()? {
            if key.is_empty() || self.key(&row) != key {
                self.next = Some(row);
                break;
            }
            self.add_row(&row, &mut frame, &mut rec);
            self.consumed(&row);
        }
        let body = if self.entity == Scope::Premise {
            RawRecord::Premise(self.plan.premise(&mut frame, &mut rec))
        } else {
            RawRecord::Client(self.plan.client(&mut frame, &mut rec))
        };
        let mut parsed = rec.finish(body);
        parsed.end = Some(Mark {
            record: self.index,
            offset: self.ended_at,
            hash: self.hash.digest128(),
        });
        Ok(Some(parsed))
    }

    fn open(&mut self) -> Result<(), Box<Problem>> {
        let Rows::Closed(bytes) = std::mem::replace(&mut self.rows, Rows::Done) else {
            return Ok(());
        };
        self.rows = match &self.format {
            Format::Xlsx { sheet, header_row } => {
                let (sheet, rows) = xlsx_rows(&self.file, bytes, sheet.clone(), *header_row)?;
                self.shown = Arc::from(format!("{} (sheet {sheet})", self.file));
                Rows::Xlsx(rows)
            }
            _ => Rows::Csv(Box::new(csv_reader(&self.file, bytes)?)),
        };
        let Some(header) = self.read_row()? else {
            return Err(self.fatal(
                Code::MissingColumn,
                0,
                "the file has no header row: its first row must name the columns".into(),
            ));
        };
        self.columns = self.columns_of(&header)?;
        self.id_slots = self
            .plan
            .scope(self.entity)
            .expect("the entity has a plan")
            .id_slots();
        Ok(())
    }

    /// Finds each slot's column in the header; every column the layout names must be there.
    fn columns_of(&self, header: &Row) -> Result<Columns, Box<Problem>> {
        let names: Vec<&str> = header.cells.iter().map(|c| c.trim()).collect();
        let mut missing = Vec::new();
        let mut find = |scope: Scope| -> Vec<Option<usize>> {
            let Some(plan) = self.plan.scope(scope) else {
                return Vec::new();
            };
            plan.slots
                .iter()
                .map(|slot| {
                    // Excel users change the case of a header without noticing.
                    let wanted = slot.path.trim().to_lowercase();
                    let at = names.iter().position(|n| n.to_lowercase() == wanted);
                    if at.is_none() {
                        missing.push(format!("{:?} ({})", slot.path, slot.label));
                    }
                    at
                })
                .collect()
        };
        let columns = Columns {
            entity: find(self.entity),
            account: find(Scope::Account),
            premise_link: find(Scope::PremiseLink),
            account_link: find(Scope::AccountLink),
        };
        if missing.is_empty() {
            return Ok(columns);
        }
        let message = format!(
            "the header row has no column {}: the columns are {}; fix the layout's column names \
             or the file's header",
            missing.join(", "),
            names
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Err(self.fatal(Code::MissingColumn, header.line, message))
    }

    fn fatal(&self, code: Code, line: u64, message: String) -> Box<Problem> {
        Box::new(Problem::new(
            code,
            message,
            position_of(&self.shown, line, 0),
        ))
    }

    /// The cells of the row that name its record: adjacent rows with the same are one.
    fn key(&self, row: &Row) -> String {
        let mut key = String::new();
        for &slot in &self.id_slots {
            if let Some(Some(col)) = self.columns.entity.get(slot) {
                key.push_str(row.cells.get(*col).map_or("", |c| c.trim()));
                key.push('\u{1f}');
            }
        }
        if key.chars().all(|c| c == '\u{1f}') {
            key.clear();
        }
        key
    }

    /// A frame of `scope` filled from the row's cells.
    fn frame(&self, scope: Scope, row: &Row, rec: &mut Record) -> Frame {
        let plan = self
            .plan
            .scope(scope)
            .expect("a scope is read only with its plan");
        let columns = match scope {
            Scope::Premise | Scope::Client => &self.columns.entity,
            Scope::Account => &self.columns.account,
            Scope::PremiseLink => &self.columns.premise_link,
            Scope::AccountLink => &self.columns.account_link,
        };
        let mut frame = plan.frame();
        for (slot, column) in columns.iter().enumerate() {
            let Some(cell) = column.and_then(|c| row.cells.get(c)) else {
                continue;
            };
            let cell = cell.trim();
            if cell.chars().count() > MAX_FIELD_CHARS {
                rec.fail(
                    Code::FieldTooLong,
                    format!("the field is longer than {MAX_FIELD_CHARS} characters"),
                    plan.slots[slot].label.as_str(),
                );
            } else if !cell.is_empty() {
                frame.values[slot] = Some(cell.to_owned());
            }
        }
        frame
    }

    /// What a row adds to its record: an account, or the client's links.
    fn add_row(&self, row: &Row, frame: &mut Frame, rec: &mut Record) {
        if self.entity == Scope::Premise {
            if self.plan.account.is_some() {
                // A row without any account cell is a premise without accounts.
                let mut account = self.frame(Scope::Account, row, rec);
                if account.values.iter().any(Option::is_some) {
                    let account = self.plan.account(&mut account, rec);
                    frame.accounts.push(account);
                }
            }
            return;
        }
        for scope in [Scope::PremiseLink, Scope::AccountLink] {
            if self.plan.scope(scope).is_some() {
                let mut link = self.frame(scope, row, rec);
                self.plan.link(scope, &mut link, rec, frame);
            }
        }
    }

    fn consumed(&mut self, row: &Row) {
        for cell in &row.cells {
            self.hash.update(cell.as_bytes());
            self.hash.update(b"\x1f");
        }
        self.hash.update(b"\x1e");
        self.ended_at = row.line;
    }

    /// The next row that is not empty.
    fn next_row(&mut self) -> Result<Option<Row>, Box<Problem>> {
        if let Some(row) = self.next.take() {
            return Ok(Some(row));
        }
        while let Some(row) = self.read_row()? {
            if row.cells.iter().any(|c| !c.trim().is_empty()) {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    fn read_row(&mut self) -> Result<Option<Row>, Box<Problem>> {
        match &mut self.rows {
            Rows::Csv(reader) => {
                let mut record = csv::StringRecord::new();
                match reader.read_record(&mut record) {
                    Ok(true) => Ok(Some(Row {
                        line: record.position().map_or(0, |p| p.line()),
                        cells: record.iter().map(str::to_owned).collect(),
                    })),
                    Ok(false) => {
                        self.rows = Rows::Done;
                        Ok(None)
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        let (code, message) = match e.into_kind() {
                            csv::ErrorKind::Io(io) => io_problem(&io),
                            csv::ErrorKind::Utf8 { .. } => (
                                Code::InvalidUtf8,
                                "bytes that are not valid UTF-8: re-save the file in one \
                                 encoding (UTF-8 or windows-1251)"
                                    .to_owned(),
                            ),
                            other => (Code::SourceUnreadable, format!("broken CSV: {other:?}")),
                        };
                        self.rows = Rows::Done;
                        Err(self.fatal(code, line, message))
                    }
                }
            }
            Rows::Xlsx(rows) => match rows.recv() {
                Ok(Ok(row)) => Ok(Some(row)),
                Ok(Err(problem)) => {
                    self.rows = Rows::Done;
                    Err(problem)
                }
                Err(_) => {
                    self.rows = Rows::Done;
                    Ok(None)
                }
            },
            Rows::Closed(_) | Rows::Done => Ok(None),
        }
    }
}

/// A CSV reader over the decoded text, its delimiter found in the first line: the one of
/// `;`, `,` and tab that occurs most outside quotes (Excel in a Russian locale writes `;`).
fn csv_reader(file: &Arc<str>, bytes: Box<dyn Read + Send>) -> Result<CsvReader, Box<Problem>> {
    let mut text = BufReader::with_capacity(256 * 1024, Utf8Reader::new(bytes));
    let head = text.fill_buf().map_err(|e| {
        let (code, message) = io_problem(&e);
        Box::new(Problem::new(code, message, position_of(file, 1, 0)))
    })?;
    let delimiter = sniff_delimiter(head);
    // Lines end at \n only: with \r\n the csv crate counts a record's line one short
    // (BurntSushi/rust-csv#395), and the \r left on a last cell is trimmed with its spaces.
    Ok(csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .has_headers(false)
        .flexible(true)
        .from_reader(text))
}

fn sniff_delimiter(head: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in head {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            b';' if !quoted => counts[0] += 1,
            b',' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b';', b',', b'\t'];
    let best = (0..3).max_by_key(|&i| (counts[i], 3 - i)).unwrap_or(0);
    if counts[best] == 0 {
        b';'
    } else {
        candidates[best]
    }
}

/// Spools the workbook to a temporary file and starts a thread that sends its rows from
/// the header row on; gives the sheet's name.
fn xlsx_rows(
    file: &Arc<str>,
    mut bytes: Box<dyn Read + Send>,
    sheet: Option<String>,
    header_row: u32,
) -> Result<(String, SheetRows), Box<Problem>> {
    let unreadable = |message: String| {
        Box::new(Problem::new(
            Code::SourceUnreadable,
            message,
            position_of(file, 0, 0),
        ))
    };
    let mut spool = tempfile::tempfile().map_err(|e| {
        unreadable(format!(
            "cannot make a temporary file for the workbook: {e}"
        ))
    })?;
    std::io::copy(&mut bytes, &mut spool).map_err(|e| {
        let (code, message) = io_problem(&e);
        Box::new(Problem::new(code, message, position_of(file, 0, 0)))
    })?;
    spool
        .rewind()
        .map_err(|e| unreadable(format!("cannot read the temporary file back: {e}")))?;
    let mut workbook: calamine::Xlsx<_> = calamine::open_workbook_from_rs(BufReader::new(spool))
        .map_err(|e| {
            unreadable(format!(
                "this is not an XLSX workbook ({e}): save it from Excel as .xlsx"
            ))
        })?;
    let names = calamine::Reader::sheet_names(&workbook);
    let sheet = match sheet {
        Some(name) if names.contains(&name) => name,
        Some(name) => {
            return Err(Box::new(Problem::new(
                Code::MissingColumn,
                format!(
                    "the workbook has no sheet {name:?}: its sheets are {}",
                    names
                        .iter()
                        .map(|n| format!("{n:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                position_of(file, 0, 0),
            )));
        }
        None => names
            .first()
            .cloned()
            .ok_or_else(|| unreadable("the workbook has no sheets".into()))?,
    };
    let (tx, rx) = mpsc::sync_channel(XLSX_AHEAD);
    let shown: Arc<str> = Arc::from(format!("{file} (sheet {sheet})"));
    let name = sheet.clone();
    std::thread::Builder::new()
        .name("xlsx".into())
        .spawn(move || send_rows(&mut workbook, &name, header_row, &shown, &tx))
        .map_err(|e| {
            unreadable(format!(
                "could not start the thread that reads the sheet: {e}"
            ))
        })?;
    Ok((sheet, rx))
}

fn send_rows<RS: Read + Seek>(
    workbook: &mut calamine::Xlsx<RS>,
    sheet: &str,
    header_row: u32,
    shown: &Arc<str>,
    tx: &mpsc::SyncSender<Result<Row, Box<Problem>>>,
) {
    let failed = |row: u32, e: calamine::XlsxError| {
        Box::new(Problem::new(
            Code::SourceUnreadable,
            format!("the sheet cannot be read: {e}"),
            position_of(shown, u64::from(row), 0),
        ))
    };
    let mut cells = match workbook.worksheet_cells_reader(sheet) {
        Ok(cells) => cells,
        Err(e) => {
            let _ = tx.send(Err(failed(0, e)));
            return;
        }
    };
    let first = header_row.saturating_sub(1);
    let mut row: Option<Row> = None;
    loop {
        let cell = match cells.next_cell() {
            Ok(cell) => cell,
            Err(e) => {
                let at = row.as_ref().map_or(0, |r| r.line as u32);
                let _ = tx.send(Err(failed(at, e)));
                return;
            }
        };
        let Some(cell) = cell else { break };
        let (r, c) = cell.get_position();
        if r < first {
            continue;
        }
        if row.as_ref().is_some_and(|row| row.line != u64::from(r) + 1) {
            let done = row.take().expect("checked");
            if tx.send(Ok(done)).is_err() {
                return;
            }
        }
        let current = row.get_or_insert_with(|| Row {
            line: u64::from(r) + 1,
            cells: Vec::new(),
        });
        let c = c as usize;
        // Cells are bounded by the sheet's width: Excel has at most 16,384 columns.
        if c < 16_384 {
            if current.cells.len() <= c {
                current.cells.resize(c + 1, String::new());
            }
            current.cells[c] = cell_text(cell.get_value());
        }
    }
    if let Some(done) = row {
        let _ = tx.send(Ok(done));
    }
}

/// A cell as a person sees it: a phone stored as a number is its digits, not
/// `7.9123456789E10`; a date is `dd.mm.yyyy`.
fn cell_text(value: &calamine::DataRef<'_>) -> String {
    use calamine::DataRef as D;
    match value {
        D::Int(i) => i.to_string(),
        D::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        D::Float(f) => f.to_string(),
        D::String(s) => s.clone(),
        D::SharedString(s) => (*s).to_owned(),
        D::Bool(b) => b.to_string(),
        D::DateTime(d) if d.is_datetime() => {
            let (y, mo, day, h, mi, s, _) = d.to_ymd_hms_milli();
            if (h, mi, s) == (0, 0, 0) {
                format!("{day:02}.{mo:02}.{y:04}")
            } else {
                format!("{day:02}.{mo:02}.{y:04} {h:02}:{mi:02}")
            }
        }
        D::DateTime(d) => d.as_f64().to_string(),
        D::DateTimeIso(s) | D::DurationIso(s) => s.clone(),
        D::Error(e) => e.to_string(),
        D::Empty => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delimiter_is_the_commonest_outside_quotes() {
        assert_eq!(sniff_delimiter(b"a;b;c\n1,2;3"), b';');
        assert_eq!(sniff_delimiter(b"\"a;b\",c,d\n"), b',');
        assert_eq!(sniff_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(sniff_delimiter(b"single"), b';');
    }
}
