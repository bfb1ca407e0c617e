//! Stream-parses an export into records with quick-xml events: never a DOM, never a whole
//! section in memory. One event buffer and one text buffer are reused for the whole file.
//!
//! Like `csv::Reader::read_record`, [`RecordReader::read_record`] hands out one record at a
//! time. A problem inside a record (a missing id, an unknown entity, a field that is too
//! long) is returned as data with the record, so `check` can go on to the next one; a
//! problem with the document itself (broken syntax, the file cut short) ends the file.

mod encoding;
mod lines;

use std::io::Read;
use std::sync::Arc;

use quick_xml::Reader;
use quick_xml::escape::{EscapeError, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::utils::is_whitespace;

use encoding::UnsupportedEncoding;
pub use encoding::{Detected, Utf8Reader};
use lines::{Ahead, Blocks, Inline, LineCol, LineCounter};

use crate::error::{Code, Position, Problem, Warnings};
use crate::model::{Mark, Parsed, RawAccount, RawClient, RawPremise, RawPremiseLink, RawRecord};

/// SPEC §4: any text field holds at most this many characters.
pub const MAX_FIELD_CHARS: usize = 4096;
/// A field is no longer collected past this many bytes: the longest a field of
/// `MAX_FIELD_CHARS` characters can be in UTF-8, plus one, so memory stays bounded.
const MAX_FIELD_BYTES: usize = MAX_FIELD_CHARS * 4 + 1;

/// The characters of an over-long id kept to name its record in messages.
const ID_SHOWN: usize = 64;

/// The only format version this build reads.
pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tag {
    Root,
    Premises,
    Premise,
    Accounts,
    Account,
    Clients,
    Client,
    Address,
    Number,
    Kind,
    Floor,
    Entrance,
    Rooms,
    Area,
    CadastralNumber,
    Residents,
    Name,
    Phone,
    Email,
    Other(String),
}

impl Tag {
    fn from_name(name: &str) -> Tag {
        match name {
            "crm-import" => Tag::Root,
            "premises" => Tag::Premises,
            "premise" => Tag::Premise,
            "accounts" => Tag::Accounts,
            "account" => Tag::Account,
            "clients" => Tag::Clients,
            "client" => Tag::Client,
            "address" => Tag::Address,
            "number" => Tag::Number,
            "kind" => Tag::Kind,
            "floor" => Tag::Floor,
            "entrance" => Tag::Entrance,
            "rooms" => Tag::Rooms,
            "area" => Tag::Area,
            "cadastral-number" => Tag::CadastralNumber,
            "residents" => Tag::Residents,
            "name" => Tag::Name,
            "phone" => Tag::Phone,
            "email" => Tag::Email,
            other => Tag::Other(other.to_owned()),
        }
    }
}

/// The parts of a start tag the format uses; everything else is named in `unknown`.
#[derive(Debug, Default)]
struct Attrs {
    id: Option<String>,
    reference: Option<String>,
    role: Option<String>,
    version: Option<String>,
    unknown: Vec<String>,
    bad_entity: Option<String>,
    /// An attribute longer than a field may be (its value is kept cut short).
    too_long: Option<&'static str>,
}

#[derive(Debug)]
struct StartTag {
    tag: Tag,
    empty: bool,
}

#[derive(Debug)]
enum Ev {
    Start(StartTag),
    End,
    /// Text outside a field; `blank` when it is only whitespace.
    Text {
        blank: bool,
    },
    /// An entity other than the five predefined ones and character references.
    BadEntity(String),
    DocType {
        html: bool,
    },
    Eof,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    BeforeRoot,
    Root,
    Premises,
    Clients,
    AfterRoot,
}

/// Bytes read from the source at a time, into each block the tokenizer takes.
const BLOCK: usize = 512 * 1024;

/// Reads records from one export, in document order.
pub struct RecordReader<B: Blocks> {
    xml: Reader<LineCounter<B>>,
    buf: Vec<u8>,
    text: String,
    file: Arc<str>,
    index: u64,
    place: Place,
    /// Warnings met between records (an unknown section); they travel with the next record.
    pending: Warnings,
    /// The attributes of the last start tag read; reused from tag to tag.
    attrs: Attrs,
}

impl<R: Read> RecordReader<Inline<Utf8Reader<R>>> {
    /// Reads an export in UTF-8 or windows-1251, whichever its bytes are, on this thread.
    pub fn from_bytes(file: Arc<str>, bytes: R) -> Self {
        RecordReader::new(file, Inline::new(Utf8Reader::new(bytes), BLOCK))
    }
}

impl RecordReader<Ahead> {
    /// Like [`RecordReader::from_bytes`], with the reading and decoding (and finding the
    /// line feeds) on a thread of its own, `thread`, which first runs `started`. The parser's
    /// thread is the slowest stage of `check` and of a re-import.
    pub fn read_ahead<R: Read + Send + 'static>(
        file: Arc<str>,
        bytes: R,
        thread: &str,
        started: fn(),
    ) -> std::io::Result<Self> {
        let blocks = Ahead::spawn(Utf8Reader::new(bytes), BLOCK, thread, started)?;
        Ok(RecordReader::new(file, blocks))
    }
}

impl<B: Blocks> RecordReader<B> {
    fn new(file: Arc<str>, blocks: B) -> Self {
        let mut xml = Reader::from_reader(LineCounter::new(blocks));
        let config = xml.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.check_comments = false;
        RecordReader {
            xml,
            buf: Vec::with_capacity(4096),
            text: String::with_capacity(256),
            file,
            index: 0,
            place: Place::BeforeRoot,
            pending: Warnings::default(),
            attrs: Attrs::default(),
        }
    }

    /// Warnings found after the last record (an unknown element at the end of the file).
    pub fn take_trailing_warnings(&mut self) -> Warnings {
        std::mem::take(&mut self.pending)
    }

    /// The next record, `None` at the end of the document, or the problem that makes the
    /// rest of the document unreadable.
    pub fn read_record(&mut self) -> Result<Option<Parsed>, Box<Problem>> {
        loop {
            let ev = self.next_event(false)?;
            match (self.place, ev) {
                (_, Ev::Text { blank: true } | Ev::Other) => {}
                (Place::BeforeRoot, Ev::DocType { html: true }) => return Err(self.html_error()),
                (Place::BeforeRoot, Ev::DocType { html: false }) => {}
                (Place::BeforeRoot, Ev::Start(start)) => self.enter_root(start)?,
                (Place::BeforeRoot, Ev::Eof) => {
                    return Err(
                        self.fatal(Code::NotXml, "the file is empty: expected an XML export")
                    );
                }
                (Place::BeforeRoot, Ev::Text { blank: false }) => {
                    return Err(self.fatal(
                        Code::NotXml,
                        "the file does not start with an XML element: is it an XML export?",
                    ));
                }
                (Place::Root, Ev::Start(start)) => match start.tag {
                    Tag::Premises if !start.empty => self.place = Place::Premises,
                    Tag::Clients if !start.empty => self.place = Place::Clients,
                    Tag::Premises | Tag::Clients => {}
                    _ => self.skip_unknown_between_records(start)?,
                },
                (Place::Root, Ev::End) => self.place = Place::AfterRoot,
                (Place::Premises, Ev::Start(start)) if start.tag == Tag::Premise => {
                    let at = self.xml.get_mut().marked();
                    let premise = self.read_premise(at, start)?;
                    return Ok(Some(self.ended(premise)));
                }
                (Place::Clients, Ev::Start(start)) if start.tag == Tag::Client => {
                    let at = self.xml.get_mut().marked();
                    let client = self.read_client(at, start)?;
                    return Ok(Some(self.ended(client)));
                }
                (Place::Premises | Place::Clients, Ev::Start(start)) => {
                    self.skip_unknown_between_records(start)?;
                }
                (Place::Premises | Place::Clients, Ev::End) => self.place = Place::Root,
                (Place::AfterRoot, Ev::Eof) => return Ok(None),
                (Place::AfterRoot, Ev::Start(_) | Ev::Text { blank: false }) => {
                    return Err(
                        self.fatal(Code::XmlSyntax, "content after the end of the root element")
                    );
                }
                (_, Ev::Eof) => return Err(self.truncated()),
                (_, Ev::BadEntity(name)) => {
                    return Err(self.fatal(Code::UnknownEntity, unknown_entity_message(&name)));
                }
                (_, Ev::Text { blank: false } | Ev::DocType { .. } | Ev::End) => {}
            }
        }
    }

    /// The record just read, with its [`Mark`].
    fn ended(&mut self, mut record: Parsed) -> Parsed {
        let (offset, hash) = self.xml.get_mut().prefix();
        record.end = Some(Mark {
            record: self.index,
            offset,
            hash,
        });
        record
    }

    fn enter_root(&mut self, start: StartTag) -> Result<(), Box<Problem>> {
        match &start.tag {
            Tag::Root => {}
            Tag::Other(name) if name.eq_ignore_ascii_case("html") => return Err(self.html_error()),
            Tag::Other(name) => {
                return Err(self.fatal(
                    Code::UnexpectedRoot,
                    format!("the root element is <{name}>, expected <crm-import version=\"1\">"),
                ));
            }
            other => {
                return Err(self.fatal(
                    Code::UnexpectedRoot,
                    format!("the root element is {other:?}, expected <crm-import version=\"1\">"),
                ));
            }
        }
        match self.attrs.version.as_deref() {
            Some(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(self.fatal(
                    Code::UnsupportedVersion,
                    format!("format version {v:?} is not supported; this build reads version 1"),
                ));
            }
            None => {
                return Err(self.fatal(
                    Code::UnsupportedVersion,
                    "the root element has no version attribute: expected version=\"1\"",
                ));
            }
        }
        self.place = if start.empty {
            Place::AfterRoot
        } else {
            Place::Root
        };
        Ok(())
    }

    fn html_error(&mut self) -> Box<Problem> {
        self.fatal(
            Code::HtmlInsteadOfXml,
            "this is an HTML page, not an XML export: a link must download the file itself \
             (for Dropbox, end the link with ?dl=1)",
        )
    }

    fn here(&mut self) -> Position {
        let at = self.xml.get_mut().here();
        Position {
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            ..Position::default()
        }
    }

    fn fatal(&mut self, code: Code, message: impl Into<String>) -> Box<Problem> {
        Box::new(Problem::new(code, message, self.here()))
    }

    fn truncated(&mut self) -> Box<Problem> {
        self.fatal(
            Code::Truncated,
            "the file ends in the middle of the document: it was cut short",
        )
    }

    fn record_position(&mut self, at: LineCol, id: &str, kind: &'static str) -> Position {
        self.index += 1;
        Position {
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            record_index: Some(self.index),
            record_id: (!id.is_empty()).then(|| id.to_owned()),
            kind,
        }
    }

    fn read_premise(&mut self, at: LineCol, start: StartTag) -> Result<Parsed, Box<Problem>> {
        let id = self.attrs.id.take().unwrap_or_default();
        let position = self.record_position(at, &id, "premise");
        let mut rec = Record::new(position, std::mem::take(&mut self.pending));
        rec.attributes(&self.attrs, "premise");
        let mut premise = RawPremise {
            id,
            ..RawPremise::default()
        };
        if premise.id.is_empty() {
            rec.fail(Code::MissingId, "the premise has no id attribute", "id");
        }
        if !start.empty {
            loop {
                match self.next_event(false)? {
                    Ev::Start(s) => {
                        let slot = match s.tag {
                            Tag::Address => &mut premise.address,
                            Tag::Number => &mut premise.number,
                            Tag::Kind => &mut premise.kind,
                            Tag::Floor => &mut premise.floor,
                            Tag::Entrance => &mut premise.entrance,
                            Tag::Rooms => &mut premise.rooms,
                            Tag::Area => &mut premise.area,
                            Tag::CadastralNumber => &mut premise.cadastral_number,
                            Tag::Accounts => {
                                self.read_accounts(&mut rec, &mut premise.accounts, s)?;
                                continue;
                            }
                            _ => {
                                self.skip_unknown(&mut rec, s)?;
                                continue;
                            }
                        };
                        let name = field_name(&s.tag);
                        self.read_field(&mut rec, slot, name, s)?;
                    }
                    Ev::End => break,
                    ev => self.outside_field(&mut rec, ev)?,
                }
            }
        }
        Ok(rec.finish(RawRecord::Premise(premise)))
    }

    fn read_accounts(
        &mut self,
        rec: &mut Record,
        accounts: &mut Vec<RawAccount>,
        start: StartTag,
    ) -> Result<(), Box<Problem>> {
        rec.attributes(&self.attrs, "accounts");
        if start.empty {
            return Ok(());
        }
        loop {
            match self.next_event(false)? {
                Ev::Start(s) if s.tag == Tag::Account => {
                    let account = self.read_account(rec, s)?;
                    accounts.push(account);
                }
                Ev::Start(s) => self.skip_unknown(rec, s)?,
                Ev::End => return Ok(()),
                ev => self.outside_field(rec, ev)?,
            }
        }
    }

    fn read_account(
        &mut self,
        rec: &mut Record,
        start: StartTag,
    ) -> Result<RawAccount, Box<Problem>> {
        rec.attributes(&self.attrs, "account");
        let id = self.attrs.id.take().unwrap_or_default();
        let mut account = RawAccount {
            id,
            ..RawAccount::default()
        };
        if account.id.is_empty() {
            rec.fail(
                Code::MissingId,
                "an account of the premise has no id attribute",
                "account.id",
            );
        }
        if !start.empty {
            loop {
                match self.next_event(false)? {
                    Ev::Start(s) => {
                        let (slot, name) = match s.tag {
                            Tag::Number => (&mut account.number, "account.number"),
                            Tag::Area => (&mut account.area, "account.area"),
                            Tag::Residents => (&mut account.residents, "account.residents"),
                            _ => {
                                self.skip_unknown(rec, s)?;
                                continue;
                            }
                        };
                        self.read_field(rec, slot, name, s)?;
                    }
                    Ev::End => break,
                    ev => self.outside_field(rec, ev)?,
                }
            }
        }
        Ok(account)
    }

    fn read_client(&mut self, at: LineCol, start: StartTag) -> Result<Parsed, Box<Problem>> {
        let id = self.attrs.id.take().unwrap_or_default();
        let position = self.record_position(at, &id, "client");
        let mut rec = Record::new(position, std::mem::take(&mut self.pending));
        rec.attributes(&self.attrs, "client");
        let mut client = RawClient {
            id,
            ..RawClient::default()
        };
        if client.id.is_empty() {
            rec.fail(Code::MissingId, "the client has no id attribute", "id");
        }
        if !start.empty {
            loop {
                match self.next_event(false)? {
                    Ev::Start(s) => {
                        let slot = match s.tag {
                            Tag::Name => &mut client.name,
                            Tag::Phone => &mut client.phone,
                            Tag::Email => &mut client.email,
                            Tag::Premise | Tag::Account => {
                                self.read_link(&mut rec, &mut client, s)?;
                                continue;
                            }
                            _ => {
                                self.skip_unknown(&mut rec, s)?;
                                continue;
                            }
                        };
                        let name = field_name(&s.tag);
                        self.read_field(&mut rec, slot, name, s)?;
                    }
                    Ev::End => break,
                    ev => self.outside_field(&mut rec, ev)?,
                }
            }
        }
        Ok(rec.finish(RawRecord::Client(client)))
    }

    /// `<premise ref="P-1" role="owner"/>` or `<account ref="A-1"/>` inside a client.
    fn read_link(
        &mut self,
        rec: &mut Record,
        client: &mut RawClient,
        start: StartTag,
    ) -> Result<(), Box<Problem>> {
        let is_premise = start.tag == Tag::Premise;
        let what = if is_premise { "premise" } else { "account" };
        rec.attributes(&self.attrs, what);
        if !is_premise && self.attrs.role.is_some() {
            rec.warn(
                Code::UnknownAttribute,
                "role",
                "attribute role of <account> is not part of the format; skipped",
            );
        }
        let role = self.attrs.role.take();
        match self.attrs.reference.take() {
            Some(reference) if !reference.trim().is_empty() => {
                let reference = reference.trim().to_owned();
                if is_premise {
                    client.premises.push(RawPremiseLink {
                        premise: reference,
                        role,
                    });
                } else {
                    client.accounts.push(reference);
                }
            }
            _ => rec.fail(
                Code::MissingField,
                format!("a <{what}> link of the client has no ref attribute"),
                format!("{what}.ref"),
            ),
        }
        if !start.empty {
            self.skip_children(rec)?;
        }
        Ok(())
    }

    /// Collects the text of a field element up to its end tag.
    fn read_field(
        &mut self,
        rec: &mut Record,
        slot: &mut Option<String>,
        name: &str,
        start: StartTag,
    ) -> Result<(), Box<Problem>> {
        rec.attributes(&self.attrs, name);
        self.text.clear();
        if !start.empty {
            loop {
                match self.next_event(true)? {
                    Ev::End => break,
                    Ev::Start(s) => self.skip_unknown(rec, s)?,
                    Ev::BadEntity(entity) => {
                        rec.fail(Code::UnknownEntity, unknown_entity_message(&entity), name)
                    }
                    Ev::Eof => return Err(self.truncated()),
                    Ev::Text { .. } | Ev::DocType { .. } | Ev::Other => {}
                }
            }
        }
        if slot.is_some() {
            rec.fail(
                Code::DuplicateField,
                format!("<{}> appears twice", name.trim_start_matches("account.")),
                name,
            );
            return Ok(());
        }
        let value = self.text.trim();
        // A character is at least one byte: only a field of more bytes than the limit has
        // its characters counted.
        let too_long = value.len() > MAX_FIELD_CHARS && value.chars().count() > MAX_FIELD_CHARS;
        if self.text.len() >= MAX_FIELD_BYTES || too_long {
            rec.fail(
                Code::FieldTooLong,
                format!("the field is longer than {MAX_FIELD_CHARS} characters"),
                name,
            );
        } else if !value.is_empty() {
            *slot = Some(value.to_owned());
        }
        Ok(())
    }

    /// Something other than an element between the fields of a record.
    fn outside_field(&mut self, rec: &mut Record, ev: Ev) -> Result<(), Box<Problem>> {
        match ev {
            Ev::Eof => Err(self.truncated()),
            Ev::BadEntity(entity) => {
                rec.fail(Code::UnknownEntity, unknown_entity_message(&entity), "");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn skip_unknown(&mut self, rec: &mut Record, start: StartTag) -> Result<(), Box<Problem>> {
        let name = match &start.tag {
            Tag::Other(name) => name.clone(),
            known => field_name(known).to_owned(),
        };
        rec.warn(
            Code::UnknownElement,
            &name,
            format!("element <{name}> is not part of the format here; skipped"),
        );
        if !start.empty {
            self.skip_element()?;
        }
        Ok(())
    }

    fn skip_unknown_between_records(&mut self, start: StartTag) -> Result<(), Box<Problem>> {
        let name = match &start.tag {
            Tag::Other(name) => name.clone(),
            known => field_name(known).to_owned(),
        };
        let mut problem = Problem::new(
            Code::UnknownElement,
            format!("element <{name}> is not part of the format here; skipped"),
            position_of(&self.file, self.xml.get_mut().marked()),
        );
        problem.key = name;
        self.pending.push(problem);
        if !start.empty {
            self.skip_element()?;
        }
        Ok(())
    }

    /// Skips to the end of the element whose start tag was just read.
    fn skip_element(&mut self) -> Result<(), Box<Problem>> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next_event(false)? {
                Ev::Start(s) if !s.empty => depth += 1,
                Ev::End => depth -= 1,
                Ev::Eof => return Err(self.truncated()),
                _ => {}
            }
        }
        Ok(())
    }

    fn skip_children(&mut self, rec: &mut Record) -> Result<(), Box<Problem>> {
        loop {
            match self.next_event(false)? {
                Ev::Start(s) => self.skip_unknown(rec, s)?,
                Ev::End => return Ok(()),
                ev => self.outside_field(rec, ev)?,
            }
        }
    }

    /// Reads one event. With `collect`, text and entities are appended to `self.text`.
    ///
    /// Outside a field, whitespace is skipped here rather than read as a text event: the
    /// indentation between elements is half the events of an export, and each one went
    /// through the tokenizer (its UTF-8 check, a copy into the event buffer) only to be
    /// dropped. Text that is not whitespace still arrives as an event, and every event is
    /// marked where its own first byte is, as before. The prolog, before the root element,
    /// is read as it always was.
    fn next_event(&mut self, collect: bool) -> Result<Ev, Box<Problem>> {
        if !collect
            && self.place != Place::BeforeRoot
            && let Err(e) = self.xml.get_mut().skip_whitespace()
        {
            let at = self.xml.get_mut().here();
            return Err(xml_problem(e.into(), position_of(&self.file, at)));
        }
        self.xml.get_mut().mark();
        self.buf.clear();
        let event = match self.xml.read_event_into(&mut self.buf) {
            Ok(event) => event,
            Err(e) => {
                return Err(xml_problem(
                    e,
                    position_of(&self.file, self.xml.get_mut().here()),
                ));
            }
        };
        let ev = match event {
            Event::Start(e) => match start_tag(&e, false, &mut self.attrs) {
                Ok(tag) => Ev::Start(tag),
                Err(err) => {
                    return Err(xml_problem(
                        err,
                        position_of(&self.file, self.xml.get_mut().marked()),
                    ));
                }
            },
            Event::Empty(e) => match start_tag(&e, true, &mut self.attrs) {
                Ok(tag) => Ev::Start(tag),
                Err(err) => {
                    return Err(xml_problem(
                        err,
                        position_of(&self.file, self.xml.get_mut().marked()),
                    ));
                }
            },
            Event::End(_) => Ev::End,
            Event::Text(e) => {
                if collect {
                    push_bounded(&mut self.text, &e.xml10_content());
                    Ev::Text { blank: false }
                } else {
                    Ev::Text {
                        blank: e.trim_ascii().is_empty(),
                    }
                }
            }
            Event::CData(e) => {
                if collect {
                    push_bounded(&mut self.text, &e.xml10_content());
                }
                Ev::Text {
                    blank: !collect && e.trim_ascii().is_empty(),
                }
            }
            Event::GeneralRef(e) => {
                let resolved = match e.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    Ok(None) => resolve_predefined_entity(&e).map(str::to_owned),
                    Err(_) => None,
                };
                match resolved {
                    Some(text) => {
                        if collect {
                            push_bounded(&mut self.text, &text);
                        }
                        Ev::Text { blank: false }
                    }
                    None => Ev::BadEntity(e.to_string()),
                }
            }
            Event::Decl(decl) => {
                if let Some(Ok(declared)) = decl.encoding() {
                    let declared = declared.to_ascii_lowercase();
                    if !matches!(
                        declared.as_str(),
                        "utf-8" | "utf8" | "windows-1251" | "cp1251"
                    ) {
                        return Err(Box::new(Problem::new(
                            Code::UnsupportedEncoding,
                            format!(
                                "the file declares encoding {declared:?}; exports must be UTF-8 or windows-1251"
                            ),
                            position_of(&self.file, self.xml.get_mut().marked()),
                        )));
                    }
                }
                Ev::Other
            }
            Event::DocType(e) => Ev::DocType {
                html: e.to_ascii_lowercase().contains("html"),
            },
            Event::Comment(_) | Event::PI(_) => Ev::Other,
            Event::Eof => Ev::Eof,
        };
        Ok(ev)
    }
}

fn position_of(file: &Arc<str>, at: LineCol) -> Position {
    Position {
        file: file.clone(),
        line: at.line,
        column: at.column,
        ..Position::default()
    }
}

/// The record being read: its position, its first problem, its warnings.
struct Record {
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

    fn attributes(&mut self, attrs: &Attrs, element: &str) {
        for name in &attrs.unknown {
            self.warn(
                Code::UnknownAttribute,
                name,
                format!("attribute {name} of <{element}> is not part of the format; skipped"),
            );
        }
        if let Some(entity) = &attrs.bad_entity {
            self.fail(Code::UnknownEntity, unknown_entity_message(entity), element);
        }
        if let Some(name) = attrs.too_long {
            self.fail(
                Code::FieldTooLong,
                format!(
                    "attribute {name} of <{element}> is longer than {MAX_FIELD_CHARS} characters"
                ),
                name,
            );
        }
    }

    fn finish(self, body: RawRecord) -> Parsed {
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

fn field_name(tag: &Tag) -> &'static str {
    match tag {
        Tag::Root => "crm-import",
        Tag::Premises => "premises",
        Tag::Premise => "premise",
        Tag::Accounts => "accounts",
        Tag::Account => "account",
        Tag::Clients => "clients",
        Tag::Client => "client",
        Tag::Address => "address",
        Tag::Number => "number",
        Tag::Kind => "kind",
        Tag::Floor => "floor",
        Tag::Entrance => "entrance",
        Tag::Rooms => "rooms",
        Tag::Area => "area",
        Tag::CadastralNumber => "cadastral-number",
        Tag::Residents => "residents",
        Tag::Name => "name",
        Tag::Phone => "phone",
        Tag::Email => "email",
        Tag::Other(_) => "element",
    }
}

fn unknown_entity_message(name: &str) -> String {
    format!(
        "unknown entity &{name};: only &lt; &gt; &amp; &quot; &apos; and character references \
         like &#1046; are allowed (DTD entities are never expanded)"
    )
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

/// Reads a start tag; its attributes go to `attrs`, whose buffers are reused.
fn start_tag(
    e: &BytesStart<'_>,
    empty: bool,
    attrs: &mut Attrs,
) -> Result<StartTag, quick_xml::Error> {
    let tag = Tag::from_name(e.name().as_ref());
    attrs.id = None;
    attrs.reference = None;
    attrs.role = None;
    attrs.version = None;
    attrs.unknown.clear();
    attrs.bad_entity = None;
    attrs.too_long = None;
    // Most tags are fields without attributes; the iterator would still be set up and run
    // once for each of them.
    if e.attributes_raw().bytes().all(is_whitespace) {
        return Ok(StartTag { tag, empty });
    }
    for attr in e.attributes() {
        let attr = attr.map_err(quick_xml::Error::InvalidAttr)?;
        let key = attr.key.as_ref();
        let (name, slot) = match key {
            "id" => ("id", &mut attrs.id),
            "ref" => ("ref", &mut attrs.reference),
            "role" => ("role", &mut attrs.role),
            "version" => ("version", &mut attrs.version),
            k if k == "xmlns" || k.starts_with("xmlns:") || k.starts_with("xsi:") => continue,
            other => {
                attrs.unknown.push(other.to_owned());
                continue;
            }
        };
        match attr.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
            Ok(value) => {
                let value = value.trim();
                if value.len() > MAX_FIELD_CHARS && value.chars().count() > MAX_FIELD_CHARS {
                    // Kept short: the value names the record in every message about it.
                    let mut cut: String = value.chars().take(ID_SHOWN).collect();
                    cut.push('…');
                    *slot = Some(cut);
                    attrs.too_long = Some(name);
                } else {
                    *slot = Some(value.to_owned());
                }
            }
            Err(quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name))) => {
                attrs.bad_entity.get_or_insert(name);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(StartTag { tag, empty })
}

fn xml_problem(error: quick_xml::Error, position: Position) -> Box<Problem> {
    use quick_xml::Error as E;
    let (code, message) = match &error {
        E::Io(io) => match io
            .get_ref()
            .and_then(|e| e.downcast_ref::<UnsupportedEncoding>())
        {
            Some(unsupported) => (Code::UnsupportedEncoding, unsupported.to_string()),
            None => (
                Code::SourceUnreadable,
                format!("reading the file failed: {io}"),
            ),
        },
        E::Encoding(_) => (
            Code::InvalidUtf8,
            "bytes that are not valid UTF-8 in a file whose text so far was UTF-8: \
             re-save the export in one encoding (UTF-8 or windows-1251)"
                .to_string(),
        ),
        E::Syntax(e) => (Code::XmlSyntax, format!("broken XML: {e}")),
        E::IllFormed(e) => (Code::XmlSyntax, format!("malformed XML: {e}")),
        E::InvalidAttr(e) => (Code::XmlSyntax, format!("broken attribute: {e}")),
        E::Escape(e) => (Code::XmlSyntax, format!("broken entity reference: {e}")),
        other => (Code::XmlSyntax, format!("broken XML: {other}")),
    };
    Box::new(Problem::new(code, message, position))
}

#[cfg(test)]
mod tests;
