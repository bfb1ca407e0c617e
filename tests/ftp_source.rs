//! FTP catalogues: a real FTP server (libunftp on a folder) on 127.0.0.1, started in-process,
//! a real client. Each server has its own control port and passive ports.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use libunftp::ServerBuilder;
use unftp_core::auth::{AuthenticationError, Authenticator, Credentials, DefaultUser, Principal};
use unftp_core::storage::{Fileinfo, Result as StorageResult, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};

use crate::common::*;

pub const USER: &str = "crm";
pub const PASSWORD: &str = "s3cret-ftp-pass";

#[derive(Debug)]
struct OneUser;

#[async_trait]
impl Authenticator for OneUser {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        if username == USER && creds.password.as_deref() == Some(PASSWORD) {
            Ok(Principal {
                username: username.to_owned(),
            })
        } else {
            Err(AuthenticationError::BadPassword)
        }
    }
}

/// The server's folder, except that a download breaks off after `cut_after` bytes.
#[derive(Debug)]
struct Breaking {
    inner: Filesystem,
    cut_after: Option<u64>,
    /// After the cut, hang (send nothing, keep the connection) instead of failing.
    stall: bool,
}

#[async_trait]
impl StorageBackend<DefaultUser> for Breaking {
    type Metadata = Meta;

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<Meta> {
        self.inner.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<Vec<Fileinfo<PathBuf, Meta>>> {
        self.inner.list(user, path).await
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
        start_pos: u64,
    ) -> StorageResult<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        let reader = self.inner.get(user, path, start_pos).await?;
        Ok(match self.cut_after {
            None => reader,
            Some(n) if self.stall => {
                use tokio::io::AsyncReadExt;
                let prefix = tokio_util::io::ReaderStream::new(reader.take(n));
                let hanging = futures::StreamExt::chain(prefix, futures::stream::pending());
                Box::new(tokio_util::io::StreamReader::new(hanging))
            }
            Some(n) => {
                use tokio::io::AsyncReadExt;
                let broken = tokio_util::io::ReaderStream::new(reader.take(n));
                let failing = futures::StreamExt::chain(
                    broken,
                    futures::stream::iter([Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "disk gone",
                    ))]),
                );
                Box::new(tokio_util::io::StreamReader::new(failing))
            }
        })
    }

    async fn put<
        P: AsRef<Path> + Send + Debug,
        R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &DefaultUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> StorageResult<u64> {
        self.inner.put(user, input, path, start_pos).await
    }

    async fn del<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<()> {
        self.inner.del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<()> {
        self.inner.mkd(user, path).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        from: P,
        to: P,
    ) -> StorageResult<()> {
        self.inner.rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<()> {
        self.inner.rmd(user, path).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<()> {
        self.inner.cwd(user, path).await
    }
}

/// Passive port ranges below Linux's ephemeral range, spread by process id so that parallel
/// test processes do not collide, and by a counter inside one process.
fn passive_ports() -> std::ops::RangeInclusive<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) % 40;
    let base = 20_000 + (std::process::id() % 24) as u16 * 400 + slot * 10;
    base..=base + 9
}

pub struct Server {
    pub port: u16,
    root: tempfile::TempDir,
    /// The certificate (PEM) when the server speaks TLS.
    cert: Option<PathBuf>,
}

#[derive(Default)]
pub struct ServerOptions {
    tls: bool,
    cut_after: Option<u64>,
    stall: bool,
    /// Accept only active-mode (PORT) data connections.
    active: bool,
}

impl Server {
    pub async fn start(options: ServerOptions) -> Server {
        let root = tempfile::tempdir().unwrap();
        let files = root.path().to_path_buf();
        let cert = options.tls.then(|| {
            let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
            let cert_path = root.path().join("cert.pem");
            let key_path = root.path().join("key.pem");
            std::fs::write(&cert_path, key.cert.pem()).unwrap();
            std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
            (cert_path, key_path)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let passive = passive_ports();
        let tls_files = cert.clone();
        let cut_after = options.cut_after;
        let stall = options.stall;
        let mode = if options.active {
            libunftp::options::ActivePassiveMode::ActiveOnly
        } else {
            libunftp::options::ActivePassiveMode::PassiveOnly
        };
        let data = files.join("data");
        std::fs::create_dir_all(&data).unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let data = data.clone();
                let mut builder = ServerBuilder::with_authenticator(
                    Box::new(move || Breaking {
                        inner: Filesystem::new(data.clone()).unwrap(),
                        cut_after,
                        stall,
                    }),
                    Arc::new(OneUser),
                )
                .passive_ports(passive.clone())
                .active_passive_mode(mode)
                .greeting("test server");
                if let Some((cert, key)) = &tls_files {
                    builder = builder.ftps(cert.clone(), key.clone());
                }
                let server = builder.build().unwrap();
                tokio::spawn(server.service(stream));
            }
        });
        Server {
            port,
            root,
            cert: cert.map(|(c, _)| c),
        }
    }

    /// Puts a file on the server (under its root, folders created).
    pub fn put(&self, path: &str, content: &str) {
        let full = self.data().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    fn has(&self, path: &str) -> bool {
        self.data().join(path.trim_start_matches('/')).exists()
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// A pipeline file for this server; `extra` adds keys at the top level.
    fn pipeline(&self, db: &Db, files: &[&str], extra: &str) -> PathBuf {
        let files: Vec<String> = files.iter().map(|f| format!("{f:?}")).collect();
        let ca = match &self.cert {
            Some(cert) => format!("tls = true\nca_file = {:?}\n", cert.display().to_string()),
            None => String::new(),
        };
        // Files here are complete when the run starts: no wait for them to settle.
        let settle = if extra.contains("settle_secs") {
            ""
        } else {
            "settle_secs = 0\n"
        };
        let text = format!(
            "name = \"ftp-test\"\norganization = \"{ORG}\"\nsource = \"{SRC}\"\nfiles = [{}]\nchunk_size = 50\n{settle}{extra}\n[ftp]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\npassword_env = \"{PASSWORD_ENV}\"\ntimeout_secs = 5\n{ca}",
            files.join(", "),
            self.port
        );
        let path = db.dir.path().join("ftp.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

const PASSWORD_ENV: &str = "CRM_TEST_FTP_PASSWORD";

/// What `crm-import run` left behind.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    report: serde_json::Value,
    report_text: String,
}

/// Runs the pipeline as a user would, with the password in the environment (`password`).
async fn run(db: &Db, pipeline: PathBuf, password: &str) -> Ran {
    run_with(db, pipeline, password, &[]).await
}

/// [`run`] with more arguments.
async fn run_with(db: &Db, pipeline: PathBuf, password: &str, args: &[&str]) -> Ran {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let db_url = db.url.clone();
    let report_path = db.dir.path().join("report.json");
    let _ = std::fs::remove_file(&report_path);
    let password = password.to_owned();
    let path = report_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_crm-import"))
            .arg("run")
            .arg(&pipeline)
            .arg("--report-json")
            .arg(&path)
            .args(&args)
            .env("DATABASE_URL", db_url)
            .env(PASSWORD_ENV, password)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report_text = std::fs::read_to_string(&report_path).unwrap_or_default();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: serde_json::from_str(&report_text).unwrap_or_default(),
        report_text,
    }
}

impl Ran {
    fn error_code(&self) -> &str {
        self.report["error"]["code"].as_str().unwrap_or("")
    }

    fn error_message(&self) -> &str {
        self.report["error"]["message"].as_str().unwrap_or("")
    }

    /// The password never shows, whatever happened (RUST_LOG=trace included).
    fn assert_no_secret(&self) {
        for (what, text) in [
            ("stdout", &self.stdout),
            ("stderr", &self.stderr),
            ("report", &self.report_text),
        ] {
            assert!(!text.contains(PASSWORD), "the password leaked into {what}");
        }
    }
}

#[tokio::test]
async fn a_file_is_streamed_from_the_ftp_server() {
    let server = Server::start(ServerOptions::default()).await;
    server.put(
        "/sber/offers.xml",
        &std::fs::read_to_string(testdata("demo.xml")).unwrap(),
    );
    let db = Db::new().await;
    let ran = run(
        &db,
        server.pipeline(&db, &["/sber/offers.xml"], ""),
        PASSWORD,
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(ran.report["records"], 7);
    assert_eq!(
        ran.report["files"][0]["file"],
        format!("ftp://127.0.0.1:{}/sber/offers.xml", server.port)
    );
    assert_eq!(db.of_type(ORG, "client").await.len(), 4);
    assert!(
        server.has("/sber/offers.xml"),
        "kept without delete_after_read"
    );
    ran.assert_no_secret();
}

#[tokio::test]
async fn explicit_tls_protects_the_control_and_data_connections() {
    let server = Server::start(ServerOptions {
        tls: true,
        ..ServerOptions::default()
    })
    .await;
    server.put("/offers.xml", &clients(1, 120));
    let db = Db::new().await;
    let ran = run(&db, server.pipeline(&db, &["/offers.xml"], ""), PASSWORD).await;
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(db.of_type(ORG, "client").await.len(), 120);
    ran.assert_no_secret();
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_a_hint_and_no_secret() {
    let server = Server::start(ServerOptions::default()).await;
    server.put("/offers.xml", &clients(1, 3));
    let db = Db::new().await;
    let ran = run(
        &db,
        server.pipeline(&db, &["/offers.xml"], ""),
        "wrong-password",
    )
    .await;
    assert_eq!(ran.code, Some(1));
    assert_eq!(ran.error_code(), "ftp_login_failed");
    assert!(
        ran.error_message().contains(PASSWORD_ENV),
        "{}",
        ran.error_message()
    );
    assert!(!ran.stderr.contains("wrong-password") && !ran.stdout.contains("wrong-password"));
    assert!(!ran.report_text.contains("wrong-password"));
    assert!(db.of_type(ORG, "client").await.is_empty());
}

#[tokio::test]
async fn a_missing_password_variable_is_a_configuration_error() {
    let server = Server::start(ServerOptions::default()).await;
    let db = Db::new().await;
    let pipeline = server.pipeline(&db, &["/offers.xml"], "");
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace(PASSWORD_ENV, "CRM_TEST_NO_SUCH_VARIABLE");
    std::fs::write(&pipeline, text).unwrap();
    let ran = run(&db, pipeline, PASSWORD).await;
    assert_eq!(ran.code, Some(2));
    assert_eq!(ran.error_code(), "ftp_password_missing");
    assert!(ran.error_message().contains("CRM_TEST_NO_SUCH_VARIABLE"));
}

#[tokio::test]
async fn a_missing_file_says_so() {
    let server = Server::start(ServerOptions::default()).await;
    let db = Db::new().await;
    let ran = run(&db, server.pipeline(&db, &["/sber/nope.xml"], ""), PASSWORD).await;
    assert_eq!(ran.code, Some(1));
    assert_eq!(ran.error_code(), "not_found", "{}", ran.report_text);
    assert!(
        ran.error_message().contains("/sber/nope.xml"),
        "{}",
        ran.error_message()
    );
}

#[tokio::test]
async fn a_catalogue_is_imported_in_name_order_and_only_matching_files() {
    let server = Server::start(ServerOptions::default()).await;
    // The same client in both files: the later file (by name) must win.
    server.put(
        "/exports/2026-11-02.xml",
        &doc("", &client("C-1", "Позже", Some("+79160000001"), "")),
    );
    server.put(
        "/exports/2026-11-01.xml",
        &doc("", &client("C-1", "Раньше", Some("+79160000001"), "")),
    );
    server.put("/exports/readme.txt", "not an export");
    let db = Db::new().await;
    let ran = run(&db, server.pipeline(&db, &["/exports/*.xml"], ""), PASSWORD).await;
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    let files: Vec<&str> = ran.report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    let url = |name: &str| format!("ftp://127.0.0.1:{}/exports/{name}", server.port);
    assert_eq!(files, vec![url("2026-11-01.xml"), url("2026-11-02.xml")]);
    assert_eq!(db.client(ORG, SRC, "C-1").await.unwrap()["name"], "Позже");
}

/// 1C still writes tonight's second file when the pick-up starts: the first file is imported,
/// the growing one and every file after it stay on the server for the next run, with a
/// warning, and the run ends ok (delete_after_read deletes only what was imported).
#[tokio::test]
async fn a_file_still_being_written_is_left_on_the_server_for_the_next_run() {
    let server = Server::start(ServerOptions::default()).await;
    server.put("/exports/a.xml", &clients(1, 10));
    let growing = clients(100, 400);
    server.put("/exports/b.xml", &growing[..1000]);
    server.put("/exports/c.xml", &clients(500, 510));
    let path = server.data().join("exports/b.xml");
    let writer = std::thread::spawn(move || {
        // Appends the rest over three seconds, as an exporting program writes.
        let rest = growing.as_bytes()[1000..].to_vec();
        for part in rest.chunks(rest.len() / 30 + 1) {
            std::thread::sleep(Duration::from_millis(100));
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut file, part).unwrap();
        }
    });
    let db = Db::new().await;
    let ran = run(
        &db,
        server.pipeline(
            &db,
            &["/exports/*.xml"],
            "settle_secs = 1\ndelete_after_read = true",
        ),
        PASSWORD,
    )
    .await;
    writer.join().unwrap();
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(ran.report["status"], "ok", "{}", ran.report_text);
    let warning = &ran.report["warnings"][0];
    assert_eq!(
        warning["code"], "file_still_being_written",
        "{}",
        ran.report_text
    );
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains("/exports/b.xml is still being written (")
            && message.contains("bytes, then 1 s later"),
        "{message}"
    );
    assert_eq!(ran.report["records"], 10, "a.xml only");
    assert!(!server.has("/exports/a.xml"), "imported: deleted");
    assert!(
        server.has("/exports/b.xml") && server.has("/exports/c.xml"),
        "kept for the next run"
    );
    assert!(db.client(ORG, SRC, "C-100").await.is_none());
    assert!(db.client(ORG, SRC, "C-500").await.is_none());

    // Once written, the next run imports both.
    let again = run(
        &db,
        server.pipeline(&db, &["/exports/*.xml"], "settle_secs = 1"),
        PASSWORD,
    )
    .await;
    assert_eq!(again.code, Some(0), "{}", again.report_text);
    assert_eq!(again.report["warnings_total"], 0, "{}", again.report_text);
    assert!(db.client(ORG, SRC, "C-400").await.is_some());
    assert!(db.client(ORG, SRC, "C-510").await.is_some());
}

#[tokio::test]
async fn delete_after_read_deletes_each_file_only_after_its_import_succeeded() {
    let server = Server::start(ServerOptions::default()).await;
    server.put("/exports/a.xml", &clients(1, 60));
    // b.xml fails at its second record; c.xml is never reached.
    server.put(
        "/exports/b.xml",
        &doc(
            "",
            &(client("C-100", "Есть", Some("+79160000100"), "")
                + &client("C-101", "Плохой", Some("+7 916 12"), "")),
        ),
    );
    server.put("/exports/c.xml", &clients(200, 201));
    let db = Db::new().await;
    let ran = run(
        &db,
        server.pipeline(&db, &["/exports/*.xml"], "delete_after_read = true"),
        PASSWORD,
    )
    .await;
    assert_eq!(ran.code, Some(1));
    assert_eq!(ran.error_code(), "invalid_phone", "{}", ran.report_text);
    assert!(
        !server.has("/exports/a.xml"),
        "imported without error: deleted"
    );
    assert!(server.has("/exports/b.xml"), "its import failed: kept");
    assert!(server.has("/exports/c.xml"), "never reached: kept");
    assert_eq!(
        ran.report["records"], 61,
        "a.xml and the first record of b.xml"
    );
    assert!(db.client(ORG, SRC, "C-100").await.is_some());
    assert!(db.client(ORG, SRC, "C-200").await.is_none());
}

#[tokio::test]
async fn a_transfer_cut_midway_keeps_the_prefix_and_the_file() {
    let content = clients(1, 300);
    let server = Server::start(ServerOptions {
        cut_after: Some(content.len() as u64 / 2),
        ..ServerOptions::default()
    })
    .await;
    server.put("/offers.xml", &content);
    let db = Db::new().await;
    let ran = run(
        &db,
        server.pipeline(&db, &["/offers.xml"], "delete_after_read = true"),
        PASSWORD,
    )
    .await;
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(
        ran.error_code(),
        "ftp_transfer_failed",
        "{}",
        ran.report_text
    );
    assert!(
        ran.report["error"]["line"].as_u64().is_some(),
        "where the bytes stopped"
    );
    let kept = db.of_type(ORG, "client").await.len();
    assert!(kept > 50 && kept < 300, "{kept} clients kept");
    assert_eq!(ran.report["records"], kept as u64);
    assert!(server.has("/offers.xml"), "a broken transfer never deletes");
    ran.assert_no_secret();
}

#[tokio::test]
async fn a_local_file_beside_an_ftp_catalogue_uses_a_file_url() {
    let server = Server::start(ServerOptions::default()).await;
    server.put("/exports/a.xml", &clients(1, 2));
    let db = Db::new().await;
    let local = db.file(&clients(3, 4));
    let ran = run(
        &db,
        server.pipeline(&db, &["/exports/a.xml", &format!("file:{local}")], ""),
        PASSWORD,
    )
    .await;
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(db.of_type(ORG, "client").await.len(), 4);
}

#[tokio::test]
async fn a_stalled_transfer_times_out_and_keeps_the_prefix() {
    let content = clients(1, 300);
    let server = Server::start(ServerOptions {
        cut_after: Some(content.len() as u64 / 2),
        stall: true,
        ..ServerOptions::default()
    })
    .await;
    server.put("/offers.xml", &content);
    let db = Db::new().await;
    let pipeline = server.pipeline(&db, &["/offers.xml"], "delete_after_read = true");
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("timeout_secs = 5", "timeout_secs = 1");
    std::fs::write(&pipeline, text).unwrap();
    let ran = run(&db, pipeline, PASSWORD).await;
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.error_message()
            .contains("no bytes from the FTP server for 1 s"),
        "{}",
        ran.report_text
    );
    let kept = db.of_type(ORG, "client").await.len();
    assert!(kept > 50 && kept < 300, "{kept} clients kept");
    assert!(server.has("/offers.xml"));
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let server = Server::start(ServerOptions {
        tls: true,
        ..ServerOptions::default()
    })
    .await;
    server.put("/offers.xml", &clients(1, 2));
    let db = Db::new().await;
    let pipeline = server.pipeline(&db, &["/offers.xml"], "");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let without_ca: String = text
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&pipeline, without_ca).unwrap();
    let ran = run(&db, pipeline, PASSWORD).await;
    assert_eq!(ran.code, Some(1));
    assert_eq!(ran.error_code(), "ftp_tls_failed", "{}", ran.report_text);
    assert!(ran.error_message().contains("ca_file"));
    assert!(db.of_type(ORG, "client").await.is_empty());
}

#[tokio::test]
async fn active_mode_works_when_passive_is_off() {
    let server = Server::start(ServerOptions {
        active: true,
        ..ServerOptions::default()
    })
    .await;
    server.put("/offers.xml", &clients(1, 30));
    let db = Db::new().await;
    let pipeline = server.pipeline(&db, &["/offers.xml"], "");
    let text = std::fs::read_to_string(&pipeline).unwrap() + "passive = false\n";
    std::fs::write(&pipeline, text).unwrap();
    let ran = run(&db, pipeline, PASSWORD).await;
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(db.of_type(ORG, "client").await.len(), 30);
}

#[tokio::test]
async fn a_halted_file_resumes_from_the_server_after_the_fix() {
    let server = Server::start(ServerOptions::default()).await;
    server.put("/exports/e.xml", &crate::resume::export(Some(250)));
    let db = Db::new().await;
    let pipeline = server.pipeline(&db, &["/exports/e.xml"], "");
    let first = run(&db, pipeline.clone(), PASSWORD).await;
    assert_eq!(first.error_code(), "invalid_phone", "{}", first.stdout);
    server.put("/exports/e.xml", &crate::resume::export(None));
    let resumed = run_with(&db, pipeline, PASSWORD, &["--resume"]).await;
    assert_eq!(
        resumed.code,
        Some(0),
        "{}{}",
        resumed.stdout,
        resumed.stderr
    );
    assert_eq!(resumed.report["records"], 51, "C-250 … C-300 only");
    assert_eq!(db.export(ORG).await, crate::resume::clean().await);
    resumed.assert_no_secret();
}
