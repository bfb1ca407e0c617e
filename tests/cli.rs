//! The binary as a user runs it: exit codes (SPEC §6), the summary, the JSON report.

use std::process::{Command, Output};

use crate::common::*;

fn crm_import(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn import_prints_the_summary_writes_the_report_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let demo = testdata("demo.xml");
    let out = crm_import(
        &[
            "import",
            &demo,
            "--org",
            "uo-1",
            "--source",
            "1c",
            "--report-json",
            "report.json",
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.contains("import OK: 7 records applied"), "{text}");
    assert!(text.contains("clients:  4 created"), "{text}");
    assert!(
        dir.path().join("crm.db").exists(),
        "the default database is sqlite:crm.db"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["status"], "ok");
    assert_eq!(report["records"], 7);
    assert_eq!(report["counts"]["premise"]["created"], 3);
    assert_eq!(report["error"], serde_json::Value::Null);

    let export = crm_import(&["export", "--org", "uo-1"], dir.path());
    assert_eq!(export.status.code(), Some(0));
    assert_eq!(stdout(&export).lines().count(), 10);
}

#[test]
fn an_import_error_exits_1_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let bad = testdata("defects/invalid_phone.xml");
    let out = crm_import(
        &[
            "import",
            &bad,
            "--org",
            "uo-1",
            "--source",
            "1c",
            "--report-json",
            "r.json",
            "--db",
            "sqlite:x.db",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("import ERROR: 3 records applied"), "{text}");
    assert!(text.contains("error: invalid_phone in"), "{text}");
    assert!(text.contains("record 4 (C-2), field phone"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["status"], "error");
    assert_eq!(report["error"]["code"], "invalid_phone");
    assert_eq!(report["error"]["record_index"], 4);
    assert_eq!(report["error"]["line"], 20);
    assert_eq!(report["error"]["column"], 5);
}

#[test]
fn check_lists_every_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.xml");
    let xml = doc(
        "<premise id=\"P-1\"><number>1</number></premise>\n",
        &format!(
            "{}{}{}",
            client("C-1", "Иванов", Some("12"), ""),
            client("C-2", "Петров", Some("+79161234567"), ""),
            client("C-3", "", Some("+79161234568"), "")
        ),
    );
    std::fs::write(&file, xml).unwrap();
    let out = crm_import(&["check", file.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 3, "{text}");
    assert!(
        errors[0].contains("missing_field") && errors[0].contains("(P-1)"),
        "{text}"
    );
    assert!(
        errors[1].contains("invalid_phone") && errors[1].contains("(C-1)"),
        "{text}"
    );
    assert!(
        errors[2].contains("missing_field") && errors[2].contains("(C-3)"),
        "{text}"
    );
    assert!(
        text.contains("checked 4 records in 1 file(s): 3 error(s)"),
        "{text}"
    );
    assert!(!dir.path().join("crm.db").exists(), "check writes nothing");

    let ok = crm_import(&["check", &testdata("demo.xml")], dir.path());
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
}

#[test]
fn login_marks_the_cards_with_that_phone() {
    let dir = tempfile::tempdir().unwrap();
    crm_import(
        &[
            "import",
            &testdata("demo.xml"),
            "--org",
            "uo-1",
            "--source",
            "1c",
        ],
        dir.path(),
    );
    let out = crm_import(&["login", "8 (843) 224-72-71"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("+78432247271: 1 card(s)"),
        "{}",
        stdout(&out)
    );
    let export = stdout(&crm_import(&["export", "--org", "uo-1"], dir.path()));
    let logged: Vec<bool> = export
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "client")
        .map(|v| v["logged_in"].as_bool().unwrap())
        .collect();
    assert_eq!(logged, vec![false, false, true, false]);
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let demo = testdata("demo.xml");
    assert_eq!(
        crm_import(&["import", &demo, "--org", "uo-1"], dir.path())
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        crm_import(
            &[
                "import",
                &demo,
                "--org",
                "uo-1",
                "--source",
                "1c",
                "--chunk-size",
                "0"
            ],
            dir.path()
        )
        .status
        .code(),
        Some(2)
    );
    let bad_db = crm_import(
        &["export", "--org", "uo-1", "--db", "mysql://localhost/crm"],
        dir.path(),
    );
    assert_eq!(bad_db.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_db.stderr).contains("sqlite:PATH"));
    let unknown_org = crm_import(&["export", "--org", "nobody"], dir.path());
    assert_eq!(unknown_org.status.code(), Some(2));
    assert_eq!(
        crm_import(&["login", "not a phone"], dir.path())
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn database_url_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .args([
            "import",
            &testdata("demo.xml"),
            "--org",
            "uo-1",
            "--source",
            "1c",
        ])
        .current_dir(dir.path())
        .env("DATABASE_URL", "sqlite:from-env.db")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(dir.path().join("from-env.db").exists());
    assert!(!dir.path().join("crm.db").exists());
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    // Pins `check … | head -1`, which used to panic in println!.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .args(["check", &testdata("defects/unknown_elements.xml")])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schedule_prints_the_next_runs_on_the_pipelines_clock() {
    let dir = tempfile::tempdir().unwrap();
    let out = crm_import(
        &[
            "schedule",
            "0 3 * * *",
            "--tz",
            "Europe/Moscow",
            "--next",
            "2",
            "--from",
            "2026-11-28T18:00:00Z",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "2026-11-29 03:00 Sun +03:00 (2026-11-29 00:00 UTC)\n2026-11-30 03:00 Mon +03:00 (2026-11-30 00:00 UTC)\n"
    );
    let bad = crm_import(&["schedule", "0 3 * * * *"], dir.path());
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("five fields"));
}

#[test]
fn runs_lists_the_history_and_shows_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let demo = testdata("demo.xml");
    let bad = dir.path().join("bad.xml");
    std::fs::write(
        &bad,
        doc("", &client("C-1", "Иванов", Some("+7 916 12"), "")),
    )
    .unwrap();
    let import = |file: &str| {
        crm_import(
            &["import", file, "--org", "uo-1", "--source", "1c"],
            dir.path(),
        )
    };
    assert_eq!(import(&demo).status.code(), Some(0));
    assert_eq!(import(bad.to_str().unwrap()).status.code(), Some(1));
    let list = stdout(&crm_import(&["runs"], dir.path()));
    let rows: Vec<Vec<&str>> = list
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!((rows[0][0], rows[0][5], rows[0][6]), ("2", "error", "0"));
    assert_eq!(
        (rows[1][0], rows[1][4], rows[1][5], rows[1][6]),
        ("1", "manual", "ok", "7")
    );
    let shown = crm_import(&["runs", "show", "2"], dir.path());
    assert_eq!(shown.status.code(), Some(0));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["run"]["status"], "error");
    assert_eq!(shown["report"]["error"]["code"], "invalid_phone");
    assert_eq!(shown["report"]["error"]["record_id"], "C-1");
    assert_eq!(
        crm_import(&["runs", "show", "99"], dir.path())
            .status
            .code(),
        Some(2)
    );
}

/// `user add` with the password from `CRM_USER_PASSWORD` (standard input is not a terminal).
fn user(args: &[&str], password: Option<&str>, dir: &std::path::Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crm-import"));
    command
        .arg("user")
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("CRM_USER_PASSWORD")
        .stdin(std::process::Stdio::null());
    if let Some(password) = password {
        command.env("CRM_USER_PASSWORD", password);
    }
    command.output().unwrap()
}

#[test]
fn staff_accounts_are_added_listed_and_removed_with_their_password_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "очень-секретный-пароль";
    let added = user(
        &["add", "--org", "uo-1", "--login", "ivanova"],
        Some(secret),
        dir.path(),
    );
    assert_eq!(added.status.code(), Some(0), "{added:?}");
    assert!(stdout(&added).contains("ivanova"));

    // Taken logins, a missing or short password: configuration mistakes, exit 2.
    for (args, password) in [
        (["add", "--org", "uo-2", "--login", "ivanova"], Some(secret)),
        (["add", "--org", "uo-1", "--login", "petrov"], None),
        (["add", "--org", "uo-1", "--login", "petrov"], Some("short")),
    ] {
        let out = user(&args, password, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty());
    }

    let listed = user(&["list"], None, dir.path());
    assert_eq!(listed.status.code(), Some(0));
    let list = stdout(&listed);
    assert!(list.contains("uo-1\tivanova"), "{list}");
    assert!(!list.contains("petrov"), "{list}");
    assert!(!list.contains("argon2") && !list.contains(secret), "{list}");
    // The database keeps only the Argon2id hash.
    let db = std::fs::read(dir.path().join("crm.db")).unwrap();
    let wal = std::fs::read(dir.path().join("crm.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }

    assert_eq!(
        user(&["remove", "ivanova"], None, dir.path()).status.code(),
        Some(0)
    );
    assert_eq!(
        user(&["remove", "ivanova"], None, dir.path()).status.code(),
        Some(2)
    );
    assert!(!stdout(&user(&["list"], None, dir.path())).contains("ivanova"));
}

/// `--results`: a line per record as it was committed — in CSV for Excel (BOM, `;`) or
/// NDJSON — the failing record with its code and message, and a closing line counting what
/// the halt left unprocessed.
/// The results run `run_id` kept in the database in `dir`, decompressed.
fn kept_results(dir: &std::path::Path, run_id: i64) -> Vec<u8> {
    use crm_import::store::Store;
    use std::io::Read;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = format!("sqlite:{}", dir.join("crm.db").display());
    let mut gz = Vec::new();
    runtime.block_on(async {
        let store = crm_import::store::open(&url, &Default::default())
            .await
            .unwrap();
        for part in 0.. {
            match store.results_part(run_id, part).await.unwrap() {
                Some(bytes) => gz.extend(bytes),
                None => break,
            }
        }
    });
    let mut csv = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut csv)
        .unwrap();
    csv
}

#[test]
fn results_say_what_became_of_each_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.xml");
    let clients: String = (1..=6)
        .map(|i| {
            let phone = if i == 4 {
                "звоните вечером".to_owned()
            } else {
                format!("+7916000000{i}")
            };
            client(&format!("C-{i}"), &format!("Клиент {i}"), Some(&phone), "")
        })
        .collect();
    std::fs::write(
        &path,
        doc(&premise("P-1", &[("A-1", "1100000001")]), &clients),
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let import = |results: &str| {
        crm_import(
            &[
                "import",
                file,
                "--org",
                "uo-1",
                "--source",
                "1c",
                "--results",
                results,
            ],
            dir.path(),
        )
    };
    let out = import("results.csv");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let csv = std::fs::read(dir.path().join("results.csv")).unwrap();
    assert!(csv.starts_with("\u{feff}".as_bytes()), "a BOM for Excel");
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(
        lines[0],
        "file;index;line;kind;id;outcome;merged_into;code;message;count"
    );
    assert!(
        lines[1].ends_with(";1;4;premise;P-1;created;;;;"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(";2;") && lines[2].ends_with(";client;C-1;created;;;;"),
        "{}",
        lines[2]
    );
    assert!(
        lines[5].contains(";client;C-4;error;;invalid_phone;"),
        "{}",
        lines[5]
    );
    assert_eq!(lines.len(), 7, "{csv}");
    assert!(
        lines[6].starts_with(";;;;;not_processed;;;the run halted at C-4 [invalid_phone]")
            && lines[6].ends_with(";2"),
        "C-5 and C-6 were read, not applied: {}",
        lines[6]
    );
    assert_eq!(
        kept_results(dir.path(), 1),
        std::fs::read(dir.path().join("results.csv")).unwrap(),
        "the run keeps the same CSV"
    );

    // Again, as NDJSON: what was created comes back unchanged.
    let out = import("results.ndjson");
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(dir.path().join("results.ndjson")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["outcome"], "unchanged");
    assert_eq!(lines[0]["kind"], "premise");
    assert_eq!(lines[3]["outcome"], "unchanged");
    assert_eq!(lines[4]["code"], "invalid_phone");
    assert_eq!(lines[4]["kind"], "client");
    assert_eq!(lines[5]["outcome"], "not_processed");
    assert_eq!(lines[5]["count"], 2);

    let out = import("results.txt");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown extension is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(".csv or a .ndjson"));
}
