//! The NDJSON export: one line per premise, account and client, in a deterministic order
//! (premises and accounts by source and id, clients by their first external id), so two
//! exports of the same data are byte-identical whatever the backend or the chunk size.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

/// One line of the export. Missing values are `null`, numbers are JSON numbers, arrays are
/// sorted by source and id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Premise {
        source: String,
        id: String,
        address: String,
        number: String,
        kind: String,
        floor: Option<i64>,
        entrance: Option<i64>,
        rooms: Option<i64>,
        area: Option<f64>,
        cadastral_number: Option<String>,
        /// The snapshot run that archived it; only in an export that includes archived rows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        archived_run: Option<i64>,
    },
    Account {
        source: String,
        id: String,
        premise_id: String,
        number: String,
        area: Option<f64>,
        residents: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        archived_run: Option<i64>,
    },
    Client {
        name: String,
        phone: Option<String>,
        email: Option<String>,
        logged_in: bool,
        external_ids: Vec<LinkRef>,
        premises: Vec<PremiseRef>,
        accounts: Vec<LinkRef>,
    },
}

/// An external id or an account link: `{"source":"1c","id":"A-1"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkRef {
    pub source: String,
    pub id: String,
}

/// A premise link with the client's role there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PremiseRef {
    pub source: String,
    pub id: String,
    pub role: String,
}

impl ExportLine {
    pub fn write(&self, out: &mut (dyn Write + Send)) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        out.write_all(b"\n")
    }
}
