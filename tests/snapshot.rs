//! `mode = "snapshot"`: after a run that ended ok, what the files left out of their source is
//! archived (kept, out of exports and reads unless asked for), brought back when it returns,
//! and never more than `max_archive_percent` at once. Cards are never deleted.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

/// Premises P-1 … P-20 (one account each) and clients C-1 … C-30 (one link each), without
/// the premises and clients `left_out` names.
pub fn export(left_out: &[&str]) -> String {
    let premises: String = (1..=20)
        .map(|i| format!("P-{i}"))
        .filter(|id| !left_out.contains(&id.as_str()))
        .map(|id| premise(&id, &[(&id.replace('P', "A"), &format!("11{}", &id[2..]))]))
        .collect();
    let clients: String = (1..=30)
        .map(|i| (i, format!("C-{i}")))
        .filter(|(_, id)| !left_out.contains(&id.as_str()))
        .map(|(i, id)| {
            let link = format!("<premise ref=\"P-{}\" role=\"owner\"/>", i % 20 + 1);
            client(
                &id,
                &format!("Клиент {i}"),
                Some(&format!("+7916{i:07}")),
                &link,
            )
        })
        .collect();
    doc(&premises, &clients)
}

/// `snapshot.toml` in `dir`: a snapshot pipeline over `export.xml` there, with `extra` keys.
fn snapshot_pipeline(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("snapshot.toml"),
        format!(
            "name = \"uo-1-full\"\norganization = \"{ORG}\"\nsource = \"{SRC}\"\n\
             files = \"export.xml\"\nsettle_secs = 0\nmode = \"snapshot\"\n{extra}"
        ),
    )
    .unwrap();
}

/// Runs the snapshot pipeline over `xml`.
fn run(db: &Db, dir: &Path, xml: &str) -> Ran {
    std::fs::write(dir.join("export.xml"), xml).unwrap();
    crm_import_in(
        db,
        dir,
        &["run", "snapshot.toml", "--results", "results.csv"],
    )
}

/// A report's `archived` or `restored` counts: premises, accounts, client links.
fn counts(report: &Value, which: &str) -> [u64; 3] {
    let a = &report[which];
    [&a["premises"], &a["accounts"], &a["links"]].map(|n| n.as_u64().unwrap_or(0))
}

#[tokio::test]
async fn what_a_snapshot_leaves_out_is_archived_then_restored_when_it_returns() {
    let db = Db::new().await;
    let dir = tempfile::tempdir().unwrap();
    snapshot_pipeline(dir.path(), "");
    let first = run(&db, dir.path(), &export(&[]));
    assert_eq!(first.code, Some(0), "{}", first.output);
    assert_eq!(counts(&first.report, "archived"), [0, 0, 0]);
    let whole = db.export(ORG).await;

    // P-20 (with A-20) and C-19 (whose link was to P-20) are gone from the file: 3 of the
    // source's 70 rows, under the 10 % default.
    let second = run(&db, dir.path(), &export(&["P-20", "C-19"]));
    assert_eq!(second.code, Some(0), "{}", second.output);
    assert_eq!(
        counts(&second.report, "archived"),
        [1, 1, 1],
        "{}",
        second.report
    );
    assert!(
        second
            .output
            .contains("archived: 1 premises, 1 accounts, 1 client links")
    );
    let after = db.export(ORG).await;
    assert!(!after.contains("\"P-20\""), "{after}");
    assert!(!after.contains("\"A-20\""), "{after}");
    let c19 = after
        .lines()
        .find(|l| l.contains("\"id\":\"C-19\""))
        .expect("the card stays");
    assert!(
        c19.contains("\"premises\":[]"),
        "its link is archived: {c19}"
    );
    // Asked for, the archived rows are there, marked with the run that archived them.
    let all = crm_import_in(
        &db,
        dir.path(),
        &["export", "--org", ORG, "--include-archived"],
    );
    let p20 = all
        .output
        .lines()
        .find(|l| l.contains("\"id\":\"P-20\""))
        .expect("an archived premise is kept");
    assert!(p20.contains("\"archived_run\":2"), "{p20}");
    let (store, org) = (&db.store, ORG);
    use crm_import::store::{Lookup, Store};
    let premise = Lookup::Premise {
        source: SRC.into(),
        id: "P-20".into(),
    };
    assert!(
        store
            .lookup(org, &premise, false)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .lookup(org, &premise, true)
            .await
            .unwrap()
            .unwrap()
            .len(),
        2
    );

    // The whole file again: everything comes back, and says so.
    let third = run(&db, dir.path(), &export(&[]));
    assert_eq!(third.code, Some(0), "{}", third.output);
    assert_eq!(
        counts(&third.report, "restored"),
        [1, 1, 1],
        "{}",
        third.report
    );
    assert_eq!(counts(&third.report, "archived"), [0, 0, 0]);
    let results = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
    assert!(
        results
            .lines()
            .any(|l| l.contains(";premise;P-20;restored;")),
        "{results}"
    );
    assert_eq!(db.export(ORG).await, whole);
}

#[tokio::test]
async fn a_snapshot_that_would_archive_too_much_archives_nothing() {
    let db = Db::new().await;
    let dir = tempfile::tempdir().unwrap();
    snapshot_pipeline(dir.path(), "max_archive_percent = 5\n");
    assert_eq!(run(&db, dir.path(), &export(&[])).code, Some(0));
    let whole = db.export(ORG).await;
    // Five premises, their accounts and the links of the five clients linked to them: 15 of
    // the source's 70 rows.
    let half: Vec<String> = (16..=20)
        .map(|i| format!("P-{i}"))
        .chain((15..=19).map(|i| format!("C-{i}")))
        .collect();
    let half: Vec<&str> = half.iter().map(String::as_str).collect();
    let shrunk = run(&db, dir.path(), &export(&half));
    assert_eq!(shrunk.code, Some(1), "{}", shrunk.output);
    assert_eq!(shrunk.report["error"]["code"], "snapshot_too_large");
    let message = shrunk.report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("leaves out 15 of the source's 70")
            && message.contains("nothing was archived"),
        "{message}"
    );
    assert_eq!(db.export(ORG).await, whole, "nothing was archived");
}
