//! Reads XML exports through a layout with quick-xml events: never a DOM, never a whole
//! section in memory. One event buffer and one text buffer are reused for the whole file.
//!
//! The layout's element paths become a tree of the element names it knows ([`Tree`]);
//! every other element is skipped as a whole, without looking inside. The native format is
//! the built-in layout, read by this same code; only it warns about what it does not know.

use std::io::Read;
use std::sync::Arc;

use quick_xml::Reader;
use quick_xml::escape::{EscapeError, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::utils::is_whitespace;

use super::encoding::Utf8Reader;
use super::lines::{Ahead, Blocks, Inline, LineCol, LineCounter};
use super::plan::{Frame, Plan, Scope};
use super::{
    ID_SHOWN, MAX_FIELD_BYTES, MAX_FIELD_CHARS, Record, io_problem, position_of, push_bounded,
    record_position,
};
use crate::error::{Code, Position, Problem, Warnings};
use crate::layout::Layout;
use crate::model::{Mark, Parsed, RawRecord};

/// The only format version this build reads.
pub const FORMAT_VERSION: &str = "1";

/// An element the layout knows.
#[derive(Debug)]
struct Node {
    name: Box<str>,
    /// Each child's name beside its node, so finding one reads one short array.
    children: Vec<Child>,
    /// The element starts a record, an account or a link.
    opens: Option<Scope>,
    /// The slot (of the scope it is in) its text goes to, and the field it is reported as.
    text: Option<(usize, Box<str>)>,
    /// Attributes the layout reads, with their slots.
    attrs: Vec<(Box<str>, usize)>,
}

/// A child element's name, with its length and first eight bytes as one number: comparing
/// those settles a name of up to eight bytes without a call to `memcmp`, which a tag name's
/// lookup paid for every sibling of the same length (a tenth of the parser's time).
#[derive(Debug)]
struct Child {
    len: usize,
    head: u64,
    name: Box<str>,
    node: usize,
}

fn head_of(name: &str) -> u64 {
    let mut head = [0u8; 8];
    let n = name.len().min(8);
    head[..n].copy_from_slice(&name.as_bytes()[..n]);
    u64::from_le_bytes(head)
}

/// The element names of a layout, as a tree from the document (node 0).
#[derive(Debug)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn new(plan: &Plan) -> Tree {
        let mut tree = Tree {
            nodes: vec![Node::new("")],
        };
        for scope in [
            Scope::Premise,
            Scope::Account,
            Scope::Client,
            Scope::PremiseLink,
            Scope::AccountLink,
        ] {
            let Some(scope_plan) = plan.scope(scope) else {
                continue;
            };
            let Some(record) = &scope_plan.record else {
                continue;
            };
            let under = match scope {
                Scope::Account => plan
                    .premise
                    .as_ref()
                    .and_then(|p| p.record.as_deref())
                    .map_or(0, |p| tree.walk(0, p)),
                _ => 0,
            };
            let at = tree.walk(under, record);
            tree.nodes[at].opens = Some(scope);
            for (slot, s) in scope_plan.slots.iter().enumerate() {
                let (steps, attr) = match s.path.rsplit_once('@') {
                    Some((steps, attr)) => (steps.trim_end_matches('/'), Some(attr)),
                    None => (s.path.as_str(), None),
                };
                let node = if steps.is_empty() || steps == "." {
                    at
                } else {
                    tree.walk(at, steps)
                };
                match attr {
                    Some(attr) => tree.nodes[node].attrs.push((attr.into(), slot)),
                    None => tree.nodes[node].text = Some((slot, s.label.as_str().into())),
                }
            }
        }
        tree
    }

    /// The node of `path` under `from`, made where missing.
    fn walk(&mut self, from: usize, path: &str) -> usize {
        let mut at = from;
        for step in path.split('/').filter(|s| !s.is_empty()) {
            at = match self.child(at, step) {
                Some(child) => child,
                None => {
                    self.nodes.push(Node::new(step));
                    let child = self.nodes.len() - 1;
                    self.nodes[at].children.push(Child {
                        len: step.len(),
                        head: head_of(step),
                        name: step.into(),
                        node: child,
                    });
                    child
                }
            };
        }
        at
    }

    fn child(&self, parent: usize, name: &str) -> Option<usize> {
        let (len, head) = (name.len(), head_of(name));
        self.nodes[parent]
            .children
            .iter()
            .find(|c| c.len == len && c.head == head && (len <= 8 || *c.name == *name))
            .map(|c| c.node)
    }

    /// The names a document's root may have, for the message when it has another.
    fn roots(&self) -> String {
        let names: Vec<String> = self.nodes[0]
            .children
            .iter()
            .map(|c| format!("<{}>", c.name))
            .collect();
        names.join(" or ")
    }
}

impl Node {
    fn new(name: &str) -> Node {
        Node {
            name: name.into(),
            children: Vec::new(),
            opens: None,
            text: None,
            attrs: Vec::new(),
        }
    }
}

/// The attributes of the last start tag read that the layout knows; reused from tag to tag.
#[derive(Debug, Default)]
struct Attrs {
    values: Vec<(usize, String)>,
    version: Option<String>,
    unknown: Vec<String>,
    bad_entity: Option<String>,
    /// An attribute longer than a field may be (its value is kept cut short).
    too_long: Option<String>,
}

#[derive(Debug)]
struct StartTag {
    /// The element, when the layout knows it here.
    node: Option<usize>,
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
    Inside,
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
    plan: Plan,
    tree: Tree,
    /// The native format: root and version checked, unknown elements warned about.
    native: bool,
    /// The known elements open around the reader, outermost first.
    open: Vec<usize>,
    /// The name of the last start tag the layout does not know, when it is needed.
    unknown: String,
    /// Warnings met between records (an unknown section); they travel with the next record.
    pending: Warnings,
    /// The attributes of the last start tag read; reused from tag to tag.
    attrs: Attrs,
    /// A frame of each scope, kept from one record to the next.
    frames: [Option<Frame>; 5],
}

impl<R: Read> RecordReader<Inline<Utf8Reader<R>>> {
    /// Reads an export in UTF-8 or windows-1251, whichever its bytes are, on this thread.
    pub fn from_bytes(file: Arc<str>, layout: &Layout, bytes: R) -> Self {
        RecordReader::new(file, layout, Inline::new(Utf8Reader::new(bytes), BLOCK))
    }
}

impl RecordReader<Ahead> {
    /// Like [`RecordReader::from_bytes`], with the reading and decoding (and finding the
    /// line feeds) on a thread of its own, `thread`, which first runs `started`. The parser's
    /// thread is the slowest stage of `check` and of a re-import.
    pub fn read_ahead<R: Read + Send + 'static>(
        file: Arc<str>,
        layout: &Layout,
        bytes: R,
        thread: &str,
        started: fn(),
    ) -> std::io::Result<Self> {
        let blocks = Ahead::spawn(Utf8Reader::new(bytes), BLOCK, thread, started)?;
        Ok(RecordReader::new(file, layout, blocks))
    }
}

impl<B: Blocks> RecordReader<B> {
    fn new(file: Arc<str>, layout: &Layout, blocks: B) -> Self {
        let mut xml = Reader::from_reader(LineCounter::new(blocks));
        let config = xml.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.check_comments = false;
        let plan = Plan::new(layout);
        let tree = Tree::new(&plan);
        RecordReader {
            xml,
            buf: Vec::with_capacity(4096),
            text: String::with_capacity(256),
            file,
            index: 0,
            place: Place::BeforeRoot,
            plan,
            tree,
            native: layout.native,
            open: Vec::with_capacity(16),
            unknown: String::new(),
            pending: Warnings::default(),
            attrs: Attrs::default(),
            frames: Default::default(),
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
            let parent = self.open.last().copied().unwrap_or(0);
            let ev = self.next_event(Some(parent), false)?;
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
                (
                    Place::Inside,
                    Ev::Start(StartTag {
                        node: Some(node),
                        empty,
                    }),
                ) => match self.tree.nodes[node].opens {
                    Some(scope @ (Scope::Premise | Scope::Client)) => {
                        let at = self.xml.get_mut().marked();
                        let record = self.read_entity(at, node, scope, empty)?;
                        return Ok(Some(self.ended(record)));
                    }
                    _ if !empty => self.open.push(node),
                    _ => {}
                },
                (Place::Inside, Ev::Start(StartTag { node: None, empty })) => {
                    self.skip_unknown_between_records(empty)?;
                }
                (Place::Inside, Ev::End) => {
                    self.open.pop();
                    if self.open.is_empty() {
                        self.place = Place::AfterRoot;
                    }
                }
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
        let Some(root) = start.node else {
            if self.unknown.eq_ignore_ascii_case("html") {
                return Err(self.html_error());
            }
            let message = format!(
                "the root element is <{}>, expected {}",
                self.unknown,
                if self.native {
                    "<crm-import version=\"1\">".to_owned()
                } else {
                    self.tree.roots()
                }
            );
            return Err(self.fatal(Code::UnexpectedRoot, message));
        };
        if self.native {
            match self.attrs.version.as_deref() {
                Some(FORMAT_VERSION) => {}
                Some(v) => {
                    return Err(self.fatal(
                        Code::UnsupportedVersion,
                        format!(
                            "format version {v:?} is not supported; this build reads version 1"
                        ),
                    ));
                }
                None => {
                    return Err(self.fatal(
                        Code::UnsupportedVersion,
                        "the root element has no version attribute: expected version=\"1\"",
                    ));
                }
            }
        }
        if start.empty {
            self.place = Place::AfterRoot;
        } else {
            self.place = Place::Inside;
            self.open.push(root);
        }
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
        position_of(&self.file, at.line, at.column)
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

    /// A premise or client with everything inside it.
    fn read_entity(
        &mut self,
        at: LineCol,
        node: usize,
        scope: Scope,
        empty: bool,
    ) -> Result<Parsed, Box<Problem>> {
        self.index += 1;
        let position = record_position(&self.file, self.index, scope, at.line, at.column);
        let mut rec = Record::new(position, std::mem::take(&mut self.pending));
        let mut frame = self.frame(scope);
        self.read_scope(node, empty, &mut rec, &mut frame)?;
        let body = if scope == Scope::Premise {
            RawRecord::Premise(self.plan.premise(&mut frame, &mut rec))
        } else {
            RawRecord::Client(self.plan.client(&mut frame, &mut rec))
        };
        self.spare(scope, frame);
        Ok(rec.finish(body))
    }

    /// A frame for a record, account or link of `scope`: one kept from before, or new.
    fn frame(&mut self, scope: Scope) -> Frame {
        match self.frames[scope as usize].take() {
            Some(frame) => frame,
            None => self
                .plan
                .scope(scope)
                .expect("the tree opens only scopes of the plan")
                .frame(),
        }
    }

    fn spare(&mut self, scope: Scope, mut frame: Frame) {
        frame.clear();
        self.frames[scope as usize] = Some(frame);
    }

    /// The element of a record, an account or a link, whose start tag was just read: its
    /// attributes and everything inside it go to `frame`.
    fn read_scope(
        &mut self,
        node: usize,
        empty: bool,
        rec: &mut Record,
        frame: &mut Frame,
    ) -> Result<(), Box<Problem>> {
        self.take_attrs(node, rec, frame);
        if let Some((slot, _)) = self.tree.nodes[node].text {
            return self.read_text(rec, frame, node, slot, empty);
        }
        if empty {
            return Ok(());
        }
        let base = self.open.len();
        self.open.push(node);
        loop {
            let parent = self.open.last().copied();
            match self.next_event(parent, false)? {
                Ev::Start(StartTag {
                    node: Some(child),
                    empty,
                }) => {
                    let (opens, text) = {
                        let n = &self.tree.nodes[child];
                        (n.opens, n.text.as_ref().map(|(slot, _)| *slot))
                    };
                    if let Some(scope) = opens {
                        let mut inner = self.frame(scope);
                        self.read_scope(child, empty, rec, &mut inner)?;
                        if scope == Scope::Account {
                            let account = self.plan.account(&mut inner, rec);
                            frame.accounts.push(account);
                        } else {
                            self.plan.link(scope, &mut inner, rec, frame);
                        }
                        self.spare(scope, inner);
                    } else if let Some(slot) = text {
                        self.take_attrs(child, rec, frame);
                        self.read_text(rec, frame, child, slot, empty)?;
                    } else {
                        self.take_attrs(child, rec, frame);
                        if !empty {
                            self.open.push(child);
                        }
                    }
                }
                Ev::Start(StartTag { node: None, empty }) => self.skip_unknown(rec, empty)?,
                Ev::End => {
                    self.open.pop();
                    if self.open.len() == base {
                        return Ok(());
                    }
                }
                ev => self.outside_field(rec, ev)?,
            }
        }
    }

    /// The attributes of a known element's start tag, into `frame`; the first non-empty
    /// value of a slot is the one kept.
    fn take_attrs(&mut self, node: usize, rec: &mut Record, frame: &mut Frame) {
        let element = &self.tree.nodes[node].name;
        for name in &self.attrs.unknown {
            rec.warn(
                Code::UnknownAttribute,
                name,
                format!("attribute {name} of <{element}> is not part of the format; skipped"),
            );
        }
        if let Some(entity) = &self.attrs.bad_entity {
            rec.fail(
                Code::UnknownEntity,
                unknown_entity_message(entity),
                &**element,
            );
        }
        if let Some(name) = &self.attrs.too_long {
            rec.fail(
                Code::FieldTooLong,
                format!(
                    "attribute {name} of <{element}> is longer than {MAX_FIELD_CHARS} characters"
                ),
                name.as_str(),
            );
        }
        for (slot, value) in self.attrs.values.drain(..) {
            let kept = &mut frame.values[slot];
            if kept.is_none() {
                *kept = Some(value);
            }
        }
    }

    /// Collects the text of a field element up to its end tag.
    fn read_text(
        &mut self,
        rec: &mut Record,
        frame: &mut Frame,
        node: usize,
        slot: usize,
        empty: bool,
    ) -> Result<(), Box<Problem>> {
        self.text.clear();
        if !empty {
            loop {
                match self.next_event(None, true)? {
                    Ev::End => break,
                    Ev::Start(s) => self.skip_unknown(rec, s.empty)?,
                    Ev::BadEntity(entity) => {
                        let label = self.label(node);
                        rec.fail(Code::UnknownEntity, unknown_entity_message(&entity), label)
                    }
                    Ev::Eof => return Err(self.truncated()),
                    Ev::Text { .. } | Ev::DocType { .. } | Ev::Other => {}
                }
            }
        }
        let value = self.text.trim();
        if frame.values[slot].is_some() {
            // A foreign layout takes the first non-empty value (the first of several phones);
            // the native format has one of each field.
            if self.native && !value.is_empty() {
                let name = &self.tree.nodes[node].name;
                rec.fail(
                    Code::DuplicateField,
                    format!("<{name}> appears twice"),
                    self.label(node),
                );
            }
            return Ok(());
        }
        // A character is at least one byte: only a field of more bytes than the limit has
        // its characters counted.
        let too_long = value.len() > MAX_FIELD_CHARS && value.chars().count() > MAX_FIELD_CHARS;
        if self.text.len() >= MAX_FIELD_BYTES || too_long {
            rec.fail(
                Code::FieldTooLong,
                format!("the field is longer than {MAX_FIELD_CHARS} characters"),
                self.label(node),
            );
        } else if !value.is_empty() {
            frame.values[slot] = Some(value.to_owned());
        }
        Ok(())
    }

    fn label(&self, node: usize) -> String {
        let n = &self.tree.nodes[node];
        n.text
            .as_ref()
            .map_or_else(|| n.name.to_string(), |(_, label)| label.to_string())
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

    /// An element the layout does not know, inside a record: skipped, and warned about in
    /// the native format.
    fn skip_unknown(&mut self, rec: &mut Record, empty: bool) -> Result<(), Box<Problem>> {
        if self.native {
            let name = &self.unknown;
            rec.warn(
                Code::UnknownElement,
                name,
                format!("element <{name}> is not part of the format here; skipped"),
            );
        }
        if !empty {
            self.skip_element()?;
        }
        Ok(())
    }

    fn skip_unknown_between_records(&mut self, empty: bool) -> Result<(), Box<Problem>> {
        if self.native {
            let name = self.unknown.clone();
            let at = self.xml.get_mut().marked();
            let mut problem = Problem::new(
                Code::UnknownElement,
                format!("element <{name}> is not part of the format here; skipped"),
                position_of(&self.file, at.line, at.column),
            );
            problem.key = name;
            self.pending.push(problem);
        }
        if !empty {
            self.skip_element()?;
        }
        Ok(())
    }

    /// Skips to the end of the element whose start tag was just read.
    fn skip_element(&mut self) -> Result<(), Box<Problem>> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next_event(None, false)? {
                Ev::Start(s) if !s.empty => depth += 1,
                Ev::End => depth -= 1,
                Ev::Eof => return Err(self.truncated()),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads one event. With `collect`, text and entities are appended to `self.text`.
    ///
    /// Outside a field, whitespace is skipped here rather than read as a text event: the
    /// indentation between elements is half the events of an export, and each one went
    /// through the tokenizer (its UTF-8 check, a copy into the event buffer) only to be
    /// dropped. Text that is not whitespace still arrives as an event, and every event is
    /// marked where its own first byte is, as before. The prolog, before the root element,
    /// is read as it always was.
    fn next_event(&mut self, parent: Option<usize>, collect: bool) -> Result<Ev, Box<Problem>> {
        if !collect
            && self.place != Place::BeforeRoot
            && let Err(e) = self.xml.get_mut().skip_whitespace()
        {
            let at = self.xml.get_mut().here();
            return Err(xml_problem(e.into(), located(&self.file, at)));
        }
        self.xml.get_mut().mark();
        self.buf.clear();
        let event = match self.xml.read_event_into(&mut self.buf) {
            Ok(event) => event,
            Err(e) => {
                return Err(xml_problem(
                    e,
                    located(&self.file, self.xml.get_mut().here()),
                ));
            }
        };
        let empty = matches!(event, Event::Empty(_));
        let ev = match event {
            Event::Start(e) | Event::Empty(e) => match start_tag(
                &e,
                empty,
                parent,
                &self.tree,
                self.native || self.place == Place::BeforeRoot,
                &mut self.attrs,
                &mut self.unknown,
            ) {
                Ok(tag) => Ev::Start(tag),
                Err(err) => {
                    return Err(xml_problem(
                        err,
                        located(&self.file, self.xml.get_mut().marked()),
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
                            located(&self.file, self.xml.get_mut().marked()),
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

fn located(file: &Arc<str>, at: LineCol) -> Position {
    position_of(file, at.line, at.column)
}

fn unknown_entity_message(name: &str) -> String {
    format!(
        "unknown entity &{name};: only &lt; &gt; &amp; &quot; &apos; and character references \
         like &#1046; are allowed (DTD entities are never expanded)"
    )
}

/// Reads a start tag: which known element it is under `parent`, and the attributes the
/// layout reads from it into `attrs`, whose buffers are reused. The name of an element the
/// layout does not know goes to `unknown` when `name_wanted` (for messages).
fn start_tag(
    e: &BytesStart<'_>,
    empty: bool,
    parent: Option<usize>,
    tree: &Tree,
    name_wanted: bool,
    attrs: &mut Attrs,
    unknown: &mut String,
) -> Result<StartTag, quick_xml::Error> {
    let qname = e.name();
    let name: &str = qname.as_ref();
    let node = parent.and_then(|p| tree.child(p, name));
    attrs.values.clear();
    attrs.version = None;
    attrs.unknown.clear();
    attrs.bad_entity = None;
    attrs.too_long = None;
    let Some(at) = node else {
        if name_wanted {
            unknown.clear();
            unknown.push_str(name);
        }
        // An unknown element's attributes are never read: it is skipped as a whole.
        return Ok(StartTag { node, empty });
    };
    // Most tags are fields without attributes; the iterator would still be set up and run
    // once for each of them.
    if e.attributes_raw().bytes().all(is_whitespace) {
        return Ok(StartTag { node, empty });
    }
    let known = &tree.nodes[at].attrs;
    let root = parent == Some(0);
    for attr in e.attributes() {
        let attr = attr.map_err(quick_xml::Error::InvalidAttr)?;
        let key: &str = attr.key.as_ref();
        let slot = match known.iter().find(|(name, _)| &**name == key) {
            Some((_, slot)) => Some(*slot),
            None if root && key == "version" => None,
            None => {
                let ignored =
                    key == "xmlns" || key.starts_with("xmlns:") || key.starts_with("xsi:");
                if name_wanted && !ignored {
                    attrs.unknown.push(key.to_owned());
                }
                continue;
            }
        };
        match attr.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
            Ok(value) => {
                let value = value.trim();
                let value =
                    if value.len() > MAX_FIELD_CHARS && value.chars().count() > MAX_FIELD_CHARS {
                        // Kept short: the value names the record in every message about it.
                        attrs.too_long = Some(key.to_owned());
                        let mut cut: String = value.chars().take(ID_SHOWN).collect();
                        cut.push('…');
                        cut
                    } else {
                        value.to_owned()
                    };
                match slot {
                    Some(slot) if !value.is_empty() => attrs.values.push((slot, value)),
                    Some(_) => {}
                    None => attrs.version = Some(value),
                }
            }
            Err(quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name))) => {
                attrs.bad_entity.get_or_insert(name);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(StartTag { node, empty })
}

fn xml_problem(error: quick_xml::Error, position: Position) -> Box<Problem> {
    use quick_xml::Error as E;
    let (code, message) = match &error {
        E::Io(io) => io_problem(io),
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
