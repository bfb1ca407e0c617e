//! Test helpers: a real SQLite file per test, XML builders, the export as JSON values.

use std::path::{Path, PathBuf};

use crm_import::pipeline::Options;
use crm_import::report::RunReport;
use crm_import::run::{Job, run_import};
use crm_import::source::Files;
use crm_import::store::Trigger;
use crm_import::store::{self, AnyStore, Store};
use serde_json::Value;
use sqlx::Row;
use tempfile::TempDir;

pub const ORG: &str = "uo-1";
pub const SRC: &str = "1c";

pub fn testdata(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

/// A test's own database: an SQLite file in its folder, or — when `CRM_TEST_POSTGRES` names
/// a PostgreSQL server (`postgres://postgres@127.0.0.1:5432/test`) — its own schema there,
/// so the same test bodies run against both backends, in parallel.
pub struct Db {
    pub dir: TempDir,
    pub store: AnyStore,
    /// The URL that reaches this test's database (for child processes and second stores).
    pub url: String,
    files: std::cell::Cell<u32>,
}

/// The PostgreSQL server the suite runs against, if any.
pub fn postgres() -> Option<String> {
    std::env::var("CRM_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

impl Db {
    pub async fn new() -> Db {
        Db::on(postgres()).await
    }

    /// A database on this PostgreSQL server, or an SQLite file with `None`.
    pub async fn on(server: Option<String>) -> Db {
        Db::tuned(server, &store::Settings::default()).await
    }

    /// As [`Db::on`], with the store's tuning given.
    pub async fn tuned(server: Option<String>, settings: &store::Settings) -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = match server {
            None => format!("sqlite:{}", dir.path().join("crm.db").display()),
            Some(server) => {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let schema = format!("t_{}_{n}", std::process::id());
                let admin = sqlx::PgPool::connect(&server).await.unwrap();
                for sql in [
                    format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                    format!("CREATE SCHEMA {schema}"),
                ] {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&admin)
                        .await
                        .unwrap();
                }
                let sep = if server.contains('?') { '&' } else { '?' };
                format!("{server}{sep}options=-c%20search_path%3D{schema}")
            }
        };
        Db::at(dir, url, settings).await
    }

    /// The store over `url`, a database the test made in `dir` (migrated on open).
    pub async fn at(dir: TempDir, url: String, settings: &store::Settings) -> Db {
        let store = store::open(&url, settings).await.unwrap();
        Db {
            dir,
            store,
            url,
            files: std::cell::Cell::new(0),
        }
    }

    /// Writes an export into the test's folder and returns its path.
    pub fn file(&self, xml: &str) -> String {
        let n = self.files.get() + 1;
        self.files.set(n);
        let path: PathBuf = self.dir.path().join(format!("export-{n}.xml"));
        std::fs::write(&path, xml).unwrap();
        path.to_string_lossy().into_owned()
    }

    pub async fn import(&self, xml: &str) -> RunReport {
        self.import_as(ORG, SRC, xml).await
    }

    pub async fn import_as(&self, org: &str, source: &str, xml: &str) -> RunReport {
        let path = self.file(xml);
        self.import_files(org, source, &[path], 1000).await
    }

    pub async fn import_files(
        &self,
        org: &str,
        source: &str,
        files: &[String],
        chunk_size: usize,
    ) -> RunReport {
        run_import(
            &self.store,
            &Job {
                pipeline: None,
                org,
                source,
                files: &Files::local(files),
                trigger: Trigger::Manual,
            },
            Options {
                chunk_size,
                ..Options::default()
            },
        )
        .await
        .unwrap()
        .report
    }

    /// Runs a statement on this test's database directly (to play a crashed process).
    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    }

    /// A number a query on this test's database returns.
    pub async fn count(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
        }
    }

    /// The export, after checking that no row refers to a missing one: SQLite's importer
    /// writes without enforcing foreign keys, so every test that looks at the data checks
    /// them here (PostgreSQL enforces them).
    pub async fn export(&self, org: &str) -> String {
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            let dangling: Vec<String> = sqlx::query("PRAGMA foreign_key_check")
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    let table: String = row.get(0);
                    let rowid: Option<i64> = row.get(1);
                    let parent: String = row.get(2);
                    format!("{table} row {rowid:?} → missing {parent}")
                })
                .collect();
            pool.close().await;
            assert!(dangling.is_empty(), "dangling references: {dangling:?}");
        }
        let mut out = Vec::new();
        self.store.export(org, false, &mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    pub async fn lines(&self, org: &str) -> Vec<Value> {
        self.export(org)
            .await
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub async fn of_type(&self, org: &str, kind: &str) -> Vec<Value> {
        self.lines(org)
            .await
            .into_iter()
            .filter(|l| l["type"] == kind)
            .collect()
    }

    /// The card that carries this external id, if any.
    pub async fn client(&self, org: &str, source: &str, id: &str) -> Option<Value> {
        self.of_type(org, "client").await.into_iter().find(|c| {
            c["external_ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["source"] == source && x["id"] == id)
        })
    }

    pub async fn login(&self, phone: &str) -> u64 {
        self.store.mark_logged_in(phone).await.unwrap()
    }
}

pub fn doc(premises: &str, clients: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<crm-import version=\"1\">\n<premises>\n{premises}</premises>\n<clients>\n{clients}</clients>\n</crm-import>\n"
    )
}

/// A premise with accounts given as (id, number).
pub fn premise(id: &str, accounts: &[(&str, &str)]) -> String {
    let accounts: String = accounts
        .iter()
        .map(|(a, n)| format!("<account id=\"{a}\"><number>{n}</number></account>"))
        .collect();
    format!(
        "<premise id=\"{id}\"><address>Казань, ул. Ленина, д. 1</address><number>{id}</number><accounts>{accounts}</accounts></premise>\n"
    )
}

/// A client; `links` is raw XML such as `<premise ref="P-1" role="owner"/>`.
pub fn client(id: &str, name: &str, phone: Option<&str>, links: &str) -> String {
    let phone = phone
        .map(|p| format!("<phone>{p}</phone>"))
        .unwrap_or_default();
    format!("<client id=\"{id}\"><name>{name}</name>{phone}{links}</client>\n")
}

pub fn error_code(report: &RunReport) -> Option<String> {
    report.error.as_ref().map(|e| e.code.clone())
}

/// Clients `C-from` … `C-to` with distinct valid phones, as one export.
pub fn clients(from: usize, to: usize) -> String {
    let clients: String = (from..=to)
        .map(|i| {
            client(
                &format!("C-{i}"),
                &format!("Клиент {i}"),
                Some(&format!("+7916{i:07}")),
                "",
            )
        })
        .collect();
    doc("", &clients)
}

/// What the binary did, run in a folder against a test's database.
pub struct Ran {
    pub code: Option<i32>,
    /// Its standard output, then its standard error.
    pub output: String,
    /// The JSON report it wrote to `report.json` in the folder, if it wrote one.
    pub report: Value,
}

/// Runs `crm-import ARGS --db <db's URL>` in `dir` (with `--report-json report.json` for
/// `import` and `run`).
pub fn crm_import_in(db: &Db, dir: &Path, args: &[&str]) -> Ran {
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_crm-import"));
    command.args(args).args(["--db", &db.url]).current_dir(dir);
    if matches!(args.first(), Some(&"import" | &"run")) {
        command.args(["--report-json", "report.json"]);
    }
    let out = command.output().unwrap();
    Ran {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        report: std::fs::read_to_string(&report)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
    }
}
