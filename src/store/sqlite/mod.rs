//! The embedded default: one SQLite file, WAL, migrations run on open.
//!
//! A chunk is one `BEGIN IMMEDIATE` transaction, planned set-based ([`plan`]) with the exact
//! record path for what the plan cannot resolve. Every check a record can fail (references,
//! account numbers, the matching table) runs before its first write, so a refused record
//! leaves nothing behind and the records before it commit.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

mod bulk;
mod direct;
mod phones;

use direct::{Writer, blocking};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Sqlite, SqliteConnection, SqlitePool};

use super::backend::{Backend, Conn, count_applied};
use super::plan;
use super::sql::Dialect;
use super::{ChunkApplied, Hold, Scope, Settings, StoreError};
use crate::model::{Outcome, Record, RecordOutcome};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Seconds a run's lease lasts without renewal.
    lease_secs: i64,
    /// Records after which a transaction held across chunks commits.
    group_records: usize,
    pool: SqlitePool,
    /// The one connection this process writes through; writers queue for it first come
    /// first served. SQLite's busy handler polls: an import that commits a chunk and begins
    /// the next at once kept a lease renewal on another connection waiting until its 30 s
    /// timeout ran out. One writer also keeps its page cache: in WAL mode a connection drops
    /// its whole cache when another connection has committed since its last transaction, so
    /// chunks written by whichever pooled connection was free started cold every time.
    writer: Arc<tokio::sync::Mutex<Writer>>,
    /// Copies committed pages from the WAL into the database beside the next chunk, so the
    /// writer's own checkpoint (every 64 MiB of WAL, on the import's path) finds little left
    /// to copy.
    checkpointer: Arc<tokio::sync::Mutex<SqliteConnection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database. The pragmas and what each
    /// trades are in `docs/architecture.md`, "SQLite settings".
    pub async fn open(url: &str, settings: &Settings) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::open)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // A negative cache_size is in KiB. Readers lose their cache whenever the writer
            // commits, so a big one would seldom be warm.
            .pragma("cache_size", format!("-{}", reader_cache_kib(settings)))
            .pragma("temp_store", "memory")
            // Set when the file is created. A chunk's random inserts of new phones dirty one
            // page each, and dirty pages stay in memory until the commit: small pages keep
            // the peak memory flat on big imports and write less to the WAL.
            .pragma("page_size", "4096")
            // Checkpoint every 64 MiB of WAL instead of 4 MiB: a page rewritten by many
            // chunks is copied into the database once.
            .pragma("wal_autocheckpoint", "16384")
            .pragma("journal_size_limit", "67108864")
            // An export is one long statement by design: not a warning.
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        let pool = migrated(&options).await?;
        // A checkpoint reads WAL frames, not pages through the cache.
        let checkpointer = options
            .clone()
            .pragma("cache_size", "-1024")
            .connect()
            .await
            .map_err(StoreError::open)?;
        // The planner and the exact path check every reference before they write, so
        // SQLite's own foreign-key probes would only re-check them, at a tenth of a fresh
        // import's time; the tests check that no row refers to a missing one after every
        // import they look at.
        let writer = options
            .foreign_keys(false)
            .pragma(
                "cache_size",
                format!("-{}", u64::from(settings.cache_mib) * 1024),
            )
            .connect()
            .await
            .map_err(StoreError::open)?;
        Ok(SqliteStore {
            lease_secs: i64::from(settings.lease_secs),
            group_records: settings.cache_mib as usize * GROUP_RECORDS_PER_CACHE_MIB,
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(
                Writer::new(writer, settings.cache_mib).await?,
            )),
            checkpointer: Arc::new(tokio::sync::Mutex::new(checkpointer)),
        })
    }

    /// Starts a passive checkpoint unless one is running. It never blocks the writer, and
    /// a failed one only leaves the work to the writer's own checkpoint.
    fn checkpoint_behind(&self) {
        let Ok(mut conn) = self.checkpointer.clone().try_lock_owned() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut *conn)
                .await
            {
                tracing::debug!("background checkpoint: {e}");
            }
        });
    }

    /// Counts the cards `applied` created, moving the recent phones when they are many
    /// ([`Phones::created`]), in `group`'s transaction. Whether they moved.
    async fn move_phones(group: &mut Group, applied: &ChunkApplied) -> Result<bool, StoreError> {
        let created = applied
            .outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    RecordOutcome::Client {
                        outcome: Outcome::Created,
                        ..
                    }
                )
            })
            .count();
        let Some(writer) = group.conn.as_deref_mut() else {
            return Ok(false);
        };
        let (conn, phones) = writer.with_phones().await?;
        blocking(|| phones.created(&conn, created))
    }

    /// Plans and writes one chunk in `group`'s transaction.
    async fn plan_in(
        &self,
        group: &mut Group,
        scope: &Scope,
        records: &[&Record],
    ) -> Result<ChunkApplied, StoreError> {
        let Some(tx) = group.conn.as_deref_mut() else {
            return Err(StoreError::Corrupt(
                "the chunk's transaction has ended".into(),
            ));
        };
        let mut chunk = bulk::Chunk::new(tx);
        let applied = plan::apply_chunk(&mut chunk, scope, records).await?;
        count_applied::<Sqlite>(tx, scope, &applied).await?;
        group.records += applied.outcomes.len();
        Ok(applied)
    }
}

/// Records a transaction held across chunks takes per MiB of writer cache before it commits
/// (11,250 at the default 6 MiB). A commit writes every page the transaction dirtied, and
/// the recent phones take their inserts at random, so fewer commits write each such page
/// fewer times, as long as the dirtied pages fit in the cache (what does not is spilled to the WAL
/// before the commit, and written again when dirtied again). Cache and commit size pay only
/// together: at this ratio a fresh import writes half as much through the WAL as with either
/// grown alone (`docs/performance.md`).
const GROUP_RECORDS_PER_CACHE_MIB: usize = 1_875;
/// The longest a transaction is held across chunks: other writers (a run's lease renewal,
/// the API) wait for the writer meanwhile.
const GROUP_TIME: Duration = Duration::from_secs(1);

/// The writer while a transaction is open across chunks ([`Held`]).
pub(crate) struct Group {
    /// Taken when the transaction ends; still here on drop means it must roll back.
    conn: Option<OwnedMutexGuard<Writer>>,
    /// Records applied in it.
    records: usize,
    began: Instant,
}

impl Group {
    /// IMMEDIATE takes the write lock up front: the plan's reads and the ids it hands out
    /// stay valid until the commit.
    async fn begin(
        writer: Arc<tokio::sync::Mutex<Writer>>,
        scope: &Scope,
    ) -> Result<Group, StoreError> {
        let mut conn = writer.lock_owned().await;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut **conn).await?;
        let (direct, phones) = conn.with_phones().await?;
        // On failure the guard drops in autocommit or rolls back below.
        let begun = blocking(|| phones.begin(&direct, scope.org_id));
        drop(direct);
        let group = Group {
            conn: Some(conn),
            records: 0,
            began: Instant::now(),
        };
        begun?;
        Ok(group)
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        if let Some(conn) = self.conn.as_deref_mut() {
            // A failed COMMIT may leave the transaction open: the drop rolls it back.
            sqlx::query("COMMIT").execute(&mut **conn).await?;
            self.conn = None;
        }
        Ok(())
    }

    async fn rollback(mut self) {
        if let Some(mut conn) = self.conn.take()
            && let Err(e) = roll_back(&mut conn).await
        {
            tracing::warn!("rolling back a chunk's transaction: {e}");
        }
    }
}

/// Rolls back the writer's transaction, if it still has one: SQLite ends it by itself on
/// some errors (a full disk).
async fn roll_back(writer: &mut Writer) -> Result<(), StoreError> {
    if writer.direct().await?.is_autocommit() {
        return Ok(());
    }
    sqlx::query("ROLLBACK").execute(&mut **writer).await?;
    Ok(())
}

impl Drop for Group {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // The writer stays locked until the rollback ran, so nobody begins inside it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = roll_back(&mut conn).await {
                    tracing::warn!("rolling back an abandoned transaction: {e}");
                }
            });
        }
    }
}

/// How many times a start that lost the race to create a fresh file tries again.
const RACE_RETRIES: u64 = 20;

/// The readers' pool (the API and exports, beside an import; a page cache fills only as a
/// connection reads) over a migrated database.
///
/// Processes started together on a fresh file race to create it: one switches it to WAL
/// and runs the migrations, and a loser sees "database is locked" where SQLite does not wait
/// (changing the journal mode), or, when its migration ran after the winner's committed,
/// "table … already exists" ("duplicate column name" for an added column) or — for a
/// migration that runs again cleanly, as 0011's rebuild of tables does — the version already
/// recorded. Each is a moment's contention, not a fault: the loser's transaction rolls back,
/// it tries again, and then finds the migrations applied.
async fn migrated(options: &SqliteConnectOptions) -> Result<SqlitePool, StoreError> {
    let mut attempt = 0;
    loop {
        let result = async {
            let pool = SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options.clone())
                .await
                .map_err(StoreError::open)?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Ok::<_, StoreError>(pool)
        }
        .await;
        match result {
            Err(e) if attempt < RACE_RETRIES && lost_the_race(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// The error of a start that lost the race to create or migrate the file.
fn lost_the_race(e: &StoreError) -> bool {
    let text = e.to_string();
    matches!(e, StoreError::Open(_) | StoreError::Migrate(_))
        && [
            "database is locked",
            "already exists",
            "duplicate column name",
            "UNIQUE constraint failed: _sqlx_migrations.version",
        ]
        .iter()
        .any(|race| text.contains(race))
}

/// An eighth of the writer's page cache, at least 1 MiB.
fn reader_cache_kib(settings: &Settings) -> u64 {
    (u64::from(settings.cache_mib) * 1024 / 8).max(1024)
}

impl Backend for SqliteStore {
    type DB = Sqlite;
    type Held = Held;

    async fn writer(&self) -> Result<impl Conn<Sqlite>, StoreError> {
        Ok(tokio::sync::MutexGuard::map(
            self.writer.lock().await,
            |w| &mut **w,
        ))
    }

    async fn reader(&self) -> Result<impl Conn<Sqlite>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    fn lease_secs(&self) -> i64 {
        self.lease_secs
    }

    fn new_hold(&self) -> Held {
        Held(None)
    }

    async fn write_chunk(
        &self,
        scope: &Scope,
        records: &[&Record],
        held: &mut Held,
    ) -> Result<ChunkApplied, StoreError> {
        let mut group = match held.0.take() {
            Some(group) => group,
            None => Group::begin(self.writer.clone(), scope).await?,
        };
        let planned = async {
            let applied = self.plan_in(&mut group, scope, records).await?;
            let moved = Self::move_phones(&mut group, &applied).await?;
            Ok::<_, StoreError>((applied, moved))
        }
        .await;
        let (applied, moved) = match planned {
            Ok(planned) => planned,
            Err(e) => {
                group.rollback().await;
                return Err(e);
            }
        };
        // A nightly re-import, where most records are unchanged, is held too: each commit
        // and the checkpoint after it is a hand-over to sqlx's worker threads and back.
        if applied.refused.is_some()
            || moved
            || group.records >= self.group_records
            || group.began.elapsed() >= GROUP_TIME
        {
            group.commit().await?;
            self.checkpoint_behind();
        } else {
            held.0 = Some(group);
        }
        Ok(applied)
    }

    async fn commit_hold(&self, held: &mut Held) -> Result<(), StoreError> {
        if let Some(group) = held.0.take() {
            group.commit().await?;
            self.checkpoint_behind();
        }
        Ok(())
    }
}

/// SQLite's [`Hold`]: the writer's transaction while it is open across chunks.
pub struct Held(Option<Group>);

impl Hold for Held {
    fn open(&self) -> bool {
        self.0.is_some()
    }
}

impl Dialect for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    // No sessions: the process's host and pid, and the lease, tell.
    const SESSION_GONE: &'static str = "false";
    // SQLite compares text byte-wise already.
    const BYTEWISE: &'static str = "";
    const CARD_EXTERNAL_IDS: &'static str = "SELECT json_group_array(json_object('source', s.code, 'id', x.ext_id) ORDER BY s.code, x.ext_id)
       FROM client_external_ids x JOIN sources s ON s.id = x.source_id WHERE x.client_id = $1";
    const CLIENT_LINE: &'static str = "SELECT c.name, c.phone, c.email, c.logged_in,
    (SELECT json_group_array(json_object('source', s.code, 'id', x.ext_id) ORDER BY s.code, x.ext_id)
       FROM client_external_ids x JOIN sources s ON s.id = x.source_id WHERE x.client_id = c.id),
    (SELECT json_group_array(json_object('source', s.code, 'id', p.ext_id, 'role', cp.role)
                             ORDER BY s.code, p.ext_id)
       FROM client_premises cp JOIN premises p ON p.id = cp.premise_id
       JOIN sources s ON s.id = p.source_id WHERE cp.client_id = c.id AND cp.archived_run IS NULL),
    (SELECT json_group_array(json_object('source', s.code, 'id', a.ext_id) ORDER BY s.code, a.ext_id)
       FROM client_accounts ca JOIN accounts a ON a.id = ca.account_id
       JOIN sources s ON s.id = a.source_id WHERE ca.client_id = c.id AND ca.archived_run IS NULL),
    (SELECT s.code || char(0) || x.ext_id FROM client_external_ids x JOIN sources s ON s.id = x.source_id
      WHERE x.client_id = c.id ORDER BY s.code, x.ext_id LIMIT 1) AS first_id
   FROM clients c";
    const CLIENT_ORDER: &'static str = "ORDER BY first_id";

    fn export_clients() -> String {
        format!(
            "{} WHERE c.org_id = $1 ORDER BY first_id",
            Self::CLIENT_LINE
        )
    }

    fn texts(param: &str) -> String {
        format!("SELECT value FROM json_each({param})")
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}
