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

/// An import of ten times as many records peaks where the smaller one did: nothing the
/// apply stage keeps grows with the file. The page cache is held small so that its filling
/// up (bounded by `--cache-mib`) does not pass for growth.
#[test]
fn import_memory_does_not_grow_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // More records than the channels and one chunk hold (about 8,500), so the small
    // import reaches the steady state too.
    let small = generate(dir.path(), "small.xml", 5_000);
    let big = generate(dir.path(), "big.xml", 50_000);
    let peak = |file: &str, db: &str| {
        let url = format!("sqlite:{db}");
        let args = [
            "import",
            file,
            "--org",
            "uo-1",
            "--source",
            "1c",
            "--db",
            &url,
            "--cache-mib",
            "2",
        ];
        let summary = crm_import(&args, dir.path());
        assert!(summary.contains("import OK"), "{summary}");
        peak_of_import(&summary)
    };
    let (small_peak, big_peak) = (peak(&small, "small.db"), peak(&big, "big.db"));
    assert!(small_peak > 1.0, "the peak was read: {small_peak}");
    assert!(
        big_peak < small_peak * 1.1 + 4.0,
        "import peak {small_peak} MiB on 5k pairs, {big_peak} MiB on 50k pairs"
    );
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

/// A million clients pushed as NDJSON to `crm-import serve`: the body and the answer stream,
/// so the server's peak stays that of a few chunks.
#[tokio::test]
async fn an_ndjson_push_of_a_million_clients_keeps_the_server_memory_bounded() {
    use futures::StreamExt;
    const CLIENTS: u64 = 1_000_000;
    const BATCH: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let token_out = crm_import(
        &["token", "create", "--org", "uo-1", "--db", "sqlite:api.db"],
        dir.path(),
    );
    let token = token_out.lines().next().unwrap().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .args([
            "serve",
            "--db",
            "sqlite:api.db",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The body is made while it is sent: the test holds one batch of lines at a time.
    let body = futures::stream::iter(0..CLIENTS / BATCH).map(|b| {
        let mut lines = String::with_capacity(BATCH as usize * 80);
        for i in b * BATCH..(b + 1) * BATCH {
            lines.push_str(&format!(
                "{{\"id\":\"C-{i}\",\"name\":\"Клиент {i}\",\"phone\":\"+7916{i:07}\"}}\n"
            ));
        }
        Ok::<_, std::io::Error>(lines)
    });
    let response = http
        .post(format!("http://127.0.0.1:{port}/api/v1/clients?source=1c"))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut lines = 0u64;
    let mut tail = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        tail.extend_from_slice(&chunk);
        if let Some(cut) = tail.iter().rposition(|&b| b == b'\n')
            && cut + 1 < tail.len()
        {
            tail.drain(..=cut);
        } else if tail.len() > 4096 {
            let keep = tail.len() - 4096;
            tail.drain(..keep);
        }
    }
    let text = String::from_utf8_lossy(&tail);
    let last: serde_json::Value =
        serde_json::from_str(text.trim().lines().last().unwrap()).unwrap();
    assert_eq!(last["done"], true, "{text}");
    assert_eq!(last["records"], CLIENTS);
    assert_eq!(last["not_processed"], 0);
    assert_eq!(lines, CLIENTS + 1, "one outcome per client and the summary");
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.id())).unwrap();
    server.kill().unwrap();
    let _ = server.wait();
    let peak_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let peak = peak_kib / 1024.0;
    eprintln!("server peak {peak:.1} MiB for {CLIENTS} pushed clients");
    assert!(
        peak < 128.0,
        "server peak {peak:.1} MiB for {CLIENTS} pushed clients"
    );
}

/// A million unknown elements (forty names, inside a hundred premises and between them) are
/// counted, not kept one by one: `import` and `check` stay under 64 MiB and still report
/// every one of them.
#[test]
fn a_million_warnings_keep_memory_bounded() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noisy.xml");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write!(out, "<crm-import version=\"1\"><premises>").unwrap();
    for p in 0..100 {
        write!(out, "<premise id=\"P-{p}\"><address>ул. Ленина, {p}</address><number>{p}</number><kind>flat</kind>").unwrap();
        for i in 0..9_000 {
            write!(out, "<u{}/>", i % 40).unwrap();
        }
        write!(out, "</premise>").unwrap();
        for i in 0..1_000 {
            write!(out, "<between{}/>", i % 40).unwrap();
        }
    }
    write!(out, "</premises></crm-import>").unwrap();
    out.into_inner().unwrap().sync_all().unwrap();
    let file = path.to_string_lossy().into_owned();

    let summary = crm_import(
        &["import", &file, "--org", "uo-1", "--source", "1c"],
        dir.path(),
    );
    assert!(summary.contains("import OK: 100 records"), "{summary}");
    assert!(summary.contains("warnings: 1000000"), "{summary}");
    let peak = peak_of_import(&summary);
    assert!(peak <= 64.0, "import peak {peak} MiB");

    let check = crm_import(&["check", &file], dir.path());
    assert!(
        check.contains("checked 100 records in 1 file(s): 0 error(s), 1000000 warning(s)"),
        "{}",
        check.lines().last().unwrap_or_default()
    );
    let peak = peak_of_check(&file, dir.path());
    assert!(peak <= 64.0, "check peak {peak} MiB");
}
