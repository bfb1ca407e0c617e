//! A full disk is a failure of the machine: exit 1 with a message that says so, counts that
//! match what the database holds, and a rerun that completes once there is space. The
//! database lives on a small tmpfs mounted in a mount namespace of the test's own
//! (`unshare`, as root), so nothing outside the test sees it.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_crm-import");

/// Runs `script` with `sh` in a mount namespace of its own, with `$BIN`, `$DIR` (a folder to
/// mount over) and `$OUT` (where it leaves what it saw) set.
fn with_small_disk(dir: &Path, script: &str) {
    let full = dir.join("full");
    std::fs::create_dir_all(&full).unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("BIN", BIN)
        .env("DIR", &full)
        .env("OUT", dir)
        .output()
        .expect("unshare (util-linux) runs the disk-full tests");
    assert!(
        out.status.success(),
        "the script failed (the disk-full tests mount a tmpfs, which needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn a_disk_full_before_the_import_starts_exits_1_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        crate::common::testdata("demo.xml"),
        dir.path().join("export.xml"),
    )
    .unwrap();
    with_small_disk(
        dir.path(),
        r#"mount -t tmpfs -o size=64k tmpfs "$DIR" || exit 1
        "$BIN" import "$(dirname "$DIR")/export.xml" --org uo-1 --source 1c --db "sqlite:$DIR/crm.db" \
            > "$OUT/stdout.txt" 2> "$OUT/stderr.txt"
        echo $? > "$OUT/code.txt""#,
    );
    assert_eq!(read(dir.path(), "code.txt").trim(), "1");
    let said = read(dir.path(), "stdout.txt") + &read(dir.path(), "stderr.txt");
    assert!(
        said.contains("the disk holding the database is full"),
        "{said}"
    );
    assert!(said.contains("disk_full"), "{said}");
    assert!(!said.contains("database_migration"), "{said}");
}

#[test]
fn a_disk_filling_up_mid_import_keeps_true_counts_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.xml");
    let generated = Command::new(BIN)
        .args([
            "generate",
            "--premises",
            "3000",
            "--clients",
            "3000",
            "--out",
        ])
        .arg(&file)
        .status()
        .unwrap();
    assert!(generated.success());
    let clean_db = format!("sqlite:{}", dir.path().join("clean.db").display());
    let file = file.to_str().unwrap();
    let import = |db: &str| {
        Command::new(BIN)
            .args([
                "import", file, "--org", "uo-1", "--source", "1c", "--db", db,
            ])
            .output()
            .unwrap()
    };
    assert!(import(&clean_db).status.success());
    let clean = Command::new(BIN)
        .args(["export", "--org", "uo-1", "--db", &clean_db])
        .output()
        .unwrap()
        .stdout;

    with_small_disk(
        dir.path(),
        r#"mount -t tmpfs -o size=1m tmpfs "$DIR" || exit 1
        db="sqlite:$DIR/crm.db"
        # --cache-mib 1 commits every 1,875 records: some are in before the disk fills, at any speed.
        "$BIN" import "$OUT/export.xml" --org uo-1 --source 1c --chunk-size 100 --cache-mib 1 --db "$db" \
            > "$OUT/first.txt" 2>&1
        echo $? > "$OUT/first.code"
        "$BIN" export --org uo-1 --db "$db" > "$OUT/after-first.ndjson" || exit 1
        mount -o remount,size=64m "$DIR" || exit 1
        "$BIN" import "$OUT/export.xml" --org uo-1 --source 1c --db "$db" > "$OUT/rerun.txt" 2>&1
        echo $? > "$OUT/rerun.code"
        "$BIN" export --org uo-1 --db "$db" > "$OUT/after-rerun.ndjson" || exit 1
        "$BIN" runs --db "$db" > "$OUT/runs.txt" || exit 1"#,
    );

    let first = read(dir.path(), "first.txt");
    assert_eq!(read(dir.path(), "first.code").trim(), "1", "{first}");
    assert!(
        first.contains("the disk holding the database is full"),
        "{first}"
    );
    // What the first import says it applied is what the database holds after it.
    let applied: u64 = first
        .split("import ERROR: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    let held = read(dir.path(), "after-first.ndjson")
        .lines()
        .filter(|l| l.contains("\"type\":\"premise\"") || l.contains("\"type\":\"client\""))
        .count() as u64;
    assert!(
        applied > 0,
        "the disk filled before anything committed: {first}"
    );
    assert_eq!(applied, held, "{first}");

    let rerun = read(dir.path(), "rerun.txt");
    assert_eq!(read(dir.path(), "rerun.code").trim(), "0", "{rerun}");
    assert!(
        read(dir.path(), "after-rerun.ndjson").as_bytes() == clean.as_slice(),
        "the rerun's export differs from a clean import's"
    );
    // The history: the first run closed with the records it committed — `error` when its end
    // could still be written (its rollback freed the space), else `interrupted` by the rerun.
    let runs = read(dir.path(), "runs.txt");
    let first_run: Vec<&str> = runs
        .lines()
        .find(|l| l.starts_with("1\t"))
        .unwrap_or_else(|| panic!("{runs}"))
        .split('\t')
        .collect();
    assert!(matches!(first_run[5], "error" | "interrupted"), "{runs}");
    assert_eq!(first_run[6], applied.to_string(), "{runs}");
}
