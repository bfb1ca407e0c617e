//! What a backend brings — its connections, its way of applying a chunk — and the [`Store`]
//! every backend gets from it: runs and their leases, tokens, reads and the export, written
//! once over [`Dialect`].

use std::future::Future;
use std::io::Write;
use std::ops::DerefMut;
use std::time::Duration;

use sqlx::Database;

use super::sql::{
    Columns, Dialect, all, args, begin_write, each, execute, one, optional, with_archived,
};
use super::{
    Archived, Bearer, ChunkApplied, Hold, Holder, Lookup, RunFilter, RunRow, RunStart, RunStatus,
    Scope, Seen, SessionRow, Snapshot, Store, StoreError, StoredPipeline, TokenRow, Trigger,
    UserRow, now,
};
use crate::export::ExportLine;
use crate::model::Record;

/// A connection of the backend's database, however the backend hands it out.
pub trait Conn<DB: Database>: DerefMut<Target = DB::Connection> + Send {}

impl<DB: Database, T: DerefMut<Target = DB::Connection> + Send> Conn<DB> for T {}

/// A storage backend: one database driver, its connections and its chunk path.
pub trait Backend: Send + Sync {
    type DB: Dialect;
    type Held: Hold;

    /// The connection statements that write go through (SQLite has one writer).
    fn writer(&self) -> impl Future<Output = Result<impl Conn<Self::DB>, StoreError>> + Send;

    /// A connection for reads beside the writer.
    fn reader(&self) -> impl Future<Output = Result<impl Conn<Self::DB>, StoreError>> + Send;

    /// Seconds a run's lease lasts without renewal.
    fn lease_secs(&self) -> i64;

    /// Nothing held yet.
    fn new_hold(&self) -> Self::Held;

    /// [`Store::apply_chunk`].
    fn write_chunk(
        &self,
        scope: &Scope,
        records: &[&Record],
        held: &mut Self::Held,
    ) -> impl Future<Output = Result<ChunkApplied, StoreError>> + Send;

    /// [`Store::commit`].
    fn commit_hold(
        &self,
        held: &mut Self::Held,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Keeps a sign of life for a started run that the database withdraws itself when the
    /// process dies, kept in the run's `session` (PostgreSQL: a session of the run's own).
    /// None by default: SQLite is on one host, where the process's pid tells.
    fn attend(&self, _run_id: i64) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// The run ended: its sign of life goes.
    fn dismiss(&self, _run_id: i64) -> impl Future<Output = ()> + Send {
        async {}
    }
}

impl<B: Backend> Store for B {
    type Held = B::Held;

    fn hold(&self) -> Self::Held {
        self.new_hold()
    }

    async fn scope(&self, org: &str, source: &str) -> Result<Scope, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = begin_write::<B::DB>(&mut writer).await?;
        execute::<B::DB>(
            &mut tx,
            "INSERT INTO organizations (code) VALUES ($1) ON CONFLICT (code) DO NOTHING",
            args![org],
        )
        .await?;
        let org_id = one::<B::DB>(
            &mut tx,
            "SELECT id FROM organizations WHERE code = $1",
            args![org],
        )
        .await?
        .int(0)?;
        execute::<B::DB>(
            &mut tx,
            "INSERT INTO sources (org_id, code) VALUES ($1, $2) ON CONFLICT (org_id, code) DO NOTHING",
            args![org_id, source],
        )
        .await?;
        let source_id = one::<B::DB>(
            &mut tx,
            "SELECT id FROM sources WHERE org_id = $1 AND code = $2",
            args![org_id, source],
        )
        .await?
        .int(0)?;
        let archived = one::<B::DB>(
            &mut tx,
            "SELECT EXISTS (SELECT 1 FROM premises WHERE source_id = $1 AND archived_run IS NOT NULL)
                 OR EXISTS (SELECT 1 FROM accounts WHERE source_id = $1 AND archived_run IS NOT NULL)
                 OR EXISTS (SELECT 1 FROM client_premises WHERE source_id = $1 AND archived_run IS NOT NULL)
                 OR EXISTS (SELECT 1 FROM client_accounts WHERE source_id = $1 AND archived_run IS NOT NULL)",
            args![source_id],
        )
        .await?
        .flag(0)?;
        tx.commit().await?;
        Ok(Scope {
            org_id,
            source_id,
            org: org.to_owned(),
            source: source.to_owned(),
            run_id: None,
            stamp: archived,
        })
    }

    async fn apply_chunk(
        &self,
        scope: &Scope,
        records: &[&Record],
        held: &mut Self::Held,
    ) -> Result<ChunkApplied, StoreError> {
        self.write_chunk(scope, records, held).await
    }

    async fn commit(&self, held: &mut Self::Held) -> Result<(), StoreError> {
        self.commit_hold(held).await
    }

    async fn export(
        &self,
        org: &str,
        archived: bool,
        out: &mut (dyn Write + Send),
    ) -> Result<bool, StoreError> {
        let mut conn = self.reader().await?;
        let Some(org_id) = org_id::<B::DB>(&mut conn, org).await? else {
            return Ok(false);
        };
        let c = B::DB::BYTEWISE;
        let premises = with_archived(
            &format!(
                "{PREMISE_LINE} WHERE s.org_id = $1 AND p.archived_run IS NULL \
                 ORDER BY s.code{c}, p.ext_id{c}"
            ),
            archived,
        );
        each::<B::DB>(
            &mut conn,
            sqlx::AssertSqlSafe(premises),
            args![org_id],
            |row| Ok(premise_line(row)?.write(out)?),
        )
        .await?;
        let accounts = with_archived(
            &format!(
                "SELECT s.code, a.ext_id, p.ext_id, a.number, a.area, a.residents, a.archived_run
                   FROM sources s JOIN accounts a ON a.source_id = s.id JOIN premises p ON p.id = a.premise_id
                  WHERE s.org_id = $1 AND a.archived_run IS NULL ORDER BY s.code{c}, a.ext_id{c}"
            ),
            archived,
        );
        each::<B::DB>(
            &mut conn,
            sqlx::AssertSqlSafe(accounts),
            args![org_id],
            |row| {
                let line = ExportLine::Account {
                    source: row.text(0)?,
                    id: row.text(1)?,
                    premise_id: row.text(2)?,
                    number: row.text(3)?,
                    area: row.opt_real(4)?,
                    residents: row.opt_int(5)?,
                    archived_run: row.opt_int(6)?,
                };
                Ok(line.write(out)?)
            },
        )
        .await?;
        let clients = sqlx::AssertSqlSafe(with_archived(&B::DB::export_clients(), archived));
        each::<B::DB>(&mut conn, clients, args![org_id], |row| {
            Ok(client_line(row)?.write(out)?)
        })
        .await?;
        Ok(true)
    }

    async fn mark_logged_in(&self, phone: &str) -> Result<u64, StoreError> {
        let mut writer = self.writer().await?;
        execute::<B::DB>(
            &mut writer,
            // Organization by organization, as SQLite keys its phone tables.
            "UPDATE clients SET logged_in = true
              WHERE id IN (SELECT client_id FROM client_phones
                            WHERE org_id IN (SELECT id FROM organizations) AND phone = $1)",
            args![phone],
        )
        .await
    }

    async fn start_run(
        &self,
        org_id: i64,
        pipeline: Option<&str>,
        trigger: Trigger,
    ) -> Result<RunStart, StoreError> {
        let mut writer = self.writer().await?;
        let started = now();
        let clock = unix_now();
        let mut tx = begin_write::<B::DB>(&mut writer).await?;
        let lease = self.lease_secs();
        close_dead_runs::<B::DB>(&mut tx, org_id, (clock, clock - lease), &started).await?;
        let holder = Holder::this().to_column();
        let id = one::<B::DB>(
            &mut tx,
            "INSERT INTO runs (org_id, pipeline, trigger, started_at, holder, heartbeat) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            args![
                org_id,
                pipeline,
                trigger.as_str(),
                started.as_str(),
                holder.as_str(),
                clock
            ],
        )
        .await?
        .int(0)?;
        if let Some(pipeline) = pipeline {
            let taken = execute::<B::DB>(
                &mut tx,
                "INSERT INTO run_leases (org_id, pipeline, run_id, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id, pipeline) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at \
                 WHERE run_leases.expires_at < $5",
                args![org_id, pipeline, id, clock + lease, clock],
            )
            .await?;
            if taken == 0 {
                let holder = one::<B::DB>(
                    &mut tx,
                    "SELECT l.run_id, r.started_at, l.expires_at, r.holder FROM run_leases l \
                     JOIN runs r ON r.id = l.run_id WHERE l.org_id = $1 AND l.pipeline = $2",
                    args![org_id, pipeline],
                )
                .await?;
                let refused = RunStart::Refused {
                    run_id: id,
                    holder: holder.int(0)?,
                    since: holder.text(1)?,
                    lease_until: holder.int(2)?,
                    process: holder.opt_text(3)?.as_deref().and_then(Holder::from_column),
                };
                tx.commit().await?;
                return Ok(refused);
            }
        }
        tx.commit().await?;
        if let Err(e) = self.attend(id).await {
            tracing::warn!(run_id = id, error = %e, "the run's session could not be opened: its lease alone shows it alive");
        }
        Ok(RunStart::Started(id))
    }

    async fn renew_run(&self, run_id: i64) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let clock = unix_now();
        let mut tx = begin_write::<B::DB>(&mut writer).await?;
        execute::<B::DB>(
            &mut tx,
            "UPDATE runs SET heartbeat = $1 WHERE id = $2",
            args![clock, run_id],
        )
        .await?;
        execute::<B::DB>(
            &mut tx,
            "UPDATE run_leases SET expires_at = $1 WHERE run_id = $2",
            args![clock + self.lease_secs(), run_id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs().unsigned_abs())
    }

    async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        records: u64,
        report_json: &str,
    ) -> Result<(), StoreError> {
        self.dismiss(run_id).await;
        let mut writer = self.writer().await?;
        let mut tx = begin_write::<B::DB>(&mut writer).await?;
        execute::<B::DB>(
            &mut tx,
            "UPDATE runs SET finished_at = $1, status = $2, records = $3, report = $4 WHERE id = $5",
            args![
                now().as_str(),
                status.as_str(),
                i64::try_from(records).unwrap_or(i64::MAX),
                report_json,
                run_id
            ],
        )
        .await?;
        execute::<B::DB>(
            &mut tx,
            "DELETE FROM run_leases WHERE run_id = $1",
            args![run_id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn last_records(&self, org_id: i64, file: &str) -> Result<Option<u64>, StoreError> {
        #[derive(serde::Deserialize)]
        struct Read {
            file: String,
            records: u64,
        }
        #[derive(serde::Deserialize)]
        struct Report {
            #[serde(default)]
            files: Vec<Read>,
        }
        let mut conn = self.reader().await?;
        let reports = all::<B::DB>(
            &mut conn,
            "SELECT report FROM runs WHERE org_id = $1 AND status = 'ok' AND report IS NOT NULL \
             ORDER BY id DESC LIMIT 100",
            args![org_id],
        )
        .await?;
        for row in &reports {
            let report: Report = serde_json::from_str(&row.text(0)?)
                .map_err(|e| StoreError::Corrupt(format!("a run's report: {e}")))?;
            if let Some(read) = report.files.into_iter().find(|r| r.file == file) {
                return Ok(Some(read.records));
            }
        }
        Ok(None)
    }

    async fn keep_results(&self, run_id: i64, part: i64, bytes: &[u8]) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        execute::<B::DB>(
            &mut writer,
            "INSERT INTO run_results (run_id, part, data) VALUES ($1, $2, $3)",
            args![run_id, part, bytes],
        )
        .await?;
        Ok(())
    }

    async fn results_part(&self, run_id: i64, part: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.reader().await?;
        let row = optional::<B::DB>(
            &mut conn,
            "SELECT data FROM run_results WHERE run_id = $1 AND part = $2",
            args![run_id, part],
        )
        .await?;
        Ok(row.map(|r| r.bytes(0)).transpose()?)
    }

    async fn see(&self, scope: &Scope, seen: &Seen) -> Result<(Archived, Vec<String>), StoreError> {
        let run = scope.run_id.unwrap_or_default();
        let texts = B::DB::texts("$2");
        let json = |ids: &[String]| serde_json::to_string(ids).unwrap_or_default();
        let (premises, accounts, clients) = (
            json(&seen.premises),
            json(&seen.accounts),
            json(&seen.clients),
        );
        let cards = format!(
            "client_id IN (SELECT client_id FROM client_external_ids WHERE source_id = $1 AND ext_id IN ({texts}))"
        );
        let mut writer = self.writer().await?;
        let mut tx = begin_write::<B::DB>(&mut writer).await?;
        let back = "SET archived_run = NULL, archived_at = NULL WHERE source_id = $1 AND archived_run IS NOT NULL";
        let restored = all::<B::DB>(
            &mut tx,
            sqlx::AssertSqlSafe(format!(
                "UPDATE premises {back} AND ext_id IN ({texts}) RETURNING ext_id"
            )),
            args![scope.source_id, &premises],
        )
        .await?
        .iter()
        .map(|row| row.text(0))
        .collect::<Result<Vec<_>, _>>()?;
        let mut counts = Archived {
            premises: restored.len() as u64,
            ..Archived::default()
        };
        let statements = [
            ("accounts", format!("ext_id IN ({texts})"), &accounts),
            ("client_premises", cards.clone(), &clients),
            ("client_accounts", cards, &clients),
        ];
        for (table, which, ids) in &statements {
            let done = execute::<B::DB>(
                &mut tx,
                sqlx::AssertSqlSafe(format!("UPDATE {table} {back} AND {which}")),
                args![scope.source_id, *ids],
            )
            .await?;
            match *table {
                "accounts" => counts.accounts += done,
                _ => counts.links += done,
            }
        }
        let stamps = [
            ("premises", format!("ext_id IN ({texts})"), &premises),
            statements[0].clone(),
            statements[1].clone(),
            statements[2].clone(),
        ];
        for (table, which, ids) in stamps {
            execute::<B::DB>(
                &mut tx,
                sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET seen_run = $3 WHERE source_id = $1 AND {which}"
                )),
                args![scope.source_id, ids, run],
            )
            .await?;
        }
        tx.commit().await?;
        Ok((counts, restored))
    }

    async fn archive(
        &self,
        scope: &Scope,
        since: i64,
        max_percent: u64,
    ) -> Result<Snapshot, StoreError> {
        const TABLES: [&str; 4] = ["premises", "accounts", "client_premises", "client_accounts"];
        let unseen =
            "source_id = $1 AND archived_run IS NULL AND (seen_run IS NULL OR seen_run < $2)";
        let mut writer = self.writer().await?;
        let mut tx = begin_write::<B::DB>(&mut writer).await?;
        let (mut would, mut live) = (0u64, 0u64);
        for table in TABLES {
            let row = one::<B::DB>(
                &mut tx,
                sqlx::AssertSqlSafe(format!(
                    "SELECT count(*), count(CASE WHEN seen_run IS NULL OR seen_run < $2 THEN 1 END) \
                     FROM {table} WHERE source_id = $1 AND archived_run IS NULL"
                )),
                args![scope.source_id, since],
            )
            .await?;
            live += row.int(0)?.unsigned_abs();
            would += row.int(1)?.unsigned_abs();
        }
        if would * 100 > max_percent * live {
            return Ok(Snapshot::TooMany { would, live });
        }
        let (run, at) = (scope.run_id.unwrap_or_default(), now());
        let mut counts = [0u64; 4];
        for (table, count) in TABLES.iter().zip(&mut counts) {
            *count = execute::<B::DB>(
                &mut tx,
                sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET archived_run = $3, archived_at = $4 WHERE {unseen}"
                )),
                args![scope.source_id, since, run, &at],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Snapshot::Archived(Archived {
            premises: counts[0],
            accounts: counts[1],
            links: counts[2] + counts[3],
        }))
    }

    async fn note_mail(&self, run_id: i64, note: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        execute::<B::DB>(
            &mut writer,
            "UPDATE runs SET mail = $1 WHERE id = $2",
            args![note, run_id],
        )
        .await?;
        Ok(())
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let mut conn = self.reader().await?;
        let sql = format!(
            "{RUN_COLUMNS} WHERE ($1 IS NULL OR o.code = $1) AND ($2 IS NULL OR r.pipeline = $2) \
             ORDER BY r.id DESC LIMIT $3"
        );
        let rows = all::<B::DB>(
            &mut conn,
            sqlx::AssertSqlSafe(sql),
            args![
                filter.org.as_deref(),
                filter.pipeline.as_deref(),
                i64::from(filter.limit.max(1))
            ],
        )
        .await?;
        rows.iter().map(run_row).collect()
    }

    async fn lookup(
        &self,
        org: &str,
        what: &Lookup,
        archived: bool,
    ) -> Result<Option<Vec<ExportLine>>, StoreError> {
        let mut conn = self.reader().await?;
        let Some(org_id) = org_id::<B::DB>(&mut conn, org).await? else {
            return Ok(None);
        };
        let line = &with_archived(B::DB::CLIENT_LINE, archived);
        let order = B::DB::CLIENT_ORDER;
        let rows = match what {
            Lookup::ClientsByPhone(phone) => {
                let sql = format!(
                    "{line} WHERE c.id IN (SELECT client_id FROM client_phones WHERE org_id = $1 AND phone = $2) {order}"
                );
                all::<B::DB>(&mut conn, sqlx::AssertSqlSafe(sql), args![org_id, phone]).await?
            }
            Lookup::ClientByRef { source, id } => {
                let sql = format!(
                    "{line} WHERE c.id IN (SELECT x.client_id FROM client_external_ids x \
                     JOIN sources s ON s.id = x.source_id WHERE s.org_id = $1 AND s.code = $2 AND x.ext_id = $3)"
                );
                all::<B::DB>(
                    &mut conn,
                    sqlx::AssertSqlSafe(sql),
                    args![org_id, source, id],
                )
                .await?
            }
            Lookup::Premise { source, id } => {
                return premise_with_accounts::<B::DB>(&mut conn, org_id, source, id, archived)
                    .await
                    .map(Some);
            }
        };
        let lines = rows.iter().map(client_line).collect::<Result<_, _>>()?;
        Ok(Some(lines))
    }

    async fn create_token(
        &self,
        org: Option<&str>,
        name: &str,
        hash: &str,
    ) -> Result<TokenRow, StoreError> {
        let mut writer = self.writer().await?;
        let org_id = match org {
            None => None,
            Some(code) => Some(
                one::<B::DB>(
                    &mut writer,
                    "INSERT INTO organizations (code) VALUES ($1) \
                     ON CONFLICT (code) DO UPDATE SET code = excluded.code RETURNING id",
                    args![code],
                )
                .await?
                .int(0)?,
            ),
        };
        let id = one::<B::DB>(
            &mut writer,
            "INSERT INTO api_tokens (org_id, name, hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            args![org_id, name, hash, now().as_str()],
        )
        .await?
        .int(0)?;
        let sql = format!("{TOKEN_COLUMNS} WHERE t.id = $1");
        let row = one::<B::DB>(&mut writer, sqlx::AssertSqlSafe(sql), args![id]).await?;
        token_row(&row)
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let mut conn = self.reader().await?;
        let sql = format!("{TOKEN_COLUMNS} ORDER BY t.id");
        let rows = all::<B::DB>(&mut conn, sqlx::AssertSqlSafe(sql), args![]).await?;
        rows.iter().map(token_row).collect()
    }

    async fn revoke_token(&self, id: i64) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let done = execute::<B::DB>(
            &mut writer,
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            args![now().as_str(), id],
        )
        .await?;
        Ok(done == 1)
    }

    async fn bearer(&self, hash: &str) -> Result<Option<Bearer>, StoreError> {
        let mut conn = self.reader().await?;
        let row = optional::<B::DB>(
            &mut conn,
            "SELECT t.org_id, o.code FROM api_tokens t LEFT JOIN organizations o ON o.id = t.org_id \
             WHERE t.hash = $1 AND t.revoked_at IS NULL",
            args![hash],
        )
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(match (row.opt_int(0)?, row.opt_text(1)?) {
            (Some(org_id), Some(code)) => Bearer::Organization { org_id, code },
            _ => Bearer::App,
        }))
    }

    async fn run(
        &self,
        run_id: i64,
        org: Option<&str>,
    ) -> Result<Option<(RunRow, Option<String>)>, StoreError> {
        let mut conn = self.reader().await?;
        let sql = format!("{RUN_COLUMNS} WHERE r.id = $1 AND ($2 IS NULL OR o.code = $2)");
        let row =
            optional::<B::DB>(&mut conn, sqlx::AssertSqlSafe(sql), args![run_id, org]).await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((run_row(&row)?, row.opt_text(9)?))),
        }
    }

    async fn create_user(
        &self,
        org: &str,
        login: &str,
        password_hash: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = begin_write::<B::DB>(&mut writer).await?;
        let taken = optional::<B::DB>(
            &mut tx,
            "SELECT id FROM users WHERE login = $1",
            args![login],
        )
        .await?;
        if taken.is_some() {
            return Ok(None);
        }
        let org_id = one::<B::DB>(
            &mut tx,
            "INSERT INTO organizations (code) VALUES ($1) \
             ON CONFLICT (code) DO UPDATE SET code = excluded.code RETURNING id",
            args![org],
        )
        .await?
        .int(0)?;
        let id = one::<B::DB>(
            &mut tx,
            "INSERT INTO users (org_id, login, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            args![org_id, login, password_hash, now().as_str()],
        )
        .await?
        .int(0)?;
        let sql = format!("{USER_COLUMNS} WHERE u.id = $1");
        let row = one::<B::DB>(&mut tx, sqlx::AssertSqlSafe(sql), args![id]).await?;
        let user = user_row(&row)?;
        tx.commit().await?;
        Ok(Some(user))
    }

    async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let mut conn = self.reader().await?;
        let c = B::DB::BYTEWISE;
        let sql = format!("{USER_COLUMNS} ORDER BY o.code{c}, u.login{c}");
        let rows = all::<B::DB>(&mut conn, sqlx::AssertSqlSafe(sql), args![]).await?;
        rows.iter().map(user_row).collect()
    }

    async fn remove_user(&self, login: &str) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = begin_write::<B::DB>(&mut writer).await?;
        // Explicitly, not by the foreign key's cascade: SQLite's writer runs without them.
        execute::<B::DB>(
            &mut tx,
            "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE login = $1)",
            args![login],
        )
        .await?;
        let removed =
            execute::<B::DB>(&mut tx, "DELETE FROM users WHERE login = $1", args![login]).await?;
        tx.commit().await?;
        Ok(removed == 1)
    }

    async fn password_hash(&self, login: &str) -> Result<Option<(i64, String)>, StoreError> {
        let mut conn = self.reader().await?;
        let row = optional::<B::DB>(
            &mut conn,
            "SELECT id, password_hash FROM users WHERE login = $1",
            args![login],
        )
        .await?;
        row.map(|row| Ok((row.int(0)?, row.text(1)?))).transpose()
    }

    async fn open_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf: &str,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        execute::<B::DB>(
            &mut writer,
            "INSERT INTO sessions (id_hash, user_id, csrf, last_seen, created_at) VALUES ($1, $2, $3, $4, $5)",
            args![id_hash, user_id, csrf, unix_now(), now().as_str()],
        )
        .await?;
        Ok(())
    }

    async fn session(
        &self,
        id_hash: &str,
        idle: Duration,
    ) -> Result<Option<SessionRow>, StoreError> {
        let row = {
            let mut conn = self.reader().await?;
            optional::<B::DB>(
                &mut conn,
                "SELECT s.user_id, u.login, u.org_id, o.code, s.csrf, s.last_seen
                   FROM sessions s JOIN users u ON u.id = s.user_id JOIN organizations o ON o.id = u.org_id
                  WHERE s.id_hash = $1",
                args![id_hash],
            )
            .await?
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let clock = unix_now();
        let idle_secs = i64::try_from(idle.as_secs()).unwrap_or(i64::MAX);
        let last_seen = row.int(5)?;
        if clock - last_seen > idle_secs {
            self.close_session(id_hash).await?;
            return Ok(None);
        }
        // The idle clock restarts at most once a minute: a page's every request need not
        // wait for the writer.
        if clock - last_seen >= 60 {
            let mut writer = self.writer().await?;
            execute::<B::DB>(
                &mut writer,
                "UPDATE sessions SET last_seen = $1 WHERE id_hash = $2",
                args![clock, id_hash],
            )
            .await?;
        }
        Ok(Some(SessionRow {
            user_id: row.int(0)?,
            login: row.text(1)?,
            org_id: row.int(2)?,
            organization: row.text(3)?,
            csrf: row.text(4)?,
        }))
    }

    async fn stored_pipelines(&self) -> Result<Vec<StoredPipeline>, StoreError> {
        let mut conn = self.reader().await?;
        let c = B::DB::BYTEWISE;
        let sql = format!(
            "SELECT o.code, p.name, p.definition, p.ftp_password \
             FROM pipelines p JOIN organizations o ON o.id = p.org_id ORDER BY p.name{c}"
        );
        let rows = all::<B::DB>(&mut conn, sqlx::AssertSqlSafe(sql), args![]).await?;
        rows.iter()
            .map(|row| {
                Ok(StoredPipeline {
                    organization: row.text(0)?,
                    name: row.text(1)?,
                    definition: row.text(2)?,
                    ftp_password: row.opt_text(3)?,
                })
            })
            .collect()
    }

    async fn save_pipeline(&self, p: &StoredPipeline, create: bool) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let mut tx = begin_write::<B::DB>(&mut writer).await?;
        let org_id = one::<B::DB>(
            &mut tx,
            "INSERT INTO organizations (code) VALUES ($1) \
             ON CONFLICT (code) DO UPDATE SET code = excluded.code RETURNING id",
            args![p.organization.as_str()],
        )
        .await?
        .int(0)?;
        let done = if create {
            let taken = optional::<B::DB>(
                &mut tx,
                "SELECT id FROM pipelines WHERE name = $1",
                args![p.name.as_str()],
            )
            .await?;
            if taken.is_some() {
                return Ok(false);
            }
            execute::<B::DB>(
                &mut tx,
                "INSERT INTO pipelines (org_id, name, definition, ftp_password, updated_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                args![
                    org_id,
                    p.name.as_str(),
                    p.definition.as_str(),
                    &p.ftp_password,
                    now().as_str()
                ],
            )
            .await?
        } else {
            execute::<B::DB>(
                &mut tx,
                "UPDATE pipelines SET definition = $1, ftp_password = COALESCE($2, ftp_password), \
                 updated_at = $3 WHERE org_id = $4 AND name = $5",
                args![
                    p.definition.as_str(),
                    &p.ftp_password,
                    now().as_str(),
                    org_id,
                    p.name.as_str()
                ],
            )
            .await?
        };
        tx.commit().await?;
        Ok(done == 1)
    }

    async fn delete_pipeline(&self, org: &str, name: &str) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let deleted = execute::<B::DB>(
            &mut writer,
            "DELETE FROM pipelines WHERE name = $1 AND org_id IN (SELECT id FROM organizations WHERE code = $2)",
            args![name, org],
        )
        .await?;
        Ok(deleted == 1)
    }

    async fn close_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        execute::<B::DB>(
            &mut writer,
            "DELETE FROM sessions WHERE id_hash = $1",
            args![id_hash],
        )
        .await?;
        Ok(())
    }
}

const USER_COLUMNS: &str = "SELECT u.id, o.code, u.login, u.created_at \
     FROM users u JOIN organizations o ON o.id = u.org_id";

/// Counts a chunk's applied records on its run's row in the chunk's own transaction, so that
/// the history says what the database holds whatever becomes of the process.
pub(super) async fn count_applied<DB: Dialect>(
    tx: &mut DB::Connection,
    scope: &Scope,
    applied: &ChunkApplied,
) -> Result<(), StoreError> {
    if let Some(run_id) = scope.run_id
        && !applied.outcomes.is_empty()
    {
        let records = i64::try_from(applied.outcomes.len()).unwrap_or(i64::MAX);
        execute::<DB>(
            tx,
            "UPDATE runs SET records = records + $1 WHERE id = $2",
            args![records, run_id],
        )
        .await?;
    }
    Ok(())
}

/// Closes the organization's runs that can no longer end on their own, as `interrupted`, and
/// frees their leases: runs whose process on this host is gone or whose own session ended
/// (PostgreSQL, any host), and runs that have not renewed since `silent_since` or whose lease
/// ran out before `clock` (a crashed process on another host). Their committed records are already counted on their rows.
async fn close_dead_runs<DB: Dialect>(
    tx: &mut DB::Connection,
    org_id: i64,
    (clock, silent_since): (i64, i64),
    now: &str,
) -> Result<(), StoreError> {
    let mut dead = Vec::new();
    let sql = format!(
        "SELECT r.id, r.holder, r.heartbeat, l.expires_at, {} FROM runs r \
         LEFT JOIN run_leases l ON l.run_id = r.id WHERE r.org_id = $1 AND r.status = 'running'",
        DB::SESSION_GONE
    );
    each::<DB>(tx, sqlx::AssertSqlSafe(sql), args![org_id], |row| {
        let gone = row
            .opt_text(1)?
            .as_deref()
            .and_then(Holder::from_column)
            .is_some_and(|h| h.is_gone());
        let silent = row.opt_int(2)?.is_none_or(|beat| beat < silent_since);
        let expired = row.opt_int(3)?.is_some_and(|until| until < clock);
        let session_gone = row.flag(4)?;
        if gone || silent || expired || session_gone {
            dead.push(row.int(0)?);
        }
        Ok(())
    })
    .await?;
    for run_id in dead {
        tracing::warn!(
            run_id,
            "the run's process is gone: the run is closed as interrupted"
        );
        execute::<DB>(
            tx,
            "UPDATE runs SET status = 'interrupted', finished_at = $1 WHERE id = $2",
            args![now, run_id],
        )
        .await?;
        execute::<DB>(
            tx,
            "DELETE FROM run_leases WHERE run_id = $1",
            args![run_id],
        )
        .await?;
    }
    Ok(())
}

fn user_row(row: &impl Columns) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id: row.int(0)?,
        organization: row.text(1)?,
        login: row.text(2)?,
        created_at: row.text(3)?,
    })
}

async fn org_id<DB: Dialect>(
    conn: &mut DB::Connection,
    org: &str,
) -> Result<Option<i64>, StoreError> {
    let row = optional::<DB>(
        conn,
        "SELECT id FROM organizations WHERE code = $1",
        args![org],
    )
    .await?;
    Ok(row.map(|row| row.int(0)).transpose()?)
}

/// A premise and its accounts as export lines; none when there is no such premise.
async fn premise_with_accounts<DB: Dialect>(
    conn: &mut DB::Connection,
    org_id: i64,
    source: &str,
    id: &str,
    archived: bool,
) -> Result<Vec<ExportLine>, StoreError> {
    let sql = with_archived(
        &format!(
            "{PREMISE_LINE} WHERE s.org_id = $1 AND s.code = $2 AND p.ext_id = $3 \
             AND p.archived_run IS NULL"
        ),
        archived,
    );
    let premise = optional::<DB>(conn, sqlx::AssertSqlSafe(sql), args![org_id, source, id]).await?;
    let Some(row) = premise else {
        return Ok(Vec::new());
    };
    let mut lines = vec![premise_line(&row)?];
    let c = DB::BYTEWISE;
    let sql = with_archived(
        &format!(
            "SELECT s.code, a.ext_id, a.number, a.area, a.residents, a.archived_run
               FROM accounts a JOIN sources s ON s.id = a.source_id
              WHERE a.premise_id = $1 AND a.archived_run IS NULL ORDER BY s.code{c}, a.ext_id{c}"
        ),
        archived,
    );
    for a in all::<DB>(conn, sqlx::AssertSqlSafe(sql), args![row.int(10)?]).await? {
        lines.push(ExportLine::Account {
            source: a.text(0)?,
            id: a.text(1)?,
            premise_id: id.to_owned(),
            number: a.text(2)?,
            area: a.opt_real(3)?,
            residents: a.opt_int(4)?,
            archived_run: a.opt_int(5)?,
        });
    }
    Ok(lines)
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

const RUN_COLUMNS: &str = "SELECT r.id, o.code AS organization, r.pipeline, r.trigger, r.started_at, \
     r.finished_at, r.status, r.records, r.mail, r.report FROM runs r JOIN organizations o ON o.id = r.org_id";

fn run_row(row: &impl Columns) -> Result<RunRow, StoreError> {
    let trigger = row.text(3)?;
    let status = row.text(6)?;
    Ok(RunRow {
        id: row.int(0)?,
        organization: row.text(1)?,
        pipeline: row.opt_text(2)?,
        trigger: Trigger::parse(&trigger)
            .ok_or_else(|| StoreError::Corrupt(format!("run trigger {trigger:?}")))?,
        started_at: row.text(4)?,
        finished_at: row.opt_text(5)?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("run status {status:?}")))?,
        records: row.int(7)?.unsigned_abs(),
        mail: row.opt_text(8)?,
    })
}

/// A premise as an export line (and its row id last); callers add `WHERE` and `ORDER BY`.
const PREMISE_LINE: &str =
    "SELECT s.code, p.ext_id, p.address, p.number, p.kind, p.floor, p.entrance, p.rooms,
        p.area, p.cadastral_number, p.id, p.archived_run
   FROM sources s JOIN premises p ON p.source_id = s.id";

fn premise_line(row: &impl Columns) -> Result<ExportLine, StoreError> {
    Ok(ExportLine::Premise {
        source: row.text(0)?,
        id: row.text(1)?,
        address: row.text(2)?,
        number: row.text(3)?,
        kind: row.text(4)?,
        floor: row.opt_int(5)?,
        entrance: row.opt_int(6)?,
        rooms: row.opt_int(7)?,
        area: row.opt_real(8)?,
        cadastral_number: row.opt_text(9)?,
        archived_run: row.opt_int(11)?,
    })
}

/// A client from the columns of [`Dialect::CLIENT_LINE`].
fn client_line(row: &impl Columns) -> Result<ExportLine, StoreError> {
    Ok(ExportLine::Client {
        name: row.text(0)?,
        phone: row.opt_text(1)?,
        email: row.opt_text(2)?,
        logged_in: row.flag(3)?,
        external_ids: from_json(row.text(4)?)?,
        premises: from_json(row.text(5)?)?,
        accounts: from_json(row.text(6)?)?,
    })
}

const TOKEN_COLUMNS: &str = "SELECT t.id, o.code AS organization, t.name, t.created_at, t.revoked_at \
     FROM api_tokens t LEFT JOIN organizations o ON o.id = t.org_id";

fn token_row(row: &impl Columns) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: row.int(0)?,
        organization: row.opt_text(1)?,
        name: row.text(2)?,
        created_at: row.text(3)?,
        revoked_at: row.opt_text(4)?,
    })
}

fn from_json<T: for<'de> serde::Deserialize<'de>>(text: String) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("link list {text:?}: {e}")))
}
