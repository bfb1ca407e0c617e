//! The daemon and run history: schedules fire under a test-controlled clock, overlapping
//! starts are refused and recorded (in one process, and across two daemons on one database),
//! a killed holder's lease runs out, a stop request ends a run `interrupted` with a
//! consistent database, `/metrics` counts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use crm_import::daemon::{Daemon, StartError, Started};
use crm_import::report::Status;
use crm_import::store::{self, RunFilter, Store, Trigger};
use futures::StreamExt;
use tokio::sync::Notify;

use crate::common::*;

/// The refused run of a start that must have been refused.
fn refused(start: Result<Started, StartError>) -> crm_import::run::Finished {
    match start {
        Err(StartError::AlreadyRunning(finished)) => *finished,
        Err(e) => panic!("{e}"),
        Ok(started) => panic!("run {} started", started.run_id),
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A folder of pipelines beside the test's database.
fn pipelines(db: &Db, files: &[(&str, &str)]) -> PathBuf {
    let dir = db.dir.path().join("pipelines");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn pipeline_text(name: &str, files: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\norganization = \"{ORG}\"\nsource = \"{SRC}\"\nfiles = \"{files}\"\nchunk_size = 10\nsettle_secs = 0\n{extra}\n"
    )
}

/// An HTTP export that sends its first half, then holds the rest until released.
struct Held {
    url: String,
    release: Arc<Notify>,
}

async fn held_export(content: String) -> Held {
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let router = Router::new().route(
        "/export.xml",
        get(move || {
            let gate = gate.clone();
            let bytes = content.clone().into_bytes();
            async move {
                let half = bytes.len() / 2;
                let (first, rest) = (bytes[..half].to_vec(), bytes[half..].to_vec());
                let body = futures::stream::once(async { Ok::<_, std::io::Error>(first) }).chain(
                    futures::stream::once(async move {
                        gate.notified().await;
                        Ok(rest)
                    }),
                );
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/xml")
                    .body(Body::from_stream(body))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Held {
        url: format!("http://{addr}/export.xml"),
        release,
    }
}

/// Waits (up to 20 s) until the test's organization has at least `n` clients.
async fn until_clients(db: &Db, n: usize) {
    for _ in 0..400 {
        if db.of_type(ORG, "client").await.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} clients after 20 s");
}

#[tokio::test]
async fn a_due_pipeline_runs_once_at_its_time_and_is_recorded() {
    let db = Db::new().await;
    let demo = testdata("demo.xml");
    let dir = pipelines(
        &db,
        &[(
            "nightly.toml",
            &pipeline_text(
                "nightly",
                &demo,
                "schedule = \"0 3 * * *\"\ntimezone = \"Europe/Moscow\"",
            ),
        )],
    );
    let store = Arc::new(db.store.clone());
    let daemon = Daemon::new(store.clone(), &dir, None);
    assert!(daemon.reload().unwrap().is_empty());
    // 03:00 in Moscow is 00:00 UTC.
    assert_eq!(
        daemon.next_due(at("2026-11-28T12:00:00Z")),
        Some(at("2026-11-29T00:00:00Z"))
    );
    assert!(
        daemon
            .tick(at("2026-11-28T23:00:00Z"), at("2026-11-28T23:59:59Z"))
            .await
            .is_empty(),
        "not due yet"
    );
    let started = daemon
        .tick(at("2026-11-28T23:59:59Z"), at("2026-11-29T00:00:01Z"))
        .await;
    assert_eq!(started.len(), 1);
    let finished = started.into_iter().next().unwrap().await.unwrap().unwrap();
    assert_eq!(finished.report.status, Status::Ok);
    assert!(
        daemon
            .tick(at("2026-11-29T00:00:01Z"), at("2026-11-29T23:59:59Z"))
            .await
            .is_empty(),
        "once a night"
    );
    let runs = store
        .runs(&RunFilter {
            pipeline: Some("nightly".into()),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].trigger.as_str(),
            runs[0].status.as_str(),
            runs[0].records
        ),
        ("schedule", "ok", 7)
    );
    assert!(runs[0].finished_at.is_some());
    assert_eq!(db.of_type(ORG, "client").await.len(), 4);
}

#[tokio::test]
async fn an_overlapping_start_is_refused_and_recorded_even_from_another_store() {
    let db = Db::new().await;
    let held = held_export(clients(1, 200)).await;
    let dir = pipelines(&db, &[("slow.toml", &pipeline_text("slow", &held.url, ""))]);
    let daemon = Daemon::new(Arc::new(db.store.clone()), &dir, None);
    daemon.reload().unwrap();
    let first = daemon.start("slow", Trigger::Manual).await.unwrap().handle;
    until_clients(&db, 10).await;

    // The same daemon, and a second one on its own connection pool to the same file (as a
    // second process would be).
    let again = refused(daemon.start("slow", Trigger::Api).await);
    assert_eq!(again.report.status, Status::Refused);
    let url = db.url.clone();
    let other_store = store::open(&url, &store::Settings::default())
        .await
        .unwrap();
    let other = Daemon::new(Arc::new(other_store), &dir, None);
    other.reload().unwrap();
    let elsewhere = refused(other.start("slow", Trigger::Schedule).await);
    assert_eq!(elsewhere.report.status, Status::Refused);
    let message = &elsewhere.report.error.as_ref().unwrap().message;
    assert!(message.contains("already running"), "{message}");
    // It says when the holder's lease ends, and what happens if the holder died.
    assert!(message.contains("keeps its lease until 20"), "{message}");
    assert!(
        message.contains("A crashed run on this host is taken over"),
        "{message}"
    );

    held.release.notify_one();
    let first = first.await.unwrap().unwrap();
    assert_eq!(
        first.report.status,
        Status::Ok,
        "{}",
        first.report.summary()
    );
    assert_eq!(first.report.records, 200);

    let runs = db
        .store
        .runs(&RunFilter {
            pipeline: Some("slow".into()),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    let seen: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r.trigger.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("schedule", "refused"),
            ("api", "refused"),
            ("manual", "ok")
        ]
    );
    let (_, report) = db.store.run(runs[0].id, None).await.unwrap().unwrap();
    assert!(report.unwrap().contains("already_running"));

    // The lease is released: the next start runs.
    let next = daemon.start("slow", Trigger::Manual).await.unwrap().handle;
    held.release.notify_one();
    assert_eq!(next.await.unwrap().unwrap().report.status, Status::Ok);
}

#[tokio::test]
async fn stopping_the_daemon_mid_run_records_an_interrupted_run_and_keeps_whole_chunks() {
    let db = Db::new().await;
    let held = held_export(clients(1, 200)).await;
    let dir = pipelines(&db, &[("slow.toml", &pipeline_text("slow", &held.url, ""))]);
    let daemon = Daemon::new(Arc::new(db.store.clone()), &dir, None);
    daemon.reload().unwrap();
    let run = daemon.start("slow", Trigger::Manual).await.unwrap().handle;
    until_clients(&db, 10).await;
    daemon.shutdown().await;
    let finished = run.await.unwrap().unwrap();
    assert_eq!(finished.report.status, Status::Interrupted);
    let kept = db.of_type(ORG, "client").await.len() as u64;
    assert_eq!(finished.report.records, kept);
    assert_eq!(kept % 10, 0, "whole chunks only");
    let (row, _) = db.store.run(finished.run_id, None).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.records), ("interrupted", kept));
    assert!(
        daemon.start("slow", Trigger::Manual).await.is_err(),
        "a stopping daemon starts nothing"
    );
}

#[tokio::test]
async fn sigterm_stops_a_cli_run_cleanly() {
    let db = Db::new().await;
    let held = held_export(clients(1, 200)).await;
    let dir = pipelines(&db, &[("slow.toml", &pipeline_text("slow", &held.url, ""))]);
    let url = db.url.clone();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .arg("run")
        .arg(dir.join("slow.toml"))
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    until_clients(&db, 10).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("import INTERRUPTED"), "{stdout}");
    let runs = db
        .store
        .runs(&RunFilter {
            limit: 1,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    let kept = db.of_type(ORG, "client").await.len() as u64;
    assert_eq!(
        (runs[0].status.as_str(), runs[0].records),
        ("interrupted", kept)
    );
    held.release.notify_one();
}

#[tokio::test]
async fn a_crashed_holder_lease_expires() {
    let db = Db::new().await;
    let scope = db.store.scope(ORG, SRC).await.unwrap();
    let store = &db.store;
    let first = store
        .start_run(scope.org_id, Some("p"), Trigger::Schedule)
        .await
        .unwrap();
    let store::RunStart::Started(crashed) = first else {
        panic!("{first:?}")
    };
    let second = store
        .start_run(scope.org_id, Some("p"), Trigger::Schedule)
        .await
        .unwrap();
    assert!(matches!(second, store::RunStart::Refused { holder, .. } if holder == crashed));
    // A holder on another host is judged by its lease alone: while it lasts, it is respected.
    db.execute(&format!(
        "UPDATE runs SET holder = 'elsewhere/1/1' WHERE id = {crashed}"
    ))
    .await;
    let fourth = store
        .start_run(scope.org_id, Some("p"), Trigger::Schedule)
        .await
        .unwrap();
    assert!(
        matches!(&fourth, store::RunStart::Refused { holder, process: Some(p), .. }
            if *holder == crashed && p.host == "elsewhere"),
        "{fourth:?}"
    );
    // The holder died without renewing: let its lease run out.
    db.execute(&format!(
        "UPDATE run_leases SET expires_at = expires_at - {}",
        store::Settings::default().lease_secs + 1
    ))
    .await;
    let third = store
        .start_run(scope.org_id, Some("p"), Trigger::Schedule)
        .await
        .unwrap();
    assert!(matches!(third, store::RunStart::Started(_)), "{third:?}");
    let (row, _) = store.run(crashed, None).await.unwrap().unwrap();
    assert_eq!(row.status, "interrupted");
}

#[tokio::test]
async fn metrics_show_the_counts_of_a_run() {
    let handle = crm_import::telemetry::install().unwrap();
    let db = Db::new().await;
    let demo = testdata("demo.xml");
    let dir = pipelines(
        &db,
        &[("metered.toml", &pipeline_text("metered-demo", &demo, ""))],
    );
    let daemon = Daemon::new(Arc::new(db.store.clone()), &dir, None);
    daemon.reload().unwrap();
    let finished = daemon
        .start("metered-demo", Trigger::Manual)
        .await
        .unwrap()
        .handle
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.report.status, Status::Ok);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store_for_api = db.store.clone();
    tokio::spawn(async move {
        let mut api = crm_import::api::Api::new(Arc::new(store_for_api));
        api.metrics = Some(handle);
        axum::serve(listener, crm_import::api::router(api))
            .await
            .unwrap()
    });
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "crm_import_runs_total{pipeline=\"metered-demo\",status=\"ok\"} 1",
        "crm_import_run_duration_seconds_count{pipeline=\"metered-demo\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    for name in [
        "crm_import_records_total{entity=\"client\",outcome=\"created\"}",
        "crm_import_bytes_read_total",
        "crm_import_stage_wait_seconds",
    ] {
        assert!(text.contains(name), "{name} missing in:\n{text}");
    }
}

#[tokio::test]
async fn the_daemon_process_serves_health_and_metrics_and_stops_on_sigterm() {
    let db = Db::new().await;
    let demo = testdata("demo.xml");
    let dir = pipelines(
        &db,
        &[(
            "nightly.toml",
            &pipeline_text(
                "nightly",
                &demo,
                "schedule = \"0 3 * * *\"\ntimezone = \"Europe/Moscow\"",
            ),
        )],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = db.url.clone();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .arg("daemon")
        .arg("--pipelines")
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &url)
        .env_remove("CRM_SMTP_HOST")
        .env("RUST_LOG", "crm_import=info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut health = None;
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
            health = Some(r.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health.as_deref(), Some("ok\n"));
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // A new pipeline file, then SIGHUP: the daemon reads the folder again.
    std::fs::write(
        dir.join("hourly.toml"),
        pipeline_text("hourly", &demo, "schedule = \"19 * * * *\""),
    )
    .unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("daemon: 1 pipeline(s)"), "{stdout}");
    assert!(stdout.contains("nightly"), "{stdout}");
    assert!(stdout.contains("daemon: stopped"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pipelines=1"), "{stderr}");
    assert!(
        stderr.contains("pipelines=2"),
        "reloaded on SIGHUP: {stderr}"
    );
}

#[tokio::test]
async fn two_daemons_run_a_due_pipeline_once_and_a_killed_holder_frees_it() {
    let db = Db::new().await;
    let held = held_export(clients(1, 200)).await;
    let nightly = pipeline_text(
        "slow",
        &held.url,
        "schedule = \"0 3 * * *\"\ntimezone = \"Europe/Moscow\"",
    );
    let dir = pipelines(&db, &[("slow.toml", &nightly)]);
    // Two daemons, each with its own connection pool to the one database.
    let mut daemons = Vec::new();
    for _ in 0..2 {
        let store = store::open(&db.url, &store::Settings::default())
            .await
            .unwrap();
        let daemon = Daemon::new(Arc::new(store), &dir, None);
        daemon.reload().unwrap();
        daemons.push(daemon);
    }
    // Both wake for 03:00 Moscow (00:00Z) at the same moment.
    let (after, upto) = (at("2026-11-28T23:59:00Z"), at("2026-11-29T00:00:01Z"));
    let (a, b) = tokio::join!(daemons[0].tick(after, upto), daemons[1].tick(after, upto));
    assert_eq!(a.len() + b.len(), 1, "exactly one daemon starts the run");
    held.release.notify_one();
    for handle in a.into_iter().chain(b) {
        let finished = handle.await.unwrap().unwrap();
        assert_eq!(finished.report.status, Status::Ok);
        assert_eq!(finished.report.records, 200);
    }
    let history = |limit| RunFilter {
        pipeline: Some("slow".into()),
        limit,
        ..RunFilter::default()
    };
    let runs = db.store.runs(&history(10)).await.unwrap();
    // Which of the two rows came first depends on who reached the database first.
    let mut seen: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r.trigger.as_str(), r.status.as_str()))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, vec![("schedule", "ok"), ("schedule", "refused")]);

    // A third process runs the pipeline (a minute's lease) and is killed mid-file.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .arg("run")
        .arg(dir.join("slow.toml"))
        .env("DATABASE_URL", &db.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // It holds the lease once its run is recorded; then it stops at the held half.
    let mut running = None;
    for _ in 0..400 {
        let runs = db.store.runs(&history(1)).await.unwrap();
        if runs[0].status == "running" {
            running = Some(runs[0].id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let crashed = running.expect("the third process is running the pipeline");
    let refused_run = refused(daemons[0].start("slow", Trigger::Manual).await);
    assert_eq!(refused_run.report.status, Status::Refused);
    let message = refused_run.report.error.unwrap().message;
    assert!(
        message.contains(&format!("process {} on host", child.id())),
        "the refusal names the live holder: {message}"
    );
    // SIGKILL: no handler runs, nothing is released or marked.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    // Its process is gone from this host: the very next start takes the pipeline over,
    // though the lease has most of its minute left.
    let next = match daemons[1].start("slow", Trigger::Manual).await {
        Ok(started) => started,
        Err(e) => panic!("the crashed holder was not taken over: {e}"),
    };
    // One release may go to the killed process's request if the server still holds it.
    held.release.notify_one();
    held.release.notify_one();
    let finished = next.handle.await.unwrap().unwrap();
    assert_eq!(finished.report.status, Status::Ok);
    let (row, _) = db.store.run(crashed, None).await.unwrap().unwrap();
    assert_eq!(row.status, "interrupted", "the killed run is marked");
    assert_eq!(db.of_type(ORG, "client").await.len(), 200);
}

#[tokio::test]
async fn a_long_run_renews_its_lease_while_chunks_are_written() {
    let db = Db::new().await;
    let export = db.dir.path().join("big.xml");
    let generated = std::process::Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .args([
            "generate",
            "--premises",
            "10000",
            "--clients",
            "10000",
            "--out",
        ])
        .arg(&export)
        .output()
        .unwrap();
    assert!(generated.status.success());
    let dir = pipelines(
        &db,
        &[(
            "big.toml",
            &pipeline_text("big", &export.display().to_string(), ""),
        )],
    );
    // A 3 s lease is renewed every second; 2,000 chunks of 10 take longer than that.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .arg("run")
        .arg(dir.join("big.toml"))
        .env("DATABASE_URL", &db.url)
        .env("CRM_LEASE_SECS", "3")
        .env("RUST_LOG", "crm_import::run=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A run stalled behind its own renewal would never end: give up after 2 minutes.
    let pid = child.id().to_string();
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let out = match tokio::time::timeout(Duration::from_secs(120), waited).await {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            panic!("the run did not finish within 2 minutes");
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("lease renewed"), "no renewal: {stderr}");
    assert!(!stderr.contains("cannot renew"), "{stderr}");
    assert_eq!(db.of_type(ORG, "premise").await.len(), 10_000);
}

/// A pipeline made in the console is read by every daemon on the database, runs on its
/// schedule, and once per scheduled time however many daemons wake for it.
#[tokio::test]
async fn a_console_pipeline_runs_on_its_schedule_once_across_daemons() {
    let db = Db::new().await;
    let held = held_export(clients(1, 50)).await;
    let definition = format!(
        "name = \"console-nightly\"\nsource = \"{SRC}\"\nfiles = [\"{}\"]\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Moscow\"\n",
        held.url
    );
    let saved = db
        .store
        .save_pipeline(
            &crm_import::store::StoredPipeline {
                organization: ORG.into(),
                name: "console-nightly".into(),
                definition,
                ftp_password: None,
            },
            true,
        )
        .await
        .unwrap();
    assert!(saved);
    let mut daemons = Vec::new();
    for _ in 0..2 {
        let store = store::open(&db.url, &store::Settings::default())
            .await
            .unwrap();
        let daemon = Daemon::without_files(Arc::new(store), None);
        assert!(daemon.load_stored().await.unwrap().is_empty());
        assert_eq!(daemon.is_stored("console-nightly"), Some(true));
        daemons.push(daemon);
    }
    let (after, upto) = (at("2026-11-28T23:59:00Z"), at("2026-11-29T00:00:01Z"));
    let (a, b) = tokio::join!(daemons[0].tick(after, upto), daemons[1].tick(after, upto));
    assert_eq!(a.len() + b.len(), 1, "exactly one daemon starts the run");
    held.release.notify_one();
    for handle in a.into_iter().chain(b) {
        let finished = handle.await.unwrap().unwrap();
        assert_eq!(finished.report.status, Status::Ok);
        assert_eq!(finished.report.records, 50);
    }
    let runs = db
        .store
        .runs(&RunFilter {
            pipeline: Some("console-nightly".into()),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    let mut seen: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r.trigger.as_str(), r.status.as_str()))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, vec![("schedule", "ok"), ("schedule", "refused")]);
    assert_eq!(db.of_type(ORG, "client").await.len(), 50);

    // Deleted in the console, it is gone from a daemon's next reading.
    assert!(
        db.store
            .delete_pipeline(ORG, "console-nightly")
            .await
            .unwrap()
    );
    daemons[0].load_stored().await.unwrap();
    assert_eq!(daemons[0].is_stored("console-nightly"), None);
}

/// Six `crm-import run`s of one pipeline at once on a fresh SQLite file (three times over):
/// exactly one runs — its source holds the file until the others have ended — and the other
/// five are refused with "already running"; none fails creating or migrating the file.
#[tokio::test]
async fn simultaneous_starts_on_a_fresh_database_run_once_and_refuse_the_rest() {
    for trial in 0..3 {
        let held = held_export(clients(1, 20)).await;
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("race.toml");
        std::fs::write(&pipeline, pipeline_text("race", &held.url, "")).unwrap();
        let url = format!("sqlite:{}", dir.path().join("fresh.db").display());
        let mut children: Vec<std::process::Child> = (0..6)
            .map(|_| {
                std::process::Command::new(env!("CARGO_BIN_EXE_crm-import"))
                    .arg("run")
                    .arg(&pipeline)
                    .args(["--db", &url])
                    .env_remove("DATABASE_URL")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // The refused ones end at once; the one that runs waits for the rest of its file.
        for _ in 0..600 {
            let mut ended = 0;
            for child in &mut children {
                if child.try_wait().unwrap().is_some() {
                    ended += 1;
                }
            }
            if ended >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        held.release.notify_one();
        // Waited for off the runtime's thread, which serves the held file meanwhile.
        let outputs: Vec<std::process::Output> = tokio::task::spawn_blocking(move || {
            children
                .into_iter()
                .map(|c| c.wait_with_output().unwrap())
                .collect()
        })
        .await
        .unwrap();
        let mut codes: Vec<i32> = outputs.iter().map(|o| o.status.code().unwrap()).collect();
        codes.sort_unstable();
        assert_eq!(codes, [0, 1, 1, 1, 1, 1], "trial {trial}: {outputs:?}");
        for refused in outputs.iter().filter(|o| o.status.code() == Some(1)) {
            let said = String::from_utf8_lossy(&refused.stdout);
            assert!(said.contains("already running"), "trial {trial}: {said}");
        }
    }
}

/// On PostgreSQL a run's own session is its sign of life: a holder on another host whose
/// process died is taken over as soon as the server ends its session, though its lease has
/// most of a minute left; while the session lives, the holder is respected.
#[tokio::test]
async fn postgres_takes_over_a_dead_holder_on_another_host_at_once() {
    let Some(server) = crate::common::postgres() else {
        eprintln!("SKIPPED: run sessions are PostgreSQL's (CRM_TEST_POSTGRES, set by .ci/run)");
        return;
    };
    let db = Db::on(Some(server)).await;
    let scope = db.store.scope(ORG, SRC).await.unwrap();
    // The holder: a store of its own, as another process would have.
    let elsewhere = store::open(&db.url, &store::Settings::default())
        .await
        .unwrap();
    let store::RunStart::Started(holder) = elsewhere
        .start_run(scope.org_id, Some("p"), Trigger::Schedule)
        .await
        .unwrap()
    else {
        panic!("the first start runs")
    };
    db.execute(&format!(
        "UPDATE runs SET holder = 'another-host/1/1' WHERE id = {holder}"
    ))
    .await;
    let refused = db
        .store
        .start_run(scope.org_id, Some("p"), Trigger::Schedule)
        .await
        .unwrap();
    assert!(
        matches!(refused, store::RunStart::Refused { holder: h, .. } if h == holder),
        "a live holder on another host is respected: {refused:?}"
    );
    // Its process dies: every connection it had closes.
    drop(elsewhere);
    let mut taken = None;
    for _ in 0..50 {
        match db
            .store
            .start_run(scope.org_id, Some("p"), Trigger::Schedule)
            .await
            .unwrap()
        {
            store::RunStart::Started(id) => {
                taken = Some(id);
                break;
            }
            store::RunStart::Refused { .. } => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(
        taken.is_some(),
        "taken over within 5 s, not after the lease"
    );
    let (row, _) = db.store.run(holder, None).await.unwrap().unwrap();
    assert_eq!(row.status, "interrupted");
}
