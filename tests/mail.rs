//! E-mailed reports: a real SMTP server (mailin-embedded) on 127.0.0.1 receives what
//! `run --notify` and the daemon send; the messages are parsed and their contents asserted.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_import::daemon::Daemon;
use crm_import::notify::{Smtp, SmtpTls};
use crm_import::store::{RunFilter, Store};
use mailin_embedded::{Handler, Response, Server};
use mailparse::MailHeaderMap;

use crate::common::*;

/// One message as the server received it.
#[derive(Debug, Clone)]
struct Received {
    to: Vec<String>,
    raw: Vec<u8>,
}

#[derive(Clone, Default)]
struct Inbox {
    current: Vec<u8>,
    to: Vec<String>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Handler for Inbox {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current.clear();
        self.to = to.to_vec();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.received.lock().unwrap().push(Received {
            to: self.to.clone(),
            raw: std::mem::take(&mut self.current),
        });
        mailin_embedded::response::OK
    }
}

/// Starts an SMTP server on a free loopback port; returns the port and its inbox.
fn smtp_server() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = Inbox::default();
    let received = inbox.received.clone();
    let mut server = Server::new(inbox);
    server.with_name("mail.test").with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (port, received)
}

/// A message's subject and its decoded plain-text and HTML parts.
struct Parsed {
    subject: String,
    text: String,
    html: String,
}

fn parse(raw: &[u8]) -> Parsed {
    let mail = mailparse::parse_mail(raw).unwrap();
    let subject = mail.headers.get_first_value("Subject").unwrap();
    let mut text = String::new();
    let mut html = String::new();
    for part in &mail.subparts {
        match part.ctype.mimetype.as_str() {
            "text/plain" => text = part.get_body().unwrap(),
            "text/html" => html = part.get_body().unwrap(),
            _ => {}
        }
    }
    Parsed {
        subject,
        text,
        html,
    }
}

fn pipeline(db: &Db, name: &str, file: &str) -> PathBuf {
    let dir = db.dir.path().join("pipelines");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\norganization = \"{ORG}\"\nsource = \"{SRC}\"\nfiles = \"{file}\"\nsettle_secs = 0\nnotify = [\"ops@uo-1.example\", \"boss@uo-1.example\"]\nschedule = \"19 22 * * *\"\n"
        ),
    )
    .unwrap();
    path
}

fn run_notify(db: &Db, pipeline: &PathBuf, smtp_port: u16) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crm-import"))
        .arg("run")
        .arg(pipeline)
        .arg("--notify")
        .args(["--smtp-host", "127.0.0.1", "--smtp-tls", "none"])
        .args(["--smtp-port", &smtp_port.to_string()])
        .args(["--mail-from", "crm@uo-1.example"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn last_mail_note(db: &Db) -> Option<String> {
    db.store
        .runs(&RunFilter {
            limit: 1,
            ..RunFilter::default()
        })
        .await
        .unwrap()[0]
        .mail
        .clone()
}

#[tokio::test]
async fn a_clean_run_mails_a_short_ok_report() {
    let (port, inbox) = smtp_server();
    let db = Db::new().await;
    let path = pipeline(&db, "mail-ok", &testdata("demo.xml"));
    let (code, stdout) = run_notify(&db, &path, port);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("mail: sent to 2 address(es)"), "{stdout}");
    let inbox = inbox.lock().unwrap().clone();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].to, vec!["ops@uo-1.example", "boss@uo-1.example"]);
    let mail = parse(&inbox[0].raw);
    assert_eq!(mail.subject, "[crm-import] mail-ok: OK");
    assert!(
        mail.text
            .contains("7 records imported from 1 file(s) without errors or warnings"),
        "{}",
        mail.text
    );
    assert!(
        mail.html.contains("<b>Pipeline mail-ok, run"),
        "{}",
        mail.html
    );
    assert_eq!(
        last_mail_note(&db).await.as_deref(),
        Some("sent to 2 address(es)")
    );
}

#[tokio::test]
async fn an_error_report_has_counts_warnings_and_the_error_position() {
    let (port, inbox) = smtp_server();
    let db = Db::new().await;
    let export = db.file(&doc(
        "",
        &(client(
            "C-1",
            "Иванов",
            Some("+79160000001"),
            "<email>not-an-email</email>",
        ) + &client("C-2", "Петров", Some("+79160000002"), "<email>nope</email>")
            + &client("C-3", "Сидоров", Some("+7 916 12"), "")),
    ));
    let path = pipeline(&db, "mail-error", &export);
    let (code, stdout) = run_notify(&db, &path, port);
    assert_eq!(code, Some(1), "{stdout}");
    let inbox = inbox.lock().unwrap().clone();
    let mail = parse(&inbox[0].raw);
    assert_eq!(mail.subject, "[crm-import] mail-error: ERROR");
    for expected in [
        "2 records applied",
        "clients:  2 created",
        "invalid_email ×2",
        "error: invalid_phone in",
        "record 3 (C-3)",
        "nothing after this record was applied",
    ] {
        assert!(
            mail.text.contains(expected),
            "{expected} missing in:\n{}",
            mail.text
        );
    }
    assert!(mail.text.contains(&format!("{export}:")), "{}", mail.text);
    assert!(
        mail.html.contains("<code>invalid_phone</code>"),
        "{}",
        mail.html
    );
    assert!(
        mail.html.contains("<code>invalid_email</code> ×2"),
        "{}",
        mail.html
    );
    assert!(
        mail.html.contains("&quot;not-an-email&quot;"),
        "messages are escaped in HTML: {}",
        mail.html
    );
}

#[tokio::test]
async fn a_scheduled_run_mails_its_report() {
    let (port, inbox) = smtp_server();
    let db = Db::new().await;
    let path = pipeline(&db, "mail-nightly", &testdata("demo.xml"));
    let smtp = Smtp {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        user: None,
        password_env: None,
        from: "crm@uo-1.example".into(),
        timeout: Duration::from_secs(5),
    };
    let daemon = Daemon::new(
        Arc::new(db.store.clone()),
        path.parent().unwrap(),
        Some(smtp),
    );
    daemon.reload().unwrap();
    let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
    let runs = daemon
        .tick(at("2026-11-28T22:18:00Z"), at("2026-11-28T22:19:00Z"))
        .await;
    assert_eq!(runs.len(), 1);
    for run in runs {
        run.await.unwrap().unwrap();
    }
    let inbox = inbox.lock().unwrap().clone();
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        parse(&inbox[0].raw).subject,
        "[crm-import] mail-nightly: OK"
    );
}

#[tokio::test]
async fn a_mail_failure_is_recorded_and_never_fails_the_run() {
    // A port where nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = Db::new().await;
    let path = pipeline(&db, "mail-down", &testdata("demo.xml"));
    let (code, stdout) = run_notify(&db, &path, port);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("mail: failed:"), "{stdout}");
    let note = last_mail_note(&db).await.unwrap();
    assert!(note.starts_with("failed:"), "{note}");
    assert_eq!(db.of_type(ORG, "client").await.len(), 4);
}

#[tokio::test]
async fn a_snapshot_mails_what_it_archived() {
    let (port, inbox) = smtp_server();
    let db = Db::new().await;
    let file = db.dir.path().join("full.xml");
    std::fs::write(&file, crate::snapshot::export(&[])).unwrap();
    let path = pipeline(&db, "mail-snapshot", &file.display().to_string());
    let text = std::fs::read_to_string(&path).unwrap() + "mode = \"snapshot\"\n";
    std::fs::write(&path, text).unwrap();
    assert_eq!(run_notify(&db, &path, port).0, Some(0));
    std::fs::write(&file, crate::snapshot::export(&["P-20", "C-19"])).unwrap();
    let (code, stdout) = run_notify(&db, &path, port);
    assert_eq!(code, Some(0), "{stdout}");
    let inbox = inbox.lock().unwrap().clone();
    assert_eq!(inbox.len(), 2);
    let mail = parse(&inbox[1].raw);
    assert!(
        mail.text
            .contains("archived: 1 premises, 1 accounts, 1 client links"),
        "{}",
        mail.text
    );
    assert!(
        mail.html
            .contains("Archived (full snapshot): 1 premises, 1 accounts, 1 client links"),
        "{}",
        mail.html
    );
}
