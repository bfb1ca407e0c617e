//! The embedded default: one SQLite file, WAL, migrations run on open.
//!
//! A chunk is one `BEGIN IMMEDIATE` transaction, planned set-based ([`plan`]) with the exact
//! record path for what the plan cannot resolve. Every check a record can fail (references,
//! account numbers, the matching table) runs before its first write, so a refused record
//! leaves nothing behind and the records before it commit.

use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

mod bulk;
mod direct;
mod record;

use direct::Writer;

use serde::Deserialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection, SqlitePool};

use super::plan;
use super::{
    Bearer, ChunkApplied, Held, Lookup, RunFilter, RunRow, RunStart, Scope, Settings, Store,
    StoreError, TokenRow, Trigger, now,
};
use crate::export::ExportLine;
use crate::model::Record;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Seconds a run's lease lasts without renewal.
    lease_secs: i64,
    /// Clients (all organizations) up to which a transaction may be held across chunks.
    hold_clients: i64,
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
    /// to copy: a fresh import of 1M pairs spent 3 of its 19 s checkpointing.
    checkpointer: Arc<tokio::sync::Mutex<SqliteConnection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database. The pragmas and what each
    /// trades are in the README's "Storage" section.
    pub async fn open(url: &str, settings: &Settings) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Open)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // A negative cache_size is in KiB. Readers lose their cache whenever the writer
            // commits, so a big one would seldom be warm.
            .pragma("cache_size", format!("-{}", reader_cache_kib(settings)))
            .pragma("temp_store", "memory")
            // Set when the file is created. A chunk's random phone-index inserts dirty one
            // page each, and dirty pages stay in memory until the commit: 16 KiB pages took a
            // 10,000,000-pair import to a 192 MiB peak (3,000,000 pairs: 170 MiB, 164 s),
            // 4 KiB pages keep it at 98 MiB (126 s) and write a quarter as much to the WAL.
            .pragma("page_size", "4096")
            // Checkpoint every 64 MiB of WAL instead of 4 MiB: a page rewritten by many
            // chunks is copied into the database once.
            .pragma("wal_autocheckpoint", "16384")
            .pragma("journal_size_limit", "67108864")
            // An export is one long statement by design: not a warning.
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        // Readers: the API and exports, beside an import. A page cache fills only as a
        // connection reads.
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await
            .map_err(StoreError::Open)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        // A checkpoint reads WAL frames, not pages through the cache.
        let checkpointer = options
            .clone()
            .pragma("cache_size", "-1024")
            .connect()
            .await
            .map_err(StoreError::Open)?;
        // The planner and the exact path check every reference before they write, so
        // SQLite's own foreign-key probes only re-check them, at a tenth of a fresh import's
        // time (1M pairs: 17.7 → 16.0 s, mean of three); the tests check that no row refers
        // to a missing one after every import they look at.
        let writer = options
            .foreign_keys(false)
            .pragma(
                "cache_size",
                format!("-{}", u64::from(settings.cache_mib) * 1024),
            )
            .connect()
            .await
            .map_err(StoreError::Open)?;
        Ok(SqliteStore {
            lease_secs: i64::from(settings.lease_secs),
            hold_clients: i64::from(settings.cache_mib) * HOLD_CLIENTS_PER_CACHE_MIB,
            group_records: settings.cache_mib as usize * GROUP_RECORDS_PER_CACHE_MIB,
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(Writer::new(writer).await?)),
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

    /// The clients, and so the phone index, are few enough for a held transaction to pay.
    async fn index_fits(&self, group: &mut Group) -> Result<bool, StoreError> {
        let Some(conn) = group.conn.as_deref_mut() else {
            return Ok(false);
        };
        // Ids are handed out counting up from the maximum: it counts the clients, cheaply.
        let clients: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM clients")
            .fetch_one(&mut **conn)
            .await?;
        Ok(clients <= self.hold_clients)
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
        group.records += applied.outcomes.len();
        Ok(applied)
    }
}

/// Records a transaction held across chunks takes per MiB of writer cache before it commits
/// (60,000 at the default 32 MiB). A commit writes every page the transaction dirtied, and
/// the phone index takes its inserts at random, so fewer commits write each index page fewer
/// times, as long as the dirtied pages fit in the cache (what does not is spilled to the WAL
/// before the commit, and written again when dirtied again). 1M pairs fresh (README,
/// `cache_size`): 20,000 records per commit with 12 MiB wrote 2.57 GB through the WAL, 60,000
/// with 32 MiB 1.21 GB, and took 9.16–10.00 s against 10.54–12.12 s (four interleaved
/// runs); 60,000 with 12 MiB still wrote 2.08 GB, 20,000 with 32 MiB 1.93 GB.
const GROUP_RECORDS_PER_CACHE_MIB: usize = 1_875;
/// A held transaction saves writes only while the phone index is within a few times the
/// writer's cache: a commit then rewrites index pages that many chunks dirtied. Once the
/// index is much bigger, its random inserts spill dirty pages to the WAL before the commit
/// anyway: a 10,000,000-pair import took 468.6 s holding transactions throughout against
/// 370.3 s with a commit per chunk, where 1,000,000 pairs gained 19 % (measured while half
/// of a chunk's look-ups still ran on a second connection, which a held transaction's later
/// chunks could not use). 85,000 clients per MiB of cache
/// (about 2.7M at the default 32 MiB: a phone index of 2.5 times the cache) keeps holding to
/// the size where it was measured to pay.
const HOLD_CLIENTS_PER_CACHE_MIB: i64 = 85_000;
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
    async fn begin(writer: Arc<tokio::sync::Mutex<Writer>>) -> Result<Group, StoreError> {
        let mut conn = writer.lock_owned().await;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut **conn).await?;
        Ok(Group {
            conn: Some(conn),
            records: 0,
            began: Instant::now(),
        })
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
            && let Err(e) = sqlx::query("ROLLBACK").execute(&mut **conn).await
        {
            tracing::warn!("rolling back a chunk's transaction: {e}");
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // The writer stays locked until the rollback ran, so nobody begins inside it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = sqlx::query("ROLLBACK").execute(&mut **conn).await {
                    tracing::warn!("rolling back an abandoned transaction: {e}");
                }
            });
        }
    }
}

/// An eighth of the writer's page cache, at least 1 MiB.
fn reader_cache_kib(settings: &Settings) -> u64 {
    (u64::from(settings.cache_mib) * 1024 / 8).max(1024)
}

impl Store for SqliteStore {
    async fn scope(&self, org: &str, source: &str) -> Result<Scope, StoreError> {
        let mut writer = self.writer.lock().await;
        let conn: &mut SqliteConnection = &mut writer;
        let mut tx = conn.begin().await?;
        sqlx::query("INSERT INTO organizations (code) VALUES (?) ON CONFLICT (code) DO NOTHING")
            .bind(org)
            .execute(&mut *tx)
            .await?;
        let org_id: i64 = sqlx::query_scalar("SELECT id FROM organizations WHERE code = ?")
            .bind(org)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO sources (org_id, code) VALUES (?, ?) ON CONFLICT (org_id, code) DO NOTHING")
            .bind(org_id)
            .bind(source)
            .execute(&mut *tx)
            .await?;
        let source_id: i64 =
            sqlx::query_scalar("SELECT id FROM sources WHERE org_id = ? AND code = ?")
                .bind(org_id)
                .bind(source)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Scope {
            org_id,
            source_id,
            org: org.to_owned(),
            source: source.to_owned(),
            run_id: None,
        })
    }

    async fn apply_chunk(
        &self,
        scope: &Scope,
        records: &[&Record],
        held: &mut Held,
    ) -> Result<ChunkApplied, StoreError> {
        let mut group = match held.0.take() {
            Some(group) => group,
            None => Group::begin(self.writer.clone()).await?,
        };
        let applied = match self.plan_in(&mut group, scope, records).await {
            Ok(applied) => applied,
            Err(e) => {
                group.rollback().await;
                return Err(e);
            }
        };
        // A nightly re-import, where most records are unchanged, is held too: each commit
        // and the checkpoint after it was a hand-over to sqlx's worker threads and back
        // (1M pairs re-imported: 4.21–4.62 → 3.93–4.06 s, four interleaved runs).
        if applied.refused.is_some()
            || group.records >= self.group_records
            || group.began.elapsed() >= GROUP_TIME
            || !self.index_fits(&mut group).await?
        {
            group.commit().await?;
            self.checkpoint_behind();
        } else {
            held.0 = Some(group);
        }
        Ok(applied)
    }

    async fn commit(&self, held: &mut Held) -> Result<(), StoreError> {
        if let Some(group) = held.0.take() {
            group.commit().await?;
            self.checkpoint_behind();
        }
        Ok(())
    }

    async fn export(&self, org: &str, out: &mut (dyn Write + Send)) -> Result<bool, StoreError> {
        use futures::TryStreamExt;
        let mut conn = self.pool.acquire().await?;
        let Some(org_id) =
            sqlx::query_scalar::<_, i64>("SELECT id FROM organizations WHERE code = ?")
                .bind(org)
                .fetch_optional(&mut *conn)
                .await?
        else {
            return Ok(false);
        };
        {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{PREMISE_LINE} WHERE s.org_id = ? ORDER BY s.code, p.ext_id"
            )))
            .bind(org_id)
            .fetch(&mut *conn);
            while let Some(row) = rows.try_next().await? {
                premise_line(&row)?.write(out)?;
            }
        }
        {
            let mut rows = sqlx::query(
                "SELECT s.code, a.ext_id, p.ext_id, a.number, a.area, a.residents
                   FROM sources s JOIN accounts a ON a.source_id = s.id JOIN premises p ON p.id = a.premise_id
                  WHERE s.org_id = ? ORDER BY s.code, a.ext_id",
            )
            .bind(org_id)
            .fetch(&mut *conn);
            while let Some(row) = rows.try_next().await? {
                let line = ExportLine::Account {
                    source: row.try_get(0)?,
                    id: row.try_get(1)?,
                    premise_id: row.try_get(2)?,
                    number: row.try_get(3)?,
                    area: row.try_get(4)?,
                    residents: row.try_get(5)?,
                };
                line.write(out)?;
            }
        }
        {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{CLIENT_LINE} WHERE c.org_id = ? ORDER BY first_id"
            )))
            .bind(org_id)
            .fetch(&mut *conn);
            while let Some(row) = rows.try_next().await? {
                client_line(&row)?.write(out)?;
            }
        }
        Ok(true)
    }

    async fn mark_logged_in(&self, phone: &str) -> Result<u64, StoreError> {
        let mut writer = self.writer.lock().await;
        let conn: &mut SqliteConnection = &mut writer;
        let done = sqlx::query("UPDATE clients SET logged_in = 1 WHERE phone = ?")
            .bind(phone)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected())
    }

    async fn start_run(
        &self,
        org_id: i64,
        pipeline: Option<&str>,
        trigger: Trigger,
    ) -> Result<RunStart, StoreError> {
        let mut writer = self.writer.lock().await;
        let conn: &mut SqliteConnection = &mut writer;
        let started = now();
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (org_id, pipeline, trigger, started_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(org_id)
        .bind(pipeline)
        .bind(trigger.as_str())
        .bind(&started)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(pipeline) = pipeline {
            let clock = unix_now();
            sqlx::query(
                "UPDATE runs SET status = 'interrupted', finished_at = ? WHERE status = 'running' AND id IN \
                 (SELECT run_id FROM run_leases WHERE org_id = ? AND pipeline = ? AND expires_at < ?)",
            )
            .bind(&started)
            .bind(org_id)
            .bind(pipeline)
            .bind(clock)
            .execute(&mut *tx)
            .await?;
            let taken = sqlx::query(
                "INSERT INTO run_leases (org_id, pipeline, run_id, expires_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (org_id, pipeline) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at \
                 WHERE run_leases.expires_at < ?",
            )
            .bind(org_id)
            .bind(pipeline)
            .bind(id)
            .bind(clock + self.lease_secs)
            .bind(clock)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if taken == 0 {
                let (holder, since): (i64, String) = sqlx::query_as(
                    "SELECT l.run_id, r.started_at FROM run_leases l JOIN runs r ON r.id = l.run_id \
                     WHERE l.org_id = ? AND l.pipeline = ?",
                )
                .bind(org_id)
                .bind(pipeline)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(RunStart::Refused {
                    run_id: id,
                    holder,
                    since,
                });
            }
        }
        tx.commit().await?;
        Ok(RunStart::Started(id))
    }

    async fn renew_run(&self, run_id: i64) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().await;
        let conn: &mut SqliteConnection = &mut writer;
        sqlx::query("UPDATE run_leases SET expires_at = ? WHERE run_id = ?")
            .bind(unix_now() + self.lease_secs)
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.unsigned_abs())
    }

    async fn finish_run(
        &self,
        run_id: i64,
        status: &str,
        records: u64,
        report_json: &str,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().await;
        let conn: &mut SqliteConnection = &mut writer;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE runs SET finished_at = ?, status = ?, records = ?, report = ? WHERE id = ?",
        )
        .bind(now())
        .bind(status)
        .bind(records as i64)
        .bind(report_json)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM run_leases WHERE run_id = ?")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn note_mail(&self, run_id: i64, note: &str) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().await;
        let conn: &mut SqliteConnection = &mut writer;
        sqlx::query("UPDATE runs SET mail = ? WHERE id = ?")
            .bind(note)
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE (?1 IS NULL OR o.code = ?1) AND (?2 IS NULL OR r.pipeline = ?2) \
             ORDER BY r.id DESC LIMIT ?3"
        )))
        .bind(filter.org.as_deref())
        .bind(filter.pipeline.as_deref())
        .bind(i64::from(filter.limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    async fn lookup(
        &self,
        org: &str,
        what: &Lookup,
    ) -> Result<Option<Vec<ExportLine>>, StoreError> {
        let Some(org_id) =
            sqlx::query_scalar::<_, i64>("SELECT id FROM organizations WHERE code = ?")
                .bind(org)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let lines = match what {
            Lookup::ClientsByPhone(phone) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{CLIENT_LINE} WHERE c.org_id = ? AND c.phone = ? ORDER BY first_id"
                )))
                .bind(org_id)
                .bind(phone)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(client_line)
                    .collect::<Result<Vec<_>, _>>()?
            }
            Lookup::ClientByRef { source, id } => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{CLIENT_LINE} WHERE c.id IN (SELECT x.client_id FROM client_external_ids x \
                     JOIN sources s ON s.id = x.source_id WHERE s.org_id = ? AND s.code = ? AND x.ext_id = ?)"
                )))
                .bind(org_id)
                .bind(source)
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(client_line)
                    .collect::<Result<Vec<_>, _>>()?
            }
            Lookup::Premise { source, id } => {
                let premise = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{PREMISE_LINE} WHERE s.org_id = ? AND s.code = ? AND p.ext_id = ?"
                )))
                .bind(org_id)
                .bind(source)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = premise else {
                    return Ok(Some(Vec::new()));
                };
                let premise_row_id: i64 = row.try_get(10)?;
                let mut lines = vec![premise_line(&row)?];
                let accounts = sqlx::query(
                    "SELECT s.code, a.ext_id, a.number, a.area, a.residents
                       FROM accounts a JOIN sources s ON s.id = a.source_id
                      WHERE a.premise_id = ? ORDER BY s.code, a.ext_id",
                )
                .bind(premise_row_id)
                .fetch_all(&self.pool)
                .await?;
                for a in accounts {
                    lines.push(ExportLine::Account {
                        source: a.try_get(0)?,
                        id: a.try_get(1)?,
                        premise_id: id.clone(),
                        number: a.try_get(2)?,
                        area: a.try_get(3)?,
                        residents: a.try_get(4)?,
                    });
                }
                lines
            }
        };
        Ok(Some(lines))
    }

    async fn create_token(
        &self,
        org: Option<&str>,
        name: &str,
        hash: &str,
    ) -> Result<TokenRow, StoreError> {
        let mut writer = self.writer.lock().await;
        let conn: &mut SqliteConnection = &mut writer;
        let org_id = match org {
            None => None,
            Some(code) => Some(
                sqlx::query_scalar::<_, i64>(
                    "INSERT INTO organizations (code) VALUES (?) ON CONFLICT (code) DO UPDATE SET code = excluded.code RETURNING id",
                )
                .bind(code)
                .fetch_one(&mut *conn)
                .await?,
            ),
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (org_id, name, hash, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(org_id)
        .bind(name)
        .bind(hash)
        .bind(now())
        .fetch_one(&mut *conn)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{TOKEN_COLUMNS} WHERE t.id = ?"
        )))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
        token_row(&row)
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{TOKEN_COLUMNS} ORDER BY t.id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_row).collect()
    }

    async fn revoke_token(&self, id: i64) -> Result<bool, StoreError> {
        let mut writer = self.writer.lock().await;
        let conn: &mut SqliteConnection = &mut writer;
        let done =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(&mut *conn)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn bearer(&self, hash: &str) -> Result<Option<Bearer>, StoreError> {
        let row: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT t.org_id, o.code FROM api_tokens t LEFT JOIN organizations o ON o.id = t.org_id \
             WHERE t.hash = ? AND t.revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(org_id, code)| match (org_id, code) {
            (Some(org_id), Some(code)) => Bearer::Organization { org_id, code },
            _ => Bearer::App,
        }))
    }

    async fn run(
        &self,
        run_id: i64,
        org: Option<&str>,
    ) -> Result<Option<(RunRow, Option<String>)>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE r.id = ?1 AND (?2 IS NULL OR o.code = ?2)"
        )))
        .bind(run_id)
        .bind(org)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((run_row(&row)?, row.try_get("report")?))),
        }
    }
}

const RUN_COLUMNS: &str = "SELECT r.id, o.code AS organization, r.pipeline, r.trigger, r.started_at, \
     r.finished_at, r.status, r.records, r.mail, r.report FROM runs r JOIN organizations o ON o.id = r.org_id";

fn run_row(row: &sqlx::sqlite::SqliteRow) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: row.try_get("id")?,
        organization: row.try_get("organization")?,
        pipeline: row.try_get("pipeline")?,
        trigger: row.try_get("trigger")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        status: row.try_get("status")?,
        records: row.try_get::<i64, _>("records")? as u64,
        mail: row.try_get("mail")?,
    })
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A premise as an export line (and its row id last); callers add `WHERE` and `ORDER BY`.
const PREMISE_LINE: &str =
    "SELECT s.code, p.ext_id, p.address, p.number, p.kind, p.floor, p.entrance, p.rooms,
        p.area, p.cadastral_number, p.id
   FROM sources s JOIN premises p ON p.source_id = s.id";

fn premise_line(row: &sqlx::sqlite::SqliteRow) -> Result<ExportLine, StoreError> {
    Ok(ExportLine::Premise {
        source: row.try_get(0)?,
        id: row.try_get(1)?,
        address: row.try_get(2)?,
        number: row.try_get(3)?,
        kind: row.try_get(4)?,
        floor: row.try_get(5)?,
        entrance: row.try_get(6)?,
        rooms: row.try_get(7)?,
        area: row.try_get(8)?,
        cadastral_number: row.try_get(9)?,
    })
}

/// A client as an export line; callers add `WHERE` and `ORDER BY`.
const CLIENT_LINE: &str = "SELECT c.name, c.phone, c.email, c.logged_in,
    (SELECT json_group_array(json_object('source', s.code, 'id', x.ext_id) ORDER BY s.code, x.ext_id)
       FROM client_external_ids x JOIN sources s ON s.id = x.source_id WHERE x.client_id = c.id),
    (SELECT json_group_array(json_object('source', s.code, 'id', p.ext_id, 'role', cp.role)
                             ORDER BY s.code, p.ext_id)
       FROM client_premises cp JOIN premises p ON p.id = cp.premise_id
       JOIN sources s ON s.id = p.source_id WHERE cp.client_id = c.id),
    (SELECT json_group_array(json_object('source', s.code, 'id', a.ext_id) ORDER BY s.code, a.ext_id)
       FROM client_accounts ca JOIN accounts a ON a.id = ca.account_id
       JOIN sources s ON s.id = a.source_id WHERE ca.client_id = c.id),
    (SELECT s.code || char(0) || x.ext_id FROM client_external_ids x JOIN sources s ON s.id = x.source_id
      WHERE x.client_id = c.id ORDER BY s.code, x.ext_id LIMIT 1) AS first_id
   FROM clients c";

fn client_line(row: &sqlx::sqlite::SqliteRow) -> Result<ExportLine, StoreError> {
    Ok(ExportLine::Client {
        name: row.try_get(0)?,
        phone: row.try_get(1)?,
        email: row.try_get(2)?,
        logged_in: row.try_get(3)?,
        external_ids: from_json(row.try_get(4)?)?,
        premises: from_json(row.try_get(5)?)?,
        accounts: from_json(row.try_get(6)?)?,
    })
}

fn token_row(row: &sqlx::sqlite::SqliteRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: row.try_get("id")?,
        organization: row.try_get("organization")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const TOKEN_COLUMNS: &str = "SELECT t.id, o.code AS organization, t.name, t.created_at, t.revoked_at \
     FROM api_tokens t LEFT JOIN organizations o ON o.id = t.org_id";

fn from_json<T: for<'de> Deserialize<'de>>(text: String) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("link list {text:?}: {e}")))
}
