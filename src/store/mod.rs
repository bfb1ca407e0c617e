//! Storage behind one domain trait, so the pipeline never sees SQL and a second backend
//! (PostgreSQL) is one more implementation with its own SQL and migrations.

mod backend;
mod exact;
mod holder;
mod plan;
mod postgres;
mod sql;
mod sqlite;

use std::future::Future;
use std::io::Write;

pub use backend::Backend;
pub use holder::Holder;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::error::Code;
use crate::export::ExportLine;
use crate::model::{Record, RecordOutcome};

/// Timestamps as both backends store them: RFC 3339 text, UTC, milliseconds.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The e-mail a card gets: the record's, none when the record has none, or the card's own
/// when the record's was implausible (a warning, not written).
pub(crate) fn new_email<'a>(
    email: &'a crate::model::Email,
    current: Option<&'a str>,
) -> Option<&'a str> {
    use crate::model::Email;
    match email {
        Email::Valid(e) => Some(e),
        Email::Absent => None,
        Email::Invalid => current,
    }
}

/// The default database: an SQLite file in the working directory.
pub const DEFAULT_URL: &str = "sqlite:crm.db";

/// A failure of the database itself (not a problem with the data).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is not supported: use sqlite:PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("opening the database failed: {0}")]
    Open(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Direct(#[source] rusqlite::Error),
    /// Out of space: a failure of the machine, not of the data or the settings.
    #[error(
        "the disk holding the database is full ({0}); free space on it (or move the database) \
         and run again: what was committed before stays, and the rerun applies the rest"
    )]
    DiskFull(String),
    #[error("writing the export failed: {0}")]
    Write(#[from] std::io::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Opening the database failed: out of space, or as [`StoreError::Open`].
    pub fn open(e: sqlx::Error) -> StoreError {
        if disk_full(&e) {
            StoreError::DiskFull(e.to_string())
        } else {
            StoreError::Open(e)
        }
    }

    /// A stable code for reports, like the data problems have.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::DiskFull(_) => "disk_full",
            StoreError::UnsupportedUrl(_) => "unsupported_database_url",
            StoreError::Open(_) => "database_unavailable",
            StoreError::Migrate(_) => "database_migration",
            StoreError::Sql(_) | StoreError::Direct(_) => "database",
            StoreError::Write(_) => "write_failed",
            StoreError::Corrupt(_) => "database_inconsistent",
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        if disk_full(&e) {
            StoreError::DiskFull(e.to_string())
        } else {
            StoreError::Sql(e)
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> StoreError {
        use sqlx::migrate::MigrateError::{Execute, ExecuteMigration};
        match &e {
            Execute(inner) | ExecuteMigration(inner, _) if disk_full(inner) => {
                StoreError::DiskFull(e.to_string())
            }
            _ => StoreError::Migrate(e),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            StoreError::DiskFull(e.to_string())
        } else {
            StoreError::Direct(e)
        }
    }
}

/// SQLite's SQLITE_FULL (13), PostgreSQL's `disk_full` (53100), or the system's ENOSPC.
fn disk_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("13" | "53100")),
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    }
}

/// The organization and source a run writes for, resolved to the store's keys once.
#[derive(Debug, Clone)]
pub struct Scope {
    pub org_id: i64,
    pub source_id: i64,
    pub org: String,
    pub source: String,
    /// The run that writes, named in phone history and merge records.
    pub run_id: Option<i64>,
    /// Stamp what the run sees ([`Store::see`]): a snapshot run, or a source with archived
    /// rows that a record may bring back.
    pub stamp: bool,
}

/// The ids a run's committed records carry, for [`Store::see`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub premises: Vec<String>,
    pub accounts: Vec<String>,
    pub clients: Vec<String>,
}

impl Seen {
    pub fn is_empty(&self) -> bool {
        self.premises.is_empty() && self.accounts.is_empty() && self.clients.is_empty()
    }
}

/// What a snapshot archived, or what [`Store::see`] brought back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Archived {
    pub premises: u64,
    pub accounts: u64,
    pub links: u64,
}

impl Archived {
    pub fn total(&self) -> u64 {
        self.premises + self.accounts + self.links
    }
}

/// The end of a snapshot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    Archived(Archived),
    /// More than allowed would have been archived; nothing was.
    TooMany {
        would: u64,
        live: u64,
    },
}

/// A record the store would not apply: its index in the chunk and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub index: usize,
    pub code: Code,
    pub message: String,
    pub field: Option<String>,
}

/// What applying a chunk did: one outcome per applied record, in order, and the refusal
/// that stopped it, if any. Everything in `outcomes` is committed, or held in the open
/// transaction of [`Store::Held`] until [`Store::commit`].
#[derive(Debug, Clone, Default)]
pub struct ChunkApplied {
    pub outcomes: Vec<RecordOutcome>,
    pub refused: Option<Refusal>,
}

/// What a writer keeps open from one chunk to the next, so that one commit covers several
/// chunks (SQLite: a transaction; PostgreSQL commits every chunk and holds nothing). Each
/// backend has its own; the pipeline only asks whether anything is open.
///
/// Dropped while open, what it holds rolls back: whoever holds one commits it with
/// [`Store::commit`] before reporting its records as applied.
pub trait Hold: Send {
    /// Records applied in it and not yet committed.
    fn open(&self) -> bool;
}

/// How a run was started (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    Api,
}

impl Trigger {
    const ALL: [Trigger; 3] = [Trigger::Schedule, Trigger::Manual, Trigger::Api];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where a run stands in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Ok,
    Error,
    /// Stopped on request, or found abandoned by a crashed holder.
    Interrupted,
    /// Not started: the pipeline was already running.
    Refused,
}

impl RunStatus {
    const ALL: [RunStatus; 5] = [
        RunStatus::Running,
        RunStatus::Ok,
        RunStatus::Error,
        RunStatus::Interrupted,
        RunStatus::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Error => "error",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Domain operations; each backend brings its own SQL.
pub trait Store: Send + Sync {
    /// What [`Store::apply_chunk`] may keep open between chunks.
    type Held: Hold;

    /// Nothing held yet: what a writer starts its first chunk with.
    fn hold(&self) -> Self::Held;

    /// Finds or creates the organization and its source.
    fn scope(
        &self,
        org: &str,
        source: &str,
    ) -> impl Future<Output = Result<Scope, StoreError>> + Send;

    /// Applies records in order and commits the ones before the first refusal; the result
    /// is exactly what applying them one at a time would give. The store may leave the
    /// transaction open in `held` for the next chunk (never after a refusal or an error);
    /// an error rolls back everything `held` held.
    fn apply_chunk(
        &self,
        scope: &Scope,
        records: &[&Record],
        held: &mut Self::Held,
    ) -> impl Future<Output = Result<ChunkApplied, StoreError>> + Send;

    /// Commits what `held` holds; nothing when it holds nothing.
    fn commit(&self, held: &mut Self::Held) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes the organization's data as NDJSON in a deterministic order. `false` when the
    /// organization is unknown.
    fn export(
        &self,
        org: &str,
        archived: bool,
        out: &mut (dyn Write + Send),
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks every card with the phone (E.164) as logged in; returns how many.
    fn mark_logged_in(&self, phone: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Records the start of a run. A pipeline's run also takes the pipeline's lease (for
    /// [`Settings::lease_secs`]); while another run holds an unexpired lease, the start is recorded
    /// and refused. First the organization's runs that cannot end any more (their process on
    /// this host is gone, or they stopped renewing) become `interrupted` and free their leases.
    fn start_run(
        &self,
        org_id: i64,
        pipeline: Option<&str>,
        trigger: Trigger,
    ) -> impl Future<Output = Result<RunStart, StoreError>> + Send;

    /// Extends the lease of a running run.
    fn renew_run(&self, run_id: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How long a lease lasts without renewal.
    fn lease(&self) -> std::time::Duration;

    /// Records the end of a run with its status and JSON report, and releases its lease.
    fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        records: u64,
        report_json: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many records the organization's last successful run that read `file` (as reports
    /// name it) read from it; among its 100 latest successful runs.
    fn last_records(
        &self,
        org_id: i64,
        file: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Appends part `part` of a run's kept results (gzip bytes; see [`crate::results`]).
    fn keep_results(
        &self,
        run_id: i64,
        part: i64,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Part `part` of a run's kept results, `None` past the last.
    fn results_part(
        &self,
        run_id: i64,
        part: i64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Stamps the rows `seen` names with the scope's run, bringing back any that a snapshot
    /// archived; what came back, and the premise ids among it.
    fn see(
        &self,
        scope: &Scope,
        seen: &Seen,
    ) -> impl Future<Output = Result<(Archived, Vec<String>), StoreError>> + Send;

    /// After a snapshot run: archives the source's live rows that no run since `since`
    /// stamped, unless they are more than `max_percent` of them.
    fn archive(
        &self,
        scope: &Scope,
        since: i64,
        max_percent: u64,
    ) -> impl Future<Output = Result<Snapshot, StoreError>> + Send;

    /// Records what became of the run's e-mail report.
    fn note_mail(
        &self,
        run_id: i64,
        note: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Run history, newest first, optionally of one organization and one pipeline.
    fn runs(
        &self,
        filter: &RunFilter,
    ) -> impl Future<Output = Result<Vec<RunRow>, StoreError>> + Send;

    /// Reads in the export's shapes; `None` when the organization is unknown.
    fn lookup(
        &self,
        org: &str,
        what: &Lookup,
        archived: bool,
    ) -> impl Future<Output = Result<Option<Vec<ExportLine>>, StoreError>> + Send;

    /// Stores a new token's hash for an organization (or the app, with `None`).
    fn create_token(
        &self,
        org: Option<&str>,
        name: &str,
        hash: &str,
    ) -> impl Future<Output = Result<TokenRow, StoreError>> + Send;

    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRow>, StoreError>> + Send;

    /// Revokes a token by id; `false` when there is no such live token.
    fn revoke_token(&self, id: i64) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whom a live token's hash speaks for.
    fn bearer(&self, hash: &str)
    -> impl Future<Output = Result<Option<Bearer>, StoreError>> + Send;

    /// One run with its JSON report (`None` for a run still going), if it exists (within
    /// the organization, when one is given).
    fn run(
        &self,
        run_id: i64,
        org: Option<&str>,
    ) -> impl Future<Output = Result<Option<(RunRow, Option<String>)>, StoreError>> + Send;

    /// Adds a staff account of an organization with its password's hash; `None` when the
    /// login is taken (logins are unique across organizations: the sign-in form has no
    /// organization field).
    fn create_user(
        &self,
        org: &str,
        login: &str,
        password_hash: &str,
    ) -> impl Future<Output = Result<Option<UserRow>, StoreError>> + Send;

    /// Every staff account, by organization and login.
    fn users(&self) -> impl Future<Output = Result<Vec<UserRow>, StoreError>> + Send;

    /// Removes an account and ends its sessions; `false` when there is no such login.
    fn remove_user(&self, login: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The account's id and password hash, for signing in.
    fn password_hash(
        &self,
        login: &str,
    ) -> impl Future<Output = Result<Option<(i64, String)>, StoreError>> + Send;

    /// Starts a session for a user: the id's hash and the CSRF token of its forms.
    fn open_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The live session with this id hash, its idle clock restarted; a session idle for
    /// longer than `idle` is ended and `None`.
    fn session(
        &self,
        id_hash: &str,
        idle: std::time::Duration,
    ) -> impl Future<Output = Result<Option<SessionRow>, StoreError>> + Send;

    /// Ends a session.
    fn close_session(&self, id_hash: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every pipeline made in the console, of every organization, by name.
    fn stored_pipelines(
        &self,
    ) -> impl Future<Output = Result<Vec<StoredPipeline>, StoreError>> + Send;

    /// Saves a console pipeline: creates it when `create`, else replaces the organization's
    /// pipeline of that name (its sealed password kept when `pipeline.ftp_password` is
    /// `None`). `false` when the name is taken (creating) or not the organization's (saving).
    fn save_pipeline(
        &self,
        pipeline: &StoredPipeline,
        create: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes an organization's console pipeline; `false` when it has none of that name.
    fn delete_pipeline(
        &self,
        org: &str,
        name: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A pipeline made in the console, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPipeline {
    pub organization: String,
    pub name: String,
    /// The pipeline as TOML, the keys of a pipeline file (without `organization`).
    pub definition: String,
    /// The FTP password, sealed ([`crate::secret`]); never the password itself.
    pub ftp_password: Option<String>,
}

/// A staff account of the console, as listed (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    pub id: i64,
    pub organization: String,
    pub login: String,
    pub created_at: String,
}

/// A signed-in session: whose, for which organization, and the token its forms carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user_id: i64,
    pub login: String,
    pub org_id: i64,
    pub organization: String,
    pub csrf: String,
}

/// What the API reads (SPEC §9), in the export's shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The organization's cards with this phone (E.164).
    ClientsByPhone(String),
    /// The card that carries this external id.
    ClientByRef { source: String, id: String },
    /// A premise with its accounts.
    Premise { source: String, id: String },
}

/// An API token as stored (its hash only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    pub id: i64,
    /// `None` for the residents' app token.
    pub organization: Option<String>,
    pub name: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bearer {
    Organization { org_id: i64, code: String },
    App,
}

/// How a start went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStart {
    Started(i64),
    /// Recorded as `run_id`; `holder` is the run that has the pipeline, since `since`.
    Refused {
        run_id: i64,
        holder: i64,
        since: String,
        /// When the holder's lease runs out unless it renews it (Unix seconds): a holder that
        /// died stops renewing, and the first start after this takes the pipeline over.
        lease_until: i64,
        /// The process running the holder (unknown for runs recorded before it was kept).
        process: Option<Holder>,
    },
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub org: Option<String>,
    pub pipeline: Option<String>,
    pub limit: u32,
}

/// A run as the history shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RunRow {
    pub id: i64,
    pub organization: String,
    pub pipeline: Option<String>,
    pub trigger: Trigger,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: RunStatus,
    pub records: u64,
    pub mail: Option<String>,
}

/// Tuning that trades memory for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// SQLite's page cache of the connection that writes, in MiB (default 6): index pages
    /// that stay in memory between chunks instead of being read back from the file, and the
    /// pages a transaction held across chunks dirtied until it commits. Readers get an eighth
    /// each: their caches are dropped whenever the writer commits. New phones wait in a
    /// table sized by it, and an organization loaded from empty gets a phone filter of half
    /// as many bytes and a bit more (`store::sqlite::phones`).
    pub cache_mib: u32,
    /// How long a run's lease lasts without renewal, in seconds (default 60); runs renew it
    /// every third of that. Shorter: a crashed holder's pipeline is free again sooner, for
    /// more renewals.
    pub lease_secs: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cache_mib: 6,
            lease_secs: 60,
        }
    }
}

/// Opens the store a URL names (`sqlite:PATH` or `postgres://…`) and runs its migrations.
pub async fn open(url: &str, settings: &Settings) -> Result<AnyStore, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(AnyStore::Sqlite(SqliteStore::open(url, settings).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(AnyStore::Postgres(PgStore::open(url, settings).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

/// The store a URL chose at run time.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// What [`AnyStore`] holds: its backend's own.
pub enum AnyHeld {
    Sqlite(<SqliteStore as Store>::Held),
    Postgres(<PgStore as Store>::Held),
}

impl Hold for AnyHeld {
    fn open(&self) -> bool {
        match self {
            AnyHeld::Sqlite(held) => held.open(),
            AnyHeld::Postgres(held) => held.open(),
        }
    }
}

/// Calls the same method on whichever backend is open.
macro_rules! either {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call.await,
            AnyStore::Postgres($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    type Held = AnyHeld;

    fn hold(&self) -> AnyHeld {
        match self {
            AnyStore::Sqlite(s) => AnyHeld::Sqlite(s.hold()),
            AnyStore::Postgres(s) => AnyHeld::Postgres(s.hold()),
        }
    }

    async fn scope(&self, org: &str, source: &str) -> Result<Scope, StoreError> {
        either!(self, s => s.scope(org, source))
    }

    async fn apply_chunk(
        &self,
        scope: &Scope,
        records: &[&Record],
        held: &mut AnyHeld,
    ) -> Result<ChunkApplied, StoreError> {
        match (self, held) {
            (AnyStore::Sqlite(s), AnyHeld::Sqlite(held)) => {
                s.apply_chunk(scope, records, held).await
            }
            (AnyStore::Postgres(s), AnyHeld::Postgres(held)) => {
                s.apply_chunk(scope, records, held).await
            }
            _ => Err(held_elsewhere()),
        }
    }

    async fn commit(&self, held: &mut AnyHeld) -> Result<(), StoreError> {
        match (self, held) {
            (AnyStore::Sqlite(s), AnyHeld::Sqlite(held)) => s.commit(held).await,
            (AnyStore::Postgres(s), AnyHeld::Postgres(held)) => s.commit(held).await,
            _ => Err(held_elsewhere()),
        }
    }
    async fn export(
        &self,
        org: &str,
        archived: bool,
        out: &mut (dyn Write + Send),
    ) -> Result<bool, StoreError> {
        either!(self, s => s.export(org, archived, out))
    }

    async fn mark_logged_in(&self, phone: &str) -> Result<u64, StoreError> {
        either!(self, s => s.mark_logged_in(phone))
    }

    async fn start_run(
        &self,
        org_id: i64,
        pipeline: Option<&str>,
        trigger: Trigger,
    ) -> Result<RunStart, StoreError> {
        either!(self, s => s.start_run(org_id, pipeline, trigger))
    }

    async fn renew_run(&self, run_id: i64) -> Result<(), StoreError> {
        either!(self, s => s.renew_run(run_id))
    }

    fn lease(&self) -> std::time::Duration {
        match self {
            AnyStore::Sqlite(s) => s.lease(),
            AnyStore::Postgres(s) => s.lease(),
        }
    }

    async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        records: u64,
        report_json: &str,
    ) -> Result<(), StoreError> {
        either!(self, s => s.finish_run(run_id, status, records, report_json))
    }

    async fn note_mail(&self, run_id: i64, note: &str) -> Result<(), StoreError> {
        either!(self, s => s.note_mail(run_id, note))
    }

    async fn see(&self, scope: &Scope, seen: &Seen) -> Result<(Archived, Vec<String>), StoreError> {
        either!(self, s => s.see(scope, seen))
    }

    async fn archive(
        &self,
        scope: &Scope,
        since: i64,
        max_percent: u64,
    ) -> Result<Snapshot, StoreError> {
        either!(self, s => s.archive(scope, since, max_percent))
    }

    async fn keep_results(&self, run_id: i64, part: i64, bytes: &[u8]) -> Result<(), StoreError> {
        either!(self, s => s.keep_results(run_id, part, bytes))
    }

    async fn results_part(&self, run_id: i64, part: i64) -> Result<Option<Vec<u8>>, StoreError> {
        either!(self, s => s.results_part(run_id, part))
    }

    async fn last_records(&self, org_id: i64, file: &str) -> Result<Option<u64>, StoreError> {
        either!(self, s => s.last_records(org_id, file))
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        either!(self, s => s.runs(filter))
    }

    async fn lookup(
        &self,
        org: &str,
        what: &Lookup,
        archived: bool,
    ) -> Result<Option<Vec<ExportLine>>, StoreError> {
        either!(self, s => s.lookup(org, what, archived))
    }

    async fn create_token(
        &self,
        org: Option<&str>,
        name: &str,
        hash: &str,
    ) -> Result<TokenRow, StoreError> {
        either!(self, s => s.create_token(org, name, hash))
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        either!(self, s => s.tokens())
    }

    async fn revoke_token(&self, id: i64) -> Result<bool, StoreError> {
        either!(self, s => s.revoke_token(id))
    }

    async fn bearer(&self, hash: &str) -> Result<Option<Bearer>, StoreError> {
        either!(self, s => s.bearer(hash))
    }

    async fn run(
        &self,
        run_id: i64,
        org: Option<&str>,
    ) -> Result<Option<(RunRow, Option<String>)>, StoreError> {
        either!(self, s => s.run(run_id, org))
    }

    async fn create_user(
        &self,
        org: &str,
        login: &str,
        password_hash: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        either!(self, s => s.create_user(org, login, password_hash))
    }

    async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        either!(self, s => s.users())
    }

    async fn remove_user(&self, login: &str) -> Result<bool, StoreError> {
        either!(self, s => s.remove_user(login))
    }

    async fn password_hash(&self, login: &str) -> Result<Option<(i64, String)>, StoreError> {
        either!(self, s => s.password_hash(login))
    }

    async fn open_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf: &str,
    ) -> Result<(), StoreError> {
        either!(self, s => s.open_session(id_hash, user_id, csrf))
    }

    async fn session(
        &self,
        id_hash: &str,
        idle: std::time::Duration,
    ) -> Result<Option<SessionRow>, StoreError> {
        either!(self, s => s.session(id_hash, idle))
    }

    async fn close_session(&self, id_hash: &str) -> Result<(), StoreError> {
        either!(self, s => s.close_session(id_hash))
    }

    async fn stored_pipelines(&self) -> Result<Vec<StoredPipeline>, StoreError> {
        either!(self, s => s.stored_pipelines())
    }

    async fn save_pipeline(
        &self,
        pipeline: &StoredPipeline,
        create: bool,
    ) -> Result<bool, StoreError> {
        either!(self, s => s.save_pipeline(pipeline, create))
    }

    async fn delete_pipeline(&self, org: &str, name: &str) -> Result<bool, StoreError> {
        either!(self, s => s.delete_pipeline(org, name))
    }
}

/// A hold from one backend handed to the other: a caller's mistake, refused before any write.
fn held_elsewhere() -> StoreError {
    StoreError::Corrupt("a chunk's hold came from another store".into())
}
