//! Memory stays flat in the file size: a bound, asserted on the child process's own peak
//! (the throughput line prints VmHWM), never a timing.

use std::path::Path;
use std::process::Command;

fn crm_import(args: &[&str], dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn generate(dir: &Path, name: &str, pairs: u64) -> String {
    let n = pairs.to_string();
    crm_import(
        &["generate", "--premises", &n, "--clients", &n, "--out", name],
        dir,
    );
    dir.join(name).to_string_lossy().into_owned()
}

/// The peak memory (MiB) an import printed.
fn peak_of_import(summary: &str) -> f64 {
    let tail = summary
        .split("peak memory ")
        .nth(1)
        .unwrap_or_else(|| panic!("no peak in {summary}"));
    tail.split_whitespace().next().unwrap().parse().unwrap()
}

/// The peak memory (MiB) of `check` on a file, read from /proc by a wrapper shell.
fn peak_of_check(file: &str, dir: &Path) -> f64 {
    let script = format!(
        "{} check {file} > /dev/null & pid=$!; peak=0; \
         while kill -0 $pid 2>/dev/null; do \
           v=$(awk '/VmHWM/ {{print $2}}' /proc/$pid/status 2>/dev/null); \
           [ -n \"$v\" ] && [ \"$v\" -gt \"$peak\" ] && peak=$v; sleep 0.01; done; echo $peak",
        env!("CARGO_BIN_EXE_crm-import")
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    let kib: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    kib / 1024.0
}

#[test]
fn import_memory_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let file = generate(dir.path(), "big.xml", 20_000);
    let summary = crm_import(
        &[
            "import",
            &file,
            "--org",
            "uo-1",
            "--source",
            "1c",
            "--chunk-size",
            "500",
        ],
        dir.path(),
    );
    assert!(summary.contains("import OK: 40000 records"), "{summary}");
    let peak = peak_of_import(&summary);
    assert!(peak < 96.0, "peak {peak} MiB");
}

#[test]
fn parsing_memory_does_not_grow_with_the_file() {
    // Pins the event buffer that was never cleared and grew to the size of the file.
    let dir = tempfile::tempdir().unwrap();
    let small = generate(dir.path(), "small.xml", 1_000);
    let big = generate(dir.path(), "big.xml", 20_000);
    let (small_peak, big_peak) = (
        peak_of_check(&small, dir.path()),
        peak_of_check(&big, dir.path()),
    );
    assert!(small_peak > 1.0, "the peak was read: {small_peak}");
    assert!(
        big_peak < small_peak + 8.0,
        "check peak {small_peak} MiB on 1k pairs, {big_peak} MiB on 20k pairs"
    );
}
