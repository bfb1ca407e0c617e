//! Errors and warnings about the data, with stable codes and positions.
//!
//! A problem with one record is data (a [`Problem`]) until the apply stage decides to halt;
//! only a failure of the machinery (a database that went away) is a Rust `Err` of another type.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Stable snake_case codes. They appear in reports, e-mails and the API: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    // The file as a whole.
    SourceUnreadable,
    XmlSyntax,
    Truncated,
    NotXml,
    HtmlInsteadOfXml,
    UnexpectedRoot,
    UnsupportedVersion,
    UnsupportedEncoding,
    InvalidUtf8,
    ResumeMismatch,
    MissingColumn,
    // One record, found while parsing.
    UnknownEntity,
    JsonSyntax,
    FieldTooLong,
    MissingId,
    DuplicateField,
    UnmappedValue,
    // One record, found by validation.
    MissingField,
    InvalidInteger,
    InvalidDecimal,
    NegativeNumber,
    InvalidArea,
    InvalidKind,
    InvalidRole,
    InvalidPhone,
    InvalidCadastralNumber,
    DuplicateAccount,
    // One record, found against the database.
    UnknownPremiseRef,
    UnknownAccountRef,
    AccountNumberTaken,
    PhoneTaken,
    PhoneInOtherOrganization,
    // Warnings.
    UnknownElement,
    UnknownAttribute,
    InvalidEmail,
    ClientWithoutPhone,
    RoleMissing,
    FileStillBeingWritten,
    Resumed,
    SnapshotIncomplete,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::SourceUnreadable => "source_unreadable",
            Code::XmlSyntax => "xml_syntax",
            Code::Truncated => "truncated",
            Code::NotXml => "not_xml",
            Code::HtmlInsteadOfXml => "html_instead_of_xml",
            Code::UnexpectedRoot => "unexpected_root",
            Code::UnsupportedVersion => "unsupported_version",
            Code::UnsupportedEncoding => "unsupported_encoding",
            Code::InvalidUtf8 => "invalid_utf8",
            Code::ResumeMismatch => "resume_mismatch",
            Code::MissingColumn => "missing_column",
            Code::UnknownEntity => "unknown_entity",
            Code::JsonSyntax => "json_syntax",
            Code::FieldTooLong => "field_too_long",
            Code::MissingId => "missing_id",
            Code::DuplicateField => "duplicate_field",
            Code::UnmappedValue => "unmapped_value",
            Code::MissingField => "missing_field",
            Code::InvalidInteger => "invalid_integer",
            Code::InvalidDecimal => "invalid_decimal",
            Code::NegativeNumber => "negative_number",
            Code::InvalidArea => "invalid_area",
            Code::InvalidKind => "invalid_kind",
            Code::InvalidRole => "invalid_role",
            Code::InvalidPhone => "invalid_phone",
            Code::InvalidCadastralNumber => "invalid_cadastral_number",
            Code::DuplicateAccount => "duplicate_account",
            Code::UnknownPremiseRef => "unknown_premise_ref",
            Code::UnknownAccountRef => "unknown_account_ref",
            Code::AccountNumberTaken => "account_number_taken",
            Code::PhoneTaken => "phone_taken",
            Code::PhoneInOtherOrganization => "phone_in_other_organization",
            Code::UnknownElement => "unknown_element",
            Code::UnknownAttribute => "unknown_attribute",
            Code::InvalidEmail => "invalid_email",
            Code::ClientWithoutPhone => "client_without_phone",
            Code::RoleMissing => "role_missing",
            Code::FileStillBeingWritten => "file_still_being_written",
            Code::Resumed => "resumed",
            Code::SnapshotIncomplete => "snapshot_incomplete",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where something is: the file, the line and column where the record starts (1-based,
/// columns in characters), the record's 1-based index over all records of the file and its
/// external id. Fields that are unknown (a syntax error before any record) stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub file: Arc<str>,
    pub line: u64,
    pub column: u64,
    pub record_index: Option<u64>,
    pub record_id: Option<String>,
    /// What the record is, `premise` or `client`; empty outside a record.
    pub kind: &'static str,
}

/// One error or warning about the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: Code,
    pub message: String,
    pub position: Position,
    /// The field it is about (`phone`, `account.number`), when there is one.
    pub field: Option<String>,
    /// What makes two warnings of one code distinct (the unknown element's name); empty else.
    pub key: String,
}

impl Problem {
    pub fn new(code: Code, message: impl Into<String>, position: Position) -> Self {
        Problem {
            code,
            message: message.into(),
            position,
            field: None,
            key: String::new(),
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }
}

/// Distinct warnings one record keeps; past this its warnings are only counted.
const MAX_DISTINCT_WARNINGS: usize = 32;

/// The warnings of one record (or of what lies between two records): each distinct code and
/// key kept once, with how often it occurred, so a record with a million unknown elements
/// costs one entry, not a million.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings {
    distinct: Vec<(Problem, u64)>,
    /// Occurrences past [`MAX_DISTINCT_WARNINGS`] distinct ones: counted, not kept.
    more: u64,
}

impl Warnings {
    pub fn push(&mut self, warning: Problem) {
        let same = |(p, _): &&mut (Problem, u64)| p.code == warning.code && p.key == warning.key;
        if let Some((_, count)) = self.distinct.iter_mut().find(same) {
            *count += 1;
        } else if self.distinct.len() < MAX_DISTINCT_WARNINGS {
            self.distinct.push((warning, 1));
        } else {
            self.more += 1;
        }
    }

    /// Each distinct warning with how many times it occurred, first met first.
    pub fn iter(&self) -> impl Iterator<Item = (&Problem, u64)> {
        self.distinct.iter().map(|(p, n)| (p, *n))
    }

    /// Occurrences not kept as distinct warnings.
    pub fn more(&self) -> u64 {
        self.more
    }

    pub fn total(&self) -> u64 {
        self.more + self.distinct.iter().map(|(_, n)| n).sum::<u64>()
    }

    /// Names the record in the positions of warnings met before its id was read.
    pub fn name_record(&mut self, id: &str) {
        for (p, _) in &mut self.distinct {
            if p.position.record_index.is_some() && p.position.record_id.is_none() {
                p.position.record_id = Some(id.to_owned());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.distinct.is_empty() && self.more == 0
    }
}

impl fmt::Display for Problem {
    /// `orders.xml:240:5: record 17 (C-17), field phone: invalid_phone: …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.position;
        write!(f, "{}", p.file)?;
        // A CSV line or an XLSX row has no column.
        match (p.line, p.column) {
            (0, _) => {}
            (line, 0) => write!(f, ":{line}")?,
            (line, column) => write!(f, ":{line}:{column}")?,
        }
        write!(f, ":")?;
        if let Some(i) = p.record_index {
            write!(f, " record {i}")?;
            if let Some(id) = &p.record_id {
                write!(f, " ({id})")?;
            }
            write!(f, ",")?;
        }
        if let Some(field) = &self.field {
            write!(f, " field {field},")?;
        }
        write!(f, " {}: {}", self.code, self.message)
    }
}
