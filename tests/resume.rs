//! `--resume`: a halted import continues after the fix, skipping the records the failed run
//! committed without applying them again — and only when the file still reads the same up to
//! there. Local files (`import --resume RUN_ID`) and HTTP links (`run --resume`), on the suite's
//! backend; the result is a clean import's.

use std::path::Path;

use axum::Router;
use axum::routing::get;
use serde_json::Value;

use crate::common::*;

/// 20 premises and 300 clients; client `bad` has a phone that is not one.
pub fn export(bad: Option<usize>) -> String {
    let premises: String = (1..=20)
        .map(|i| {
            premise(
                &format!("P-{i}"),
                &[(&format!("A-{i}"), &format!("11000{i:05}"))],
            )
        })
        .collect();
    let clients: String = (1..=300)
        .map(|i| {
            let phone = if Some(i) == bad {
                "звоните вечером".to_owned()
            } else {
                format!("+7916{i:07}")
            };
            let link = format!("<premise ref=\"P-{}\" role=\"owner\"/>", i % 20 + 1);
            client(
                &format!("C-{i}"),
                &format!("Клиент {i}"),
                Some(&phone),
                &link,
            )
        })
        .collect();
    doc(&premises, &clients)
}

fn import(db: &Db, dir: &Path, extra: &[&str]) -> Ran {
    let mut args = vec![
        "import",
        "export.xml",
        "--org",
        ORG,
        "--source",
        SRC,
        "--chunk-size",
        "50",
    ];
    args.extend_from_slice(extra);
    crm_import_in(db, dir, &args)
}

/// The export of a clean import of the fixed file.
pub async fn clean() -> String {
    let db = Db::new().await;
    db.import(&export(None)).await;
    db.export(ORG).await
}

fn codes(report: &Value) -> Vec<&str> {
    report["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|w| w["code"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_fixed_file_resumes_where_the_failed_run_halted() {
    let db = Db::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.xml");
    std::fs::write(&file, export(Some(250))).unwrap();
    let first = import(&db, dir.path(), &[]);
    assert_eq!(first.code, Some(1), "{}", first.output);
    assert_eq!(first.report["error"]["code"], "invalid_phone");
    assert_eq!(first.report["records"], 20 + 249, "{}", first.output);
    let mark = &first.report["files"][0]["end"];
    assert_eq!(
        mark["record"], 269,
        "the run kept where it committed to: {mark}"
    );

    // The phone is fixed; everything before client 250 reads as it did.
    std::fs::write(&file, export(None)).unwrap();
    let resumed = import(&db, dir.path(), &["--resume", "1"]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.output);
    assert_eq!(resumed.report["records"], 51, "C-250 … C-300 only");
    assert_eq!(resumed.report["counts"]["client"]["created"], 51);
    assert_eq!(
        resumed.report["counts"]["premise"]["unchanged"], 0,
        "the committed records were skipped, not applied again"
    );
    assert_eq!(resumed.report["counts"]["client"]["unchanged"], 0);
    assert!(
        codes(&resumed.report).contains(&"resumed"),
        "{}",
        resumed.report
    );
    assert_eq!(resumed.report["files"][0]["end"]["record"], 320);
    assert_eq!(db.export(ORG).await, clean().await);

    // The resumed run ended ok: there is nothing to resume from it.
    let again = import(&db, dir.path(), &["--resume", "2"]);
    assert_eq!(again.code, Some(2), "{}", again.output);
    assert!(
        again.output.contains("nothing to continue"),
        "{}",
        again.output
    );
    // Another organization's runs are not found.
    let theirs = crm_import_in(
        &db,
        dir.path(),
        &[
            "import",
            "export.xml",
            "--org",
            "uo-2",
            "--source",
            SRC,
            "--resume",
            "1",
        ],
    );
    assert_eq!(theirs.code, Some(2), "{}", theirs.output);
    assert!(theirs.output.contains("no such run"), "{}", theirs.output);
}

#[tokio::test]
async fn a_file_changed_before_the_halt_is_refused_and_nothing_applied() {
    let db = Db::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.xml");
    std::fs::write(&file, export(Some(250))).unwrap();
    assert_eq!(import(&db, dir.path(), &[]).code, Some(1));
    let before = db.export(ORG).await;

    // Client 10's name changed: a different file, though just as long.
    let changed = export(None).replace("Клиент 10<", "Клиент 1X<");
    std::fs::write(&file, changed).unwrap();
    let resumed = import(&db, dir.path(), &["--resume", "1"]);
    assert_eq!(resumed.code, Some(1), "{}", resumed.output);
    assert_eq!(resumed.report["error"]["code"], "resume_mismatch");
    let message = resumed.report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("is not the file run 1 read") && message.contains("without --resume"),
        "{message}"
    );
    assert_eq!(resumed.report["records"], 0);
    assert_eq!(db.export(ORG).await, before, "nothing was applied");

    // A file cut before the mark is not the same file either.
    let cut = export(None);
    std::fs::write(
        &file,
        doc(
            &cut[cut.find("<premise ").unwrap()..cut.find("</premises>").unwrap()],
            "",
        ),
    )
    .unwrap();
    let resumed = import(&db, dir.path(), &["--resume", "1"]);
    assert_eq!(
        resumed.report["error"]["code"], "resume_mismatch",
        "{}",
        resumed.output
    );
    assert_eq!(db.export(ORG).await, before);
}

// The server answers while the test waits on the binary: a second worker thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_over_http_resumes_its_last_failed_run() {
    let served = std::sync::Arc::new(std::sync::Mutex::new(export(Some(250))));
    let body = served.clone();
    let router = Router::new().route(
        "/export.xml",
        get(move || {
            let text = body.lock().unwrap().clone();
            async move { ([("content-type", "application/xml")], text) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let db = Db::new().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nightly.toml"),
        format!(
            "name = \"nightly\"\norganization = \"{ORG}\"\nsource = \"{SRC}\"\n\
             files = \"http://{addr}/export.xml\"\nchunk_size = 50\nsettle_secs = 0\n"
        ),
    )
    .unwrap();
    let run = |resume: bool| {
        let mut args = vec!["run", "nightly.toml"];
        if resume {
            args.push("--resume");
        }
        crm_import_in(&db, dir.path(), &args)
    };
    let first = run(false);
    assert_eq!(first.code, Some(1), "{}", first.output);
    assert_eq!(first.report["error"]["code"], "invalid_phone");
    *served.lock().unwrap() = export(None);
    let resumed = run(true);
    assert_eq!(resumed.code, Some(0), "{}", resumed.output);
    assert_eq!(resumed.report["records"], 51);
    assert_eq!(db.export(ORG).await, clean().await);
    // The pipeline's last run is ok now: nothing to resume.
    let again = run(true);
    assert_eq!(again.code, Some(2), "{}", again.output);
}
