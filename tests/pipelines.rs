//! Pipeline files: every shipped one loads; a bad one lists all its errors; `run` imports.

use std::process::Command;

use crm_import::config;

#[test]
fn every_shipped_pipeline_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let pipeline = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!pipeline.files.addresses.is_empty());
            loaded += 1;
        }
    }
    assert!(loaded >= 2, "pipelines/ has the demo and the example");
}

#[test]
fn a_bad_pipeline_lists_all_its_errors_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "name = \"x\"\nsource = 1\nfiles = []\nchunk_size = -5\nshedule = \"0 3 * * *\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .args(["run", path.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "shedule: unknown key",
        "organization: is required",
        "source: must be a string",
        "files: names no address",
        "chunk_size: must be",
    ] {
        assert!(stderr.contains(key), "{key} missing in:\n{stderr}");
    }
    assert!(stderr.contains("5 error(s)"), "{stderr}");
}

#[test]
fn run_imports_the_demo_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/demo.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .args(["run", pipeline.to_str().unwrap(), "--report-json", "r.json"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("import OK: 7 records"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["counts"]["client"]["created"], 4);
}

#[tokio::test]
async fn a_local_catalogue_is_imported_in_name_order() {
    use crate::common::*;
    let db = Db::new().await;
    let folder = db.dir.path().join("exports");
    std::fs::create_dir(&folder).unwrap();
    let write = |name: &str, who: &str| {
        std::fs::write(
            folder.join(name),
            doc("", &client("C-1", who, Some("+79160000001"), "")),
        )
        .unwrap()
    };
    write("2026-11-02.xml", "Позже");
    write("2026-11-01.xml", "Раньше");
    std::fs::write(folder.join("notes.txt"), "not an export").unwrap();
    let pattern = format!("{}/*.xml", folder.display());
    let report = db.import_files(ORG, SRC, &[pattern], 1000).await;
    assert!(report.is_ok(), "{}", report.summary());
    let files: Vec<String> = report.files.iter().map(|f| f.file.clone()).collect();
    assert_eq!(
        files,
        vec![
            folder.join("2026-11-01.xml").display().to_string(),
            folder.join("2026-11-02.xml").display().to_string()
        ]
    );
    assert_eq!(db.client(ORG, SRC, "C-1").await.unwrap()["name"], "Позже");
}

/// A local file whose size changes between the two looks `settle_secs` apart is not read
/// this time: a warning, the run ends ok, and the file is left as it is.
#[tokio::test]
async fn a_local_file_still_being_written_is_left_for_the_next_run() {
    use crate::common::*;
    use crm_import::pipeline::{self, Options};
    use crm_import::source::Files;
    use crm_import::store::Store;
    let db = Db::new().await;
    let path = db.dir.path().join("growing.xml");
    let whole = clients(1, 200);
    std::fs::write(&path, &whole[..500]).unwrap();
    let appender = {
        let path = path.clone();
        let rest = whole.as_bytes()[500..].to_vec();
        std::thread::spawn(move || {
            for part in rest.chunks(rest.len() / 20 + 1) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                std::io::Write::write_all(&mut file, part).unwrap();
            }
        })
    };
    let files = Files {
        settle: std::time::Duration::from_secs(1),
        ..Files::local(&[path.display().to_string()])
    };
    let scope = db.store.scope(ORG, SRC).await.unwrap();
    let report = pipeline::import_files(&db.store, &scope, &files, Options::default()).await;
    appender.join().unwrap();
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(report.records, 0);
    assert_eq!(report.warnings[0].code.as_str(), "file_still_being_written");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        whole,
        "the file is left as it is"
    );

    // Written to the end, it settles and is read.
    let report = pipeline::import_files(&db.store, &scope, &files, Options::default()).await;
    assert!(
        report.is_ok() && report.warnings_total == 0,
        "{}",
        report.summary()
    );
    assert_eq!(report.records, 200);
}

/// `min_records` and `max_shrink_percent`: an export with a fraction of last night's records
/// is a broken export, refused before any of it is applied, with both numbers in the message.
#[tokio::test]
async fn a_shrunken_export_is_refused_before_anything_is_applied() {
    use crate::common::*;
    use crm_import::pipeline::Options;
    use crm_import::run::{Job, run_import};
    use crm_import::source::Files;
    use crm_import::store::Trigger;
    let db = Db::new().await;
    let path = db.dir.path().join("clients.xml");
    let files = Files {
        min_records: Some(30),
        max_shrink_percent: Some(50),
        ..Files::local(&[path.display().to_string()])
    };
    let run = |xml: String| {
        std::fs::write(&path, xml).unwrap();
        let (db, files) = (&db, &files);
        async move {
            let job = Job {
                pipeline: Some("nightly"),
                org: ORG,
                source: SRC,
                files,
                trigger: Trigger::Schedule,
            };
            run_import(&db.store, &job, Options::default())
                .await
                .unwrap()
                .report
        }
    };
    let first = run(clients(1, 100)).await;
    assert!(first.is_ok(), "{}", first.summary());

    // A fifth of last night's file, its first record renamed: nothing of it is applied.
    let renamed = clients(1, 20).replacen("<name>", "<name>Переименован ", 1);
    let shrunk = run(renamed.clone()).await;
    let error = shrunk.error.as_ref().expect("refused");
    assert_eq!(error.code, "too_few_records", "{}", shrunk.summary());
    assert!(
        error
            .message
            .contains("has 20 records, fewer than min_records = 30"),
        "{}",
        error.message
    );
    assert!(
        error
            .message
            .contains("the last successful run read 100 from it"),
        "{}",
        error.message
    );
    assert_eq!(shrunk.records, 0);
    let name = db.client(ORG, SRC, "C-1").await.unwrap()["name"].clone();
    assert!(!name.as_str().unwrap().contains("Переименован"), "{name}");

    // Above min_records but 60 % fewer than last night: refused as shrunk.
    let shrunk = run(clients(1, 40)).await;
    let error = shrunk.error.as_ref().expect("refused");
    assert_eq!(error.code, "export_shrunk", "{}", shrunk.summary());
    assert!(
        error
            .message
            .contains("has 40 records; the last successful run read 100 from it: 60% fewer"),
        "{}",
        error.message
    );

    // 40 % fewer is within max_shrink_percent = 50.
    let fewer = run(clients(1, 60)).await;
    assert!(fewer.is_ok(), "{}", fewer.summary());
}
