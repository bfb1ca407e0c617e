//! Both backends give the same result: the same generated export imported into SQLite and
//! into PostgreSQL exports the same bytes, then re-imports as all `unchanged` on both.
//! Runs in the PostgreSQL suite (`CRM_TEST_POSTGRES`, set by `.ci/run`).

use crm_import::generate::{self, Spec};

use crate::common::*;

/// Generated premises and clients per backend: 50,000 of each, the 100,000 records
/// (about 45 s in a debug build with the set-based path); `CRM_TEST_BACKEND_PAIRS` changes it.
fn pairs() -> u64 {
    std::env::var("CRM_TEST_BACKEND_PAIRS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000)
}

#[tokio::test]
async fn a_generated_import_exports_the_same_bytes_on_both_backends() {
    let Some(server) = postgres() else {
        eprintln!("SKIPPED: set CRM_TEST_POSTGRES to compare the backends (.ci/run does)");
        return;
    };
    let lite = Db::on(None).await;
    let pg = Db::on(Some(server)).await;
    let path = lite.dir.path().join("generated.xml");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let n = pairs();
    generate::write(
        Spec {
            premises: n,
            clients: n,
            seed: 7,
        },
        &mut file,
        |_| {},
    )
    .unwrap();
    drop(file);
    let path = path.to_string_lossy().into_owned();
    for db in [&lite, &pg] {
        let first = db
            .import_files(ORG, SRC, std::slice::from_ref(&path), 1000)
            .await;
        assert!(first.is_ok(), "{}", first.summary());
        assert_eq!(first.records, 2 * n);
    }
    let (a, b) = (lite.export(ORG).await, pg.export(ORG).await);
    assert!(
        a.lines().count() as u64 > 2 * n,
        "premises, accounts and clients"
    );
    assert!(a == b, "the exports differ: {}", first_difference(&a, &b));
    for db in [&lite, &pg] {
        let again = db
            .import_files(ORG, SRC, std::slice::from_ref(&path), 1000)
            .await;
        assert!(again.counts.all_unchanged(), "{}", again.summary());
    }
}

fn first_difference(a: &str, b: &str) -> String {
    a.lines()
        .zip(b.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| format!("line {}:\n  sqlite:   {x}\n  postgres: {y}", i + 1))
        .unwrap_or_else(|| format!("{} vs {} lines", a.lines().count(), b.lines().count()))
}

/// A bulk load outruns autovacuum's analyze (here switched off to make sure): the next run
/// on PostgreSQL refreshes the planner's statistics before its first chunk, where a rerun
/// after a crash mid-load used to plan its look-ups for empty tables and run six times slower.
#[tokio::test]
async fn postgres_statistics_are_refreshed_before_a_run_after_a_bulk_load() {
    use sqlx::Row;
    let Some(server) = postgres() else {
        eprintln!("SKIPPED: PostgreSQL's statistics need CRM_TEST_POSTGRES (.ci/run sets it)");
        return;
    };
    let db = Db::on(Some(server)).await;
    for table in ["premises", "accounts", "clients"] {
        db.execute(&format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false)"
        ))
        .await;
    }
    let path = db.dir.path().join("generated.xml");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let spec = Spec {
        premises: 5_000,
        clients: 5_000,
        seed: 3,
    };
    generate::write(spec, &mut file, |_| {}).unwrap();
    drop(file);
    let path = path.to_string_lossy().into_owned();
    // The bulk load, by another process; then every premise changes behind the
    // statistics' back.
    let loaded = std::process::Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .args([
            "import", &path, "--org", ORG, "--source", SRC, "--db", &db.url,
        ])
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{loaded:?}");
    db.execute("UPDATE premises SET rooms = rooms").await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let premises = "SELECT c.reltuples::float8, s.n_mod_since_analyze, s.analyze_count \
                    FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid \
                    WHERE c.oid = 'premises'::regclass";
    let mut analyzed = None;
    for _ in 0..200 {
        let row = sqlx::query(premises).fetch_one(&pool).await.unwrap();
        let (tuples, changed, count): (f64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if changed as f64 > 1000.0 + 0.2 * tuples.max(0.0) {
            analyzed = Some(count);
            break;
        }
        // The sessions that changed the table report it as they close.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let analyzed = analyzed.expect("the table's changes since its statistics show");

    let rerun = db
        .import_files(ORG, SRC, std::slice::from_ref(&path), 1000)
        .await;
    assert!(rerun.counts.all_unchanged(), "{}", rerun.summary());
    let row = sqlx::query(premises).fetch_one(&pool).await.unwrap();
    let (tuples, count): (f64, i64) = (row.get(0), row.get(2));
    assert!(count > analyzed, "the rerun took the statistics first");
    assert_eq!(tuples, 5_000.0);
}
