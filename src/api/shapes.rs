//! The API's bodies, typed: the handlers answer with these, and the OpenAPI description
//! (`/openapi.json`, [`super::doc`]) is generated from them, so the two cannot drift.
//!
//! Pushed records are read leniently (strings or numbers, unknown fields as warnings:
//! [`super::records`]); their schemas here say what a record may hold.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::export::ExportLine;
use crate::report::{Counts, ReportError, RunReport, Status, WarningGroup};
use crate::store::{RunRow, RunStatus};

/// Every error answer: `{"error":{"code","message",…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code.
    pub code: String,
    pub message: String,
    /// Where it applies, when it does: a position (`line`, `column`), the run (`run_id`), the
    /// mistakes by key (`fields`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub detail: serde_json::Map<String, Value>,
}

/// `GET /api/v1/clients`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientsAnswer {
    pub clients: Vec<ExportLine>,
}

/// `GET /api/v1/premises/{source}/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PremiseAnswer {
    pub premise: ExportLine,
    pub accounts: Vec<ExportLine>,
}

/// A pipeline in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineSummary {
    pub name: String,
    pub schedule: Option<String>,
    pub timezone: String,
    /// Made in the console or through the API (a file's pipeline is read-only).
    pub editable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PipelinesAnswer {
    pub pipelines: Vec<PipelineSummary>,
}

/// A pipeline as the API reads it (never its password).
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineOut {
    pub name: String,
    pub source: String,
    pub files: Vec<String>,
    pub delete_after_read: bool,
    pub settle_secs: u64,
    pub min_records: Option<u64>,
    pub max_shrink_percent: Option<u64>,
    /// `upsert` or `snapshot`.
    pub mode: &'static str,
    pub max_archive_percent: Option<u64>,
    /// The layout file (SPEC §13); none: the native format.
    pub layout: Option<String>,
    pub notify: Vec<String>,
    pub schedule: Option<String>,
    pub timezone: String,
    pub ftp: Option<FtpOut>,
    pub editable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FtpOut {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub tls: bool,
    pub passive: bool,
    /// A password is stored (or named by the file's `password_env`).
    pub password_set: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineAnswer {
    pub pipeline: PipelineOut,
}

/// A pipeline as the API writes it: a pipeline file's keys in JSON.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct PipelineBody {
    pub name: String,
    pub source: String,
    pub files: Vec<String>,
    #[serde(default)]
    pub delete_after_read: bool,
    /// The file checks (SPEC §12): none given, their defaults.
    #[serde(default)]
    pub settle_secs: Option<u64>,
    #[serde(default)]
    pub min_records: Option<u64>,
    #[serde(default)]
    pub max_shrink_percent: Option<u64>,
    /// `upsert` (the default) or `snapshot`.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub max_archive_percent: Option<u64>,
    /// A layout file for a foreign export (`layouts/1c.toml`, SPEC §13); none: native.
    #[serde(default)]
    pub layout: Option<String>,
    #[serde(default)]
    pub notify: Vec<String>,
    /// `minute hour day month weekday`, e.g. `0 3 * * *`; none: run on request only.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub ftp: Option<FtpBody>,
}

/// The FTP connection of a pipeline. The password is only ever written, never read back.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct FtpBody {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    /// Stored encrypted with `CRM_SECRET_KEY`; never returned.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    #[serde(default)]
    pub tls: bool,
    #[serde(default = "passive_by_default")]
    pub passive: bool,
}

fn passive_by_default() -> bool {
    true
}

/// What the connection check found.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckAnswer {
    pub ok: bool,
    pub addresses: Vec<AddressFound>,
    /// Why the check failed (`ok` false).
    pub error: Option<CheckError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AddressFound {
    pub address: String,
    /// On the pipeline's FTP server (else a link or a local path, not checked).
    pub on_ftp: bool,
    pub folder: Option<String>,
    /// The files the address names.
    pub found: Vec<String>,
    /// Every file of its folder.
    pub listed: Vec<String>,
}

/// `POST /api/v1/pipelines/{name}/run`: the run started.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunStarted {
    pub run_id: i64,
    pub status: RunStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunsAnswer {
    pub runs: Vec<RunRow>,
}

/// One run with its report (`null` while it runs).
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAnswer {
    pub run: RunRow,
    #[schema(value_type = Option<RunReport>)]
    pub report: Value,
}

/// `POST /api/v1/imports`: the run and its report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportAnswer {
    pub run_id: i64,
    pub report: RunReport,
}

/// What became of one pushed record.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushOutcome {
    /// The record's number in the push, from 1.
    pub index: u64,
    pub id: String,
    /// `created`, `updated`, `unchanged`, `merged` or `external_id_added`.
    pub outcome: String,
    /// A premise's accounts, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<String>>,
}

/// How a push ended: the JSON answer (with `outcomes`), or the last NDJSON line (with
/// `done`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PushResult {
    pub run_id: i64,
    pub status: Status,
    pub records: u64,
    pub counts: Counts,
    pub warnings: Vec<WarningGroup>,
    pub warnings_total: u64,
    pub error: Option<PushError>,
    /// The failing record and everything after it.
    pub not_processed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<Vec<PushOutcome>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
}

/// The record that halted a push.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushError {
    pub code: String,
    pub message: String,
    pub index: Option<u64>,
    pub id: Option<String>,
    pub field: Option<String>,
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl From<&ReportError> for PushError {
    fn from(e: &ReportError) -> PushError {
        PushError {
            code: e.code.clone(),
            message: e.message.clone(),
            index: e.record_index,
            id: e.record_id.clone(),
            field: e.field.clone(),
            line: e.line,
            column: e.column,
        }
    }
}

/// `{"source":…,"clients":[…]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientsPush {
    pub source: String,
    pub clients: Vec<ClientRecord>,
}

/// `{"source":…,"premises":[…]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PremisesPush {
    pub source: String,
    pub premises: Vec<PremiseRecord>,
}

/// A pushed client (values may be strings or numbers).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientRecord {
    pub id: String,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub premises: Option<Vec<PremiseLink>>,
    pub accounts: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PremiseLink {
    #[serde(rename = "ref")]
    pub premise: String,
    /// `owner`, `tenant` or `resident`.
    pub role: Option<String>,
}

/// A pushed premise with its accounts (values may be strings or numbers; `area` may use a
/// decimal comma).
#[derive(Debug, Serialize, ToSchema)]
pub struct PremiseRecord {
    pub id: String,
    pub address: Option<String>,
    pub number: Option<String>,
    /// `flat`, `non_residential`, `parking` or `storage`.
    pub kind: Option<String>,
    pub floor: Option<i64>,
    pub entrance: Option<i64>,
    pub rooms: Option<i64>,
    pub area: Option<String>,
    pub cadastral_number: Option<String>,
    pub accounts: Option<Vec<AccountRecord>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountRecord {
    pub id: String,
    pub number: Option<String>,
    pub area: Option<String>,
    pub residents: Option<i64>,
}

/// The residents' app's login event.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    pub phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginAnswer {
    /// The phone in E.164.
    pub phone: String,
    /// Cards marked as logged in.
    pub marked: u64,
}

/// Whom the token speaks for.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub organization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<bool>,
}
