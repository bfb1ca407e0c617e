//! Crash safety: imports killed with SIGKILL at seeded random moments leave a database whose
//! integrity and foreign-key checks pass and whose history counts what it holds; the next
//! start closes the killed run as `interrupted`, and a rerun completes to an export identical
//! to a clean import's. Runs on SQLite, and on PostgreSQL when the suite does.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crm_import::store::{RunFilter, RunRow, RunStatus, Store};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::Row;

use crate::common::{Db, ORG, SRC};

const PAIRS: &str = "3000";
/// Databases killed into; each takes two kills (a fresh import, then its rerun) before the
/// rerun that completes: ten kills per run of the suite.
const ROUNDS: usize = 5;

fn crm_import(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crm-import"));
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn import(db: &Db, file: &str) -> Child {
    crm_import(&[
        "import",
        file,
        "--org",
        ORG,
        "--source",
        SRC,
        "--chunk-size",
        "100",
        "--db",
        &db.url,
    ])
    .spawn()
    .unwrap()
}

async fn history(db: &Db) -> Vec<RunRow> {
    let mut runs = db
        .store
        .runs(&RunFilter {
            limit: 100,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    runs.reverse();
    runs
}

/// SQLite's own check of the file (PostgreSQL keeps its pages itself, and enforces the
/// foreign keys that `Db::export` checks on SQLite).
async fn integrity(db: &Db) {
    if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let verdict: String = sqlx::query("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        pool.close().await;
        assert_eq!(verdict, "ok");
    }
}

/// Premises and cards the export holds: into an empty database each record made one.
async fn records(db: &Db) -> u64 {
    (db.of_type(ORG, "premise").await.len() + db.of_type(ORG, "client").await.len()) as u64
}

#[tokio::test]
async fn imports_killed_at_random_moments_are_completed_by_a_rerun() {
    let seed = std::env::var("CRM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_206u64);
    println!("CRM_CRASH_SEED={seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let clean = Db::new().await;
    let file = clean.dir.path().join("export.xml");
    let file = file.to_str().unwrap();
    let generated = crm_import(&[
        "generate",
        "--premises",
        PAIRS,
        "--clients",
        PAIRS,
        "--out",
        file,
    ])
    .status()
    .unwrap();
    assert!(generated.success());
    let began = Instant::now();
    let done = import(&clean, file).wait().unwrap();
    let whole = began.elapsed();
    assert_eq!(done.code(), Some(0));
    let expected = clean.export(ORG).await;
    let total = records(&clean).await;

    let mut mid_run = 0;
    for round in 0..ROUNDS {
        let db = Db::new().await;
        for kill in 0..2 {
            let at = Duration::from_secs_f64(whole.as_secs_f64() * rng.random_range(0.05..0.8));
            let before = history(&db).await.len();
            let mut child = import(&db, file);
            tokio::time::sleep(at).await;
            child.kill().unwrap();
            let status = child.wait().unwrap();
            let context = format!("seed {seed}, round {round}, kill {kill} after {at:?}");
            integrity(&db).await;
            let held = records(&db).await;
            let runs = history(&db).await;
            if runs.len() == before {
                // Killed before its run was recorded: it wrote nothing.
                continue;
            }
            let killed = runs.last().unwrap();
            if killed.status == RunStatus::Ok {
                // It finished before the signal.
                assert!(status.code().is_none_or(|c| c == 0), "{context}");
                continue;
            }
            mid_run += 1;
            assert_eq!(killed.status, RunStatus::Running, "{context}");
            if kill == 0 {
                // Into an empty database every record made one card or premise.
                assert_eq!(killed.records, held, "{context}: committed records counted");
            } else {
                assert!(killed.records <= total, "{context}");
            }
        }
        let done = import(&db, file).wait().unwrap();
        assert_eq!(
            done.code(),
            Some(0),
            "seed {seed}, round {round}: the rerun"
        );
        integrity(&db).await;
        assert!(
            db.export(ORG).await == expected,
            "seed {seed}, round {round}: export differs"
        );
        let runs = history(&db).await;
        assert_eq!(runs.last().unwrap().status, RunStatus::Ok);
        assert_eq!(runs.last().unwrap().records, total);
        for run in &runs[..runs.len() - 1] {
            assert!(
                matches!(run.status, RunStatus::Interrupted | RunStatus::Ok),
                "seed {seed}, round {round}: run {} left {:?}",
                run.id,
                run.status
            );
        }
    }
    assert!(
        mid_run >= ROUNDS,
        "seed {seed}: only {mid_run} kills hit a run mid-way"
    );
}
