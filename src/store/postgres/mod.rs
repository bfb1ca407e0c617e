//! PostgreSQL: what a company runs in production and what several daemons share. The same
//! tables, keys and results as SQLite (the same export bytes); text is ordered byte-wise
//! (`COLLATE "C"`) as SQLite orders it. Chunks go through the shared planner ([`plan`]) with
//! array look-ups and `UNNEST` writes ([`bulk`]). A chunk holds its organization's advisory lock, so
//! two processes never interleave the matching table of one organization; pipeline leases
//! are rows, as on SQLite.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod bulk;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Postgres};

use super::backend::{Backend, Conn, count_applied};
use super::plan;
use super::sql::Dialect;
use super::{ChunkApplied, Hold, Scope, Settings, StoreError};
use crate::model::Record;

#[derive(Debug, Clone)]
pub struct PgStore {
    /// Seconds a run's lease lasts without renewal.
    lease_secs: i64,
    pool: PgPool,
    /// When the planner's statistics were last looked at; `None` before this store's
    /// first chunk.
    statistics_checked: Arc<Mutex<Option<Instant>>>,
    options: Arc<PgConnectOptions>,
    /// Each running run's own session, outside the pool: the server ends it when this
    /// process dies, which tells any other host at once that the run is dead.
    sessions: Arc<Mutex<HashMap<i64, PgConnection>>>,
}

/// The tables an import writes, whose look-ups' plans depend on their statistics.
const IMPORTED_TABLES: [&str; 7] = [
    "premises",
    "accounts",
    "clients",
    "client_external_ids",
    "client_premises",
    "client_accounts",
    "phone_history",
];
/// How often, while chunks are written, the statistics are looked at: the look costs a
/// millisecond, and a bulk load grows the tables by a fifth within seconds at first.
const STATISTICS_EVERY: Duration = Duration::from_secs(2);

impl PgStore {
    /// Connects and runs the PostgreSQL migrations.
    pub async fn open(url: &str, settings: &Settings) -> Result<Self, StoreError> {
        // An export is one long statement by design: not a warning.
        let options = PgConnectOptions::from_str(url)
            .map_err(StoreError::open)?
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(StoreError::open)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore {
            lease_secs: i64::from(settings.lease_secs),
            pool,
            statistics_checked: Arc::default(),
            options: Arc::new(options),
            sessions: Arc::default(),
        })
    }

    /// Refreshes the statistics of the imported tables that changed by more than a fifth
    /// (and a thousand rows) since they were taken. A bulk load outruns autovacuum's
    /// analyze, which looks once a minute; with the statistics of an empty table the
    /// look-ups are planned as scans, and a rerun after a crash mid-load ran six times
    /// slower. Checked at this store's first chunk (a rerun) and then every few seconds.
    async fn keep_statistics_fresh(&self) -> Result<(), StoreError> {
        {
            let mut checked = self
                .statistics_checked
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if checked.is_some_and(|at| at.elapsed() < STATISTICS_EVERY) {
                return Ok(());
            }
            *checked = Some(Instant::now());
        }
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
             WHERE s.schemaname = current_schema() AND s.relname = ANY($1) \
               AND s.n_mod_since_analyze > 1000 + 0.2 * GREATEST(c.reltuples, 0)",
        )
        .bind(IMPORTED_TABLES)
        .fetch_all(&self.pool)
        .await?;
        for table in IMPORTED_TABLES
            .iter()
            .filter(|t| stale.iter().any(|s| s == *t))
        {
            tracing::debug!(table, "refreshing the planner's statistics");
            sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

impl Backend for PgStore {
    type DB = Postgres;
    type Held = EachChunkCommits;

    async fn writer(&self) -> Result<impl Conn<Postgres>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    async fn reader(&self) -> Result<impl Conn<Postgres>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    fn lease_secs(&self) -> i64 {
        self.lease_secs
    }

    async fn attend(&self, run_id: i64) -> Result<(), StoreError> {
        let mut session = self.options.connect().await.map_err(StoreError::open)?;
        sqlx::query(
            "UPDATE runs SET session = (SELECT pid || '/' || extract(epoch FROM backend_start) \
             FROM pg_stat_activity WHERE pid = pg_backend_pid()) WHERE id = $1",
        )
        .bind(run_id)
        .execute(&mut session)
        .await?;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run_id, session);
        Ok(())
    }

    async fn dismiss(&self, run_id: i64) {
        let session = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&run_id);
        if let Some(session) = session {
            let _ = session.close().await;
        }
    }

    fn new_hold(&self) -> EachChunkCommits {
        EachChunkCommits
    }

    async fn write_chunk(
        &self,
        scope: &Scope,
        records: &[&Record],
        _held: &mut EachChunkCommits,
    ) -> Result<ChunkApplied, StoreError> {
        self.keep_statistics_fresh().await?;
        let mut tx = self.pool.begin().await?;
        // One writer per organization at a time: the table's reads stay true until commit.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(scope.org_id)
            .execute(&mut *tx)
            .await?;
        let applied = plan::apply_chunk(&mut *tx, scope, records).await?;
        count_applied::<Postgres>(&mut tx, scope, &applied).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Every chunk commits on its own: PostgreSQL writes its WAL per row change, not per
    /// page a transaction dirtied, so holding a transaction open would buy nothing.
    async fn commit_hold(&self, _held: &mut EachChunkCommits) -> Result<(), StoreError> {
        Ok(())
    }
}

/// PostgreSQL's [`Hold`]: every chunk commits on its own, so nothing is ever held.
pub struct EachChunkCommits;

impl Hold for EachChunkCommits {
    fn open(&self) -> bool {
        false
    }
}

impl Dialect for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const SESSION_GONE: &'static str = "r.session IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
         WHERE a.pid || '/' || extract(epoch FROM a.backend_start) = r.session)";
    const BYTEWISE: &'static str = " COLLATE \"C\"";
    const CARD_EXTERNAL_IDS: &'static str = "SELECT COALESCE(json_agg(json_build_object('source', s.code, 'id', x.ext_id)
                                   ORDER BY s.code COLLATE \"C\", x.ext_id COLLATE \"C\"), '[]')::text
           FROM client_external_ids x JOIN sources s ON s.id = x.source_id WHERE x.client_id = $1";
    const CLIENT_LINE: &'static str = "SELECT c.name, c.phone, c.email, c.logged_in,
    (SELECT COALESCE(json_agg(json_build_object('source', s.code, 'id', x.ext_id)
                              ORDER BY s.code COLLATE \"C\", x.ext_id COLLATE \"C\"), '[]')::text
       FROM client_external_ids x JOIN sources s ON s.id = x.source_id WHERE x.client_id = c.id),
    (SELECT COALESCE(json_agg(json_build_object('source', s.code, 'id', p.ext_id, 'role', cp.role)
                              ORDER BY s.code COLLATE \"C\", p.ext_id COLLATE \"C\"), '[]')::text
       FROM client_premises cp JOIN premises p ON p.id = cp.premise_id
       JOIN sources s ON s.id = p.source_id WHERE cp.client_id = c.id AND cp.archived_run IS NULL),
    (SELECT COALESCE(json_agg(json_build_object('source', s.code, 'id', a.ext_id)
                              ORDER BY s.code COLLATE \"C\", a.ext_id COLLATE \"C\"), '[]')::text
       FROM client_accounts ca JOIN accounts a ON a.id = ca.account_id
       JOIN sources s ON s.id = a.source_id WHERE ca.client_id = c.id AND ca.archived_run IS NULL),
    f.code AS first_code, f.ext_id AS first_id
   FROM clients c
   LEFT JOIN LATERAL (SELECT s.code, x.ext_id FROM client_external_ids x JOIN sources s ON s.id = x.source_id
                       WHERE x.client_id = c.id ORDER BY s.code COLLATE \"C\", x.ext_id COLLATE \"C\" LIMIT 1) f ON true";
    const CLIENT_ORDER: &'static str = "ORDER BY f.code COLLATE \"C\", f.ext_id COLLATE \"C\"";

    fn export_clients() -> String {
        EXPORT_CLIENTS.to_owned()
    }

    fn texts(param: &str) -> String {
        format!("SELECT jsonb_array_elements_text({param}::jsonb)")
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

/// All clients of an organization as export lines: each link table aggregated once and
/// hash-joined, so the export stays linear whatever the planner knows of fresh tables
/// (correlated sub-queries per card went quadratic on a just-imported, unanalysed table).
const EXPORT_CLIENTS: &str = "WITH ids AS (
    SELECT x.client_id,
           json_agg(json_build_object('source', s.code, 'id', x.ext_id)
                    ORDER BY s.code COLLATE \"C\", x.ext_id COLLATE \"C\")::text AS list,
           (array_agg(s.code ORDER BY s.code COLLATE \"C\", x.ext_id COLLATE \"C\"))[1] AS first_code,
           (array_agg(x.ext_id ORDER BY s.code COLLATE \"C\", x.ext_id COLLATE \"C\"))[1] AS first_id
      FROM client_external_ids x JOIN sources s ON s.id = x.source_id
     WHERE s.org_id = $1 GROUP BY x.client_id),
  premise_links AS (
    SELECT cp.client_id,
           json_agg(json_build_object('source', s.code, 'id', p.ext_id, 'role', cp.role)
                    ORDER BY s.code COLLATE \"C\", p.ext_id COLLATE \"C\")::text AS list
      FROM client_premises cp JOIN premises p ON p.id = cp.premise_id JOIN sources s ON s.id = p.source_id
     WHERE p.org_id = $1 AND cp.archived_run IS NULL GROUP BY cp.client_id),
  account_links AS (
    SELECT ca.client_id,
           json_agg(json_build_object('source', s.code, 'id', a.ext_id)
                    ORDER BY s.code COLLATE \"C\", a.ext_id COLLATE \"C\")::text AS list
      FROM client_accounts ca JOIN accounts a ON a.id = ca.account_id JOIN sources s ON s.id = a.source_id
     WHERE a.org_id = $1 AND ca.archived_run IS NULL GROUP BY ca.client_id)
SELECT c.name, c.phone, c.email, c.logged_in, COALESCE(i.list, '[]'), COALESCE(pl.list, '[]'),
       COALESCE(al.list, '[]')
  FROM clients c
  LEFT JOIN ids i ON i.client_id = c.id
  LEFT JOIN premise_links pl ON pl.client_id = c.id
  LEFT JOIN account_links al ON al.client_id = c.id
 WHERE c.org_id = $1
 ORDER BY i.first_code COLLATE \"C\", i.first_id COLLATE \"C\"";
