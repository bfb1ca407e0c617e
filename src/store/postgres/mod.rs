//! PostgreSQL: what a company runs in production and what several daemons share. The same
//! tables, keys and results as SQLite (the same export bytes); text is ordered byte-wise
//! (`COLLATE "C"`) as SQLite orders it. Chunks go through the shared planner ([`plan`]) with
//! array look-ups and `UNNEST` writes ([`bulk`]). A chunk holds its organization's advisory lock, so
//! two processes never interleave the matching table of one organization; pipeline leases
//! are rows, as on SQLite.

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

mod bulk;
mod record;

use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, PgPool, Row};

use super::plan;
use super::{
    Bearer, ChunkApplied, Held, Lookup, RunFilter, RunRow, RunStart, Scope, Settings, Store,
    StoreError, TokenRow, Trigger, now,
};
use crate::export::ExportLine;
use crate::model::Record;

#[derive(Debug, Clone)]
pub struct PgStore {
    /// Seconds a run's lease lasts without renewal.
    lease_secs: i64,
    pool: PgPool,
}

impl PgStore {
    /// Connects and runs the PostgreSQL migrations.
    pub async fn open(url: &str, settings: &Settings) -> Result<Self, StoreError> {
        // An export is one long statement by design: not a warning.
        let options = PgConnectOptions::from_str(url)
            .map_err(StoreError::Open)?
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(StoreError::Open)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore {
            lease_secs: i64::from(settings.lease_secs),
            pool,
        })
    }
}

impl Store for PgStore {
    async fn scope(&self, org: &str, source: &str) -> Result<Scope, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO organizations (code) VALUES ($1) ON CONFLICT (code) DO NOTHING")
            .bind(org)
            .execute(&mut *tx)
            .await?;
        let org_id: i64 = sqlx::query_scalar("SELECT id FROM organizations WHERE code = $1")
            .bind(org)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO sources (org_id, code) VALUES ($1, $2) ON CONFLICT (org_id, code) DO NOTHING")
            .bind(org_id)
            .bind(source)
            .execute(&mut *tx)
            .await?;
        let source_id: i64 =
            sqlx::query_scalar("SELECT id FROM sources WHERE org_id = $1 AND code = $2")
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
        _held: &mut Held,
    ) -> Result<ChunkApplied, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One writer per organization at a time: the table's reads stay true until commit.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(scope.org_id)
            .execute(&mut *tx)
            .await?;
        let applied = plan::apply_chunk(&mut *tx, scope, records).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Every chunk commits on its own: PostgreSQL writes its WAL per row change, not per
    /// page a transaction dirtied, so holding a transaction open would buy nothing.
    async fn commit(&self, _held: &mut Held) -> Result<(), StoreError> {
        Ok(())
    }

    async fn export(&self, org: &str, out: &mut (dyn Write + Send)) -> Result<bool, StoreError> {
        use futures::TryStreamExt;
        let mut conn = self.pool.acquire().await?;
        let Some(org_id) =
            sqlx::query_scalar::<_, i64>("SELECT id FROM organizations WHERE code = $1")
                .bind(org)
                .fetch_optional(&mut *conn)
                .await?
        else {
            return Ok(false);
        };
        {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{PREMISE_LINE} WHERE s.org_id = $1 ORDER BY s.code COLLATE \"C\", p.ext_id COLLATE \"C\""
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
                  WHERE s.org_id = $1 ORDER BY s.code COLLATE \"C\", a.ext_id COLLATE \"C\"",
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
            let mut rows = sqlx::query(EXPORT_CLIENTS).bind(org_id).fetch(&mut *conn);
            while let Some(row) = rows.try_next().await? {
                client_line(&row)?.write(out)?;
            }
        }
        Ok(true)
    }

    async fn mark_logged_in(&self, phone: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE clients SET logged_in = true WHERE phone = $1")
            .bind(phone)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn start_run(
        &self,
        org_id: i64,
        pipeline: Option<&str>,
        trigger: Trigger,
    ) -> Result<RunStart, StoreError> {
        let started = now();
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (org_id, pipeline, trigger, started_at) VALUES ($1, $2, $3, $4) RETURNING id",
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
                "UPDATE runs SET status = 'interrupted', finished_at = $1 WHERE status = 'running' AND id IN \
                 (SELECT run_id FROM run_leases WHERE org_id = $2 AND pipeline = $3 AND expires_at < $4)",
            )
            .bind(&started)
            .bind(org_id)
            .bind(pipeline)
            .bind(clock)
            .execute(&mut *tx)
            .await?;
            let taken = sqlx::query(
                "INSERT INTO run_leases (org_id, pipeline, run_id, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id, pipeline) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at \
                 WHERE run_leases.expires_at < $5",
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
                     WHERE l.org_id = $1 AND l.pipeline = $2",
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
        sqlx::query("UPDATE run_leases SET expires_at = $1 WHERE run_id = $2")
            .bind(unix_now() + self.lease_secs)
            .bind(run_id)
            .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE runs SET finished_at = $1, status = $2, records = $3, report = $4 WHERE id = $5",
        )
        .bind(now())
        .bind(status)
        .bind(records as i64)
        .bind(report_json)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM run_leases WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn note_mail(&self, run_id: i64, note: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET mail = $1 WHERE id = $2")
            .bind(note)
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE ($1 IS NULL OR o.code = $1) AND ($2 IS NULL OR r.pipeline = $2) \
             ORDER BY r.id DESC LIMIT $3"
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
            sqlx::query_scalar::<_, i64>("SELECT id FROM organizations WHERE code = $1")
                .bind(org)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let lines = match what {
            Lookup::ClientsByPhone(phone) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{CLIENT_LINE} WHERE c.org_id = $1 AND c.phone = $2 {CLIENT_ORDER}"
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
                     JOIN sources s ON s.id = x.source_id WHERE s.org_id = $1 AND s.code = $2 AND x.ext_id = $3)"
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
                    "{PREMISE_LINE} WHERE s.org_id = $1 AND s.code = $2 AND p.ext_id = $3"
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
                      WHERE a.premise_id = $1 ORDER BY s.code COLLATE \"C\", a.ext_id COLLATE \"C\"",
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
        let org_id = match org {
            None => None,
            Some(code) => Some(
                sqlx::query_scalar::<_, i64>(
                    "INSERT INTO organizations (code) VALUES ($1) ON CONFLICT (code) DO UPDATE SET code = excluded.code RETURNING id",
                )
                .bind(code)
                .fetch_one(&self.pool)
                .await?,
            ),
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (org_id, name, hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(org_id)
        .bind(name)
        .bind(hash)
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{TOKEN_COLUMNS} WHERE t.id = $1"
        )))
        .bind(id)
        .fetch_one(&self.pool)
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
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn bearer(&self, hash: &str) -> Result<Option<Bearer>, StoreError> {
        let row: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT t.org_id, o.code FROM api_tokens t LEFT JOIN organizations o ON o.id = t.org_id \
             WHERE t.hash = $1 AND t.revoked_at IS NULL",
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
            "{RUN_COLUMNS} WHERE r.id = $1 AND ($2 IS NULL OR o.code = $2)"
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

fn run_row(row: &PgRow) -> Result<RunRow, StoreError> {
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

fn premise_line(row: &PgRow) -> Result<ExportLine, StoreError> {
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
    (SELECT COALESCE(json_agg(json_build_object('source', s.code, 'id', x.ext_id)
                              ORDER BY s.code COLLATE \"C\", x.ext_id COLLATE \"C\"), '[]')::text
       FROM client_external_ids x JOIN sources s ON s.id = x.source_id WHERE x.client_id = c.id),
    (SELECT COALESCE(json_agg(json_build_object('source', s.code, 'id', p.ext_id, 'role', cp.role)
                              ORDER BY s.code COLLATE \"C\", p.ext_id COLLATE \"C\"), '[]')::text
       FROM client_premises cp JOIN premises p ON p.id = cp.premise_id
       JOIN sources s ON s.id = p.source_id WHERE cp.client_id = c.id),
    (SELECT COALESCE(json_agg(json_build_object('source', s.code, 'id', a.ext_id)
                              ORDER BY s.code COLLATE \"C\", a.ext_id COLLATE \"C\"), '[]')::text
       FROM client_accounts ca JOIN accounts a ON a.id = ca.account_id
       JOIN sources s ON s.id = a.source_id WHERE ca.client_id = c.id),
    f.code AS first_code, f.ext_id AS first_id
   FROM clients c
   LEFT JOIN LATERAL (SELECT s.code, x.ext_id FROM client_external_ids x JOIN sources s ON s.id = x.source_id
                       WHERE x.client_id = c.id ORDER BY s.code COLLATE \"C\", x.ext_id COLLATE \"C\" LIMIT 1) f ON true";

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
     WHERE p.org_id = $1 GROUP BY cp.client_id),
  account_links AS (
    SELECT ca.client_id,
           json_agg(json_build_object('source', s.code, 'id', a.ext_id)
                    ORDER BY s.code COLLATE \"C\", a.ext_id COLLATE \"C\")::text AS list
      FROM client_accounts ca JOIN accounts a ON a.id = ca.account_id JOIN sources s ON s.id = a.source_id
     WHERE a.org_id = $1 GROUP BY ca.client_id)
SELECT c.name, c.phone, c.email, c.logged_in, COALESCE(i.list, '[]'), COALESCE(pl.list, '[]'),
       COALESCE(al.list, '[]')
  FROM clients c
  LEFT JOIN ids i ON i.client_id = c.id
  LEFT JOIN premise_links pl ON pl.client_id = c.id
  LEFT JOIN account_links al ON al.client_id = c.id
 WHERE c.org_id = $1
 ORDER BY i.first_code COLLATE \"C\", i.first_id COLLATE \"C\"";

/// The export's order of clients: by their first external id, byte-wise.
const CLIENT_ORDER: &str = "ORDER BY f.code COLLATE \"C\", f.ext_id COLLATE \"C\"";

fn client_line(row: &PgRow) -> Result<ExportLine, StoreError> {
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

fn token_row(row: &PgRow) -> Result<TokenRow, StoreError> {
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
