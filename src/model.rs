//! The domain: what a record is before validation ([`RawRecord`], text as found in the file)
//! and after it ([`Record`], typed and normalised), and what applying one did ([`Outcome`]).

use serde::Serialize;

use crate::error::{Position, Problem, Warnings};

/// A premise's fields by name (SPEC §2), as a layout file and a pushed JSON record name them.
pub const PREMISE_FIELDS: [&str; 9] = [
    "id",
    "address",
    "number",
    "kind",
    "floor",
    "entrance",
    "rooms",
    "area",
    "cadastral_number",
];
pub const ACCOUNT_FIELDS: [&str; 4] = ["id", "number", "area", "residents"];
/// With the client's links to premises and accounts.
pub const CLIENT_FIELDS: [&str; 6] = ["id", "name", "phone", "email", "premises", "accounts"];

/// A `<premise>` as found in the file: text only, not yet checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawPremise {
    pub id: String,
    pub address: Option<String>,
    pub number: Option<String>,
    pub kind: Option<String>,
    pub floor: Option<String>,
    pub entrance: Option<String>,
    pub rooms: Option<String>,
    pub area: Option<String>,
    pub cadastral_number: Option<String>,
    pub accounts: Vec<RawAccount>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawAccount {
    pub id: String,
    pub number: Option<String>,
    pub area: Option<String>,
    pub residents: Option<String>,
}

/// A `<client>` as found in the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawClient {
    pub id: String,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub premises: Vec<RawPremiseLink>,
    pub accounts: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawPremiseLink {
    pub premise: String,
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RawRecord {
    Premise(RawPremise),
    Client(RawClient),
}

impl RawRecord {
    pub fn id(&self) -> &str {
        match self {
            RawRecord::Premise(p) => &p.id,
            RawRecord::Client(c) => &c.id,
        }
    }
}

/// One record out of the parser: its position, its body, or the problem that made the
/// parser give up on this record (the rest of the file is still readable), and the
/// warnings met while reading it.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub position: Position,
    pub body: Result<RawRecord, Box<Problem>>,
    pub warnings: Warnings,
    /// Where the record ends in its file; none for records not read from a file.
    pub end: Option<Mark>,
}

/// Where a record ends in its export: its number, the offset after it in the export's text
/// (as decoded to UTF-8), and a hash of the text up to there. A run keeps the mark of the
/// last record it committed from each file; `--resume` skips to it after checking that the
/// file still reads the same up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Mark {
    pub record: u64,
    pub offset: u64,
    /// XXH3-128 of the text before `offset`, in hex.
    #[serde(with = "hex128")]
    #[schema(value_type = String)]
    pub hash: u128,
}

/// A 128-bit hash as 32 hex digits: JSON numbers lose precision past 53 bits.
mod hex128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{hash:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        u128::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Flat,
    NonResidential,
    Parking,
    Storage,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Flat,
        Kind::NonResidential,
        Kind::Parking,
        Kind::Storage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Flat => "flat",
            Kind::NonResidential => "non_residential",
            Kind::Parking => "parking",
            Kind::Storage => "storage",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Tenant,
    Resident,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::Tenant, Role::Resident];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Tenant => "tenant",
            Role::Resident => "resident",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A premise that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Premise {
    pub id: String,
    pub address: String,
    pub number: String,
    pub kind: Kind,
    pub floor: Option<i64>,
    pub entrance: Option<i64>,
    pub rooms: Option<i64>,
    pub area: Option<f64>,
    pub cadastral_number: Option<String>,
    pub accounts: Vec<Account>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: String,
    pub number: String,
    pub area: Option<f64>,
    pub residents: Option<i64>,
}

/// The e-mail of a client record. An implausible address is a warning and is not written:
/// the card keeps the address it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Email {
    Absent,
    Valid(String),
    Invalid,
}

/// A client that passed validation: the phone is E.164, links are deduplicated.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Email,
    /// Premise external ids of the same source with the role, sorted and unique.
    pub premises: Vec<(String, Role)>,
    /// Account external ids of the same source, sorted and unique.
    pub accounts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Premise(Premise),
    Client(Client),
}

/// One record out of validation, still carrying its position and warnings.
#[derive(Debug, Clone)]
pub struct Validated {
    pub position: Position,
    pub body: Result<Record, Box<Problem>>,
    pub warnings: Warnings,
    pub end: Option<Mark>,
}

/// What applying one entity did. `Unchanged` wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Merged,
    ExternalIdAdded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Merged => "merged",
            Outcome::ExternalIdAdded => "external_id_added",
        }
    }
}

/// The outcome of one record: a premise with one outcome per nested account, or a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Premise {
        premise: Outcome,
        accounts: Vec<Outcome>,
    },
    Client {
        outcome: Outcome,
        /// For [`Outcome::Merged`]: which card went into which.
        merged: Option<Merge>,
    },
}

/// Two cards made one by a record (the matching table's case 3): `from`'s external ids and
/// links moved to `into`, and `from` is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    pub into: i64,
    pub from: i64,
}
