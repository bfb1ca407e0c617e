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
