//! Where the bytes of an export come from. Every source is a byte stream with a name, so
//! the parser never knows whether it reads a local file, an HTTP body or an FTP transfer.
//! [`Sources`] walks a run's addresses: it expands catalogues (`/exports/*.xml`), opens each
//! file, completes its transfer after the import and deletes it when asked.

mod ftp;
mod http;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncRead;

pub use ftp::{FtpSettings, Pending};

/// An export being read: its name in reports and its bytes.
pub struct Input {
    pub name: Arc<str>,
    /// The size in bytes, when the source knows it (for progress).
    pub size: Option<u64>,
    pub body: Body,
}

/// An input's bytes. The parse stage runs on a thread of its own, so a local file is read
/// there directly: through tokio's file every read went to the blocking pool and was copied
/// back, a thread hand-over per read.
pub enum Body {
    File(std::fs::File),
    Stream(Box<dyn AsyncRead + Send + Unpin>),
}

/// What a run reads: its addresses in order, and how to reach the FTP ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    pub addresses: Vec<String>,
    /// With FTP settings, a plain path (`/exports/a.xml`) is a path on that server;
    /// local files are then written as `file:` URLs.
    pub ftp: Option<Arc<FtpSettings>>,
    /// Delete each FTP file after it was imported without error.
    pub delete_after_read: bool,
    /// Look at each file's size twice this far apart before reading it; a file whose size
    /// changed is still being written (zero: read at once).
    pub settle: std::time::Duration,
    /// A file with fewer records is refused before any of it is applied.
    pub min_records: Option<u64>,
    /// A file with this many percent fewer records than the last successful run read from
    /// it is refused before any of it is applied.
    pub max_shrink_percent: Option<u64>,
    /// The files hold the whole source (`mode = "snapshot"`): after a run that ended ok, what
    /// they left out is archived, unless it is more than this percent of the source's rows.
    pub snapshot: Option<u64>,
}

impl Files {
    /// Local paths, `file:` URLs and links, for `import` and `check`.
    pub fn local(addresses: &[String]) -> Self {
        Files {
            addresses: addresses.to_vec(),
            ..Files::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{address}: cannot open the file: {source}")]
    Open {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{address}: no file at this link (HTTP 404): check the link, or whether the file was moved"
    )]
    NotFound { address: String },
    #[error("{address}: the server answered HTTP {status}{hint}")]
    Status {
        address: String,
        status: u16,
        hint: &'static str,
    },
    #[error("{address}: the download failed: {message}")]
    Http { address: String, message: String },
    #[error(
        "{address}: a pattern may use * and ? in the file name only, not in folders ({message})"
    )]
    Pattern { address: String, message: String },
    #[error("FTP server {server}: cannot connect: {message}")]
    FtpConnect { server: String, message: String },
    #[error(
        "FTP server {server}: TLS failed: {message}; check `tls`, and `ca_file` if a private CA issued the server's certificate"
    )]
    FtpTls { server: String, message: String },
    #[error(
        "FTP server {server}: login refused for user {user:?}; check ftp.user and {password_from}"
    )]
    FtpLogin {
        server: String,
        user: String,
        password_from: String,
    },
    #[error(
        "the FTP password is missing: set the environment variable {var} (named by ftp.password_env)"
    )]
    FtpPassword { var: String },
    #[error(
        "{address}: no such file or folder on the FTP server; paths start at the FTP root and use /"
    )]
    FtpNoFile { address: String },
    #[error(
        "{address}: the FTP transfer failed: {message}; records before the failure stay imported, the file stays on the server"
    )]
    FtpTransfer { address: String, message: String },
    #[error(
        "{address}: imported, but the file could not be deleted from the FTP server: {message}; the next run imports it again (unchanged)"
    )]
    FtpDelete { address: String, message: String },
}

impl SourceError {
    /// Whether this error is the cause of what the parser saw at the end of the bytes (a
    /// transfer cut short), so that both belong in one message.
    pub fn explains_parse_error(&self) -> bool {
        matches!(self, SourceError::FtpTransfer { .. })
    }

    /// The pipeline is not runnable as configured (not a failure of the source itself).
    pub fn is_configuration(&self) -> bool {
        matches!(self, SourceError::FtpPassword { .. })
    }

    pub fn code(&self) -> &'static str {
        match self {
            SourceError::Open { .. } => "source_unreadable",
            SourceError::NotFound { .. } | SourceError::FtpNoFile { .. } => "not_found",
            SourceError::Status { .. } => "http_status",
            SourceError::Http { .. } => "download_failed",
            SourceError::Pattern { .. } => "bad_pattern",
            SourceError::FtpConnect { .. } => "ftp_connect_failed",
            SourceError::FtpTls { .. } => "ftp_tls_failed",
            SourceError::FtpLogin { .. } => "ftp_login_failed",
            SourceError::FtpPassword { .. } => "ftp_password_missing",
            SourceError::FtpTransfer { .. } => "ftp_transfer_failed",
            SourceError::FtpDelete { .. } => "ftp_delete_failed",
        }
    }
}

/// «Проверить соединение» for every address of `files`: what each finds, or the first
/// error (one login for all).
pub async fn probe_all(files: &Files) -> Result<Vec<(String, Option<Probe>)>, SourceError> {
    let mut sources = Sources::new(files);
    let mut found = Vec::new();
    for address in &files.addresses {
        match sources.probe(address).await {
            Ok(probe) => found.push((address.clone(), probe)),
            Err(e) => {
                sources.close().await;
                return Err(e);
            }
        }
    }
    sources.close().await;
    Ok(found)
}

/// What «Проверить соединение» found for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub folder: String,
    /// Every file of the folder.
    pub listed: Vec<String>,
    /// The files the address names.
    pub matching: Vec<String>,
}

/// A local path, plain or as a `file:` URL (`file:///data/export.xml`).
pub fn local_path(address: &str) -> PathBuf {
    let path = address
        .strip_prefix("file://")
        .or_else(|| address.strip_prefix("file:"))
        .unwrap_or(address);
    PathBuf::from(path)
}

/// The address as reports may show it: a password in a URL (`https://user:secret@host/…`)
/// never reaches a report, a log or an e-mail.
pub fn display_address(address: &str) -> String {
    match address.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => address.to_owned(),
            }
        }
        None => address.to_owned(),
    }
}

fn is_http(address: &str) -> bool {
    let lower = address.get(..8).unwrap_or(address).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn is_file_url(address: &str) -> bool {
    address.starts_with("file:")
}

/// An opened file whose source wants to hear how its import ended.
pub struct Opened {
    pub input: Input,
    pending: Option<Pending>,
}

/// The sources of one run; holds the FTP connection from the first FTP file to the end.
pub struct Sources {
    ftp: Option<Arc<FtpSettings>>,
    session: Option<ftp::FtpSession>,
}

impl Sources {
    pub fn new(files: &Files) -> Self {
        Sources {
            ftp: files.ftp.clone(),
            session: None,
        }
    }

    fn on_ftp(&self, address: &str) -> bool {
        self.ftp.is_some() && !is_http(address) && !is_file_url(address)
    }

    async fn session(&mut self) -> Result<&mut ftp::FtpSession, SourceError> {
        let session = match self.session.take() {
            Some(session) => session,
            None => {
                let settings = self.ftp.clone().ok_or_else(|| SourceError::FtpConnect {
                    server: "(none)".into(),
                    message: "the pipeline has no [ftp] section".into(),
                })?;
                ftp::FtpSession::connect(settings).await?
            }
        };
        Ok(self.session.insert(session))
    }

    /// The files an address names: itself, or for a last segment with `*` or `?`, every
    /// matching file of that folder in name order (none is not an error: the catalogue is
    /// simply empty tonight).
    pub async fn expand(&mut self, address: &str) -> Result<Vec<String>, SourceError> {
        let (folder, name) = match address.rsplit_once('/') {
            Some((folder, name)) => (folder, name),
            None => ("", address),
        };
        if !name.contains(['*', '?']) || is_http(address) {
            return Ok(vec![address.to_owned()]);
        }
        if folder.contains(['*', '?']) {
            return Err(SourceError::Pattern {
                address: display_address(address),
                message: "the folder has a wildcard".into(),
            });
        }
        let pattern = glob::Pattern::new(name).map_err(|e| SourceError::Pattern {
            address: address.to_owned(),
            message: e.to_string(),
        })?;
        if self.on_ftp(address) {
            let folder = if folder.is_empty() { "/" } else { folder };
            return self.session().await?.list(folder, &pattern).await;
        }
        list_local(address, folder, &pattern)
    }

    /// For «Проверить соединение»: logs in (once per run of checks), lists the folder of an
    /// FTP address and says which of its files the address names. `None` for an address
    /// that is not on the FTP server.
    pub async fn probe(&mut self, address: &str) -> Result<Option<Probe>, SourceError> {
        if !self.on_ftp(address) {
            return Ok(None);
        }
        let (folder, name) = address.rsplit_once('/').unwrap_or(("", address));
        let folder = if folder.is_empty() { "/" } else { folder };
        let everything = glob::Pattern::new("*").map_err(|e| SourceError::Pattern {
            address: address.to_owned(),
            message: e.to_string(),
        })?;
        let named = if name.contains(['*', '?']) {
            glob::Pattern::new(name)
        } else {
            glob::Pattern::new(&glob::Pattern::escape(name))
        }
        .map_err(|e| SourceError::Pattern {
            address: address.to_owned(),
            message: e.to_string(),
        })?;
        let listed = self.session().await?.list(folder, &everything).await?;
        let matching = listed
            .iter()
            .filter(|path| named.matches(path.rsplit('/').next().unwrap_or(path)))
            .cloned()
            .collect();
        Ok(Some(Probe {
            folder: folder.to_owned(),
            listed,
            matching,
        }))
    }

    /// The size of one file (not a pattern), where its source tells it without reading it:
    /// a local file, or an FTP file whose server answers `SIZE`.
    pub async fn size(&mut self, address: &str) -> Result<Option<u64>, SourceError> {
        if self.on_ftp(address) {
            return self.session().await?.size(address).await;
        }
        if is_http(address) {
            return Ok(None);
        }
        Ok(tokio::fs::metadata(local_path(address))
            .await
            .ok()
            .map(|m| m.len()))
    }

    /// Opens one file (not a pattern).
    pub async fn open(&mut self, address: &str) -> Result<Opened, SourceError> {
        if self.on_ftp(address) {
            let (input, pending) = self.session().await?.open(address).await?;
            return Ok(Opened {
                input,
                pending: Some(pending),
            });
        }
        let input = open(address).await?;
        Ok(Opened {
            input,
            pending: None,
        })
    }

    /// Called once the pipeline has let go of the file's bytes: an FTP transfer is
    /// confirmed by the server, and the file is deleted when `delete` (the import of that
    /// file ended without error).
    pub async fn finish(
        &mut self,
        address: &str,
        pending: Option<Pending>,
        delete: bool,
    ) -> Result<(), SourceError> {
        let Some(pending) = pending else {
            return Ok(());
        };
        let session = self.session().await?;
        session.complete(pending).await?;
        if delete {
            session.delete(address).await?;
        }
        Ok(())
    }

    /// How reports name a file: FTP files as `ftp://host:port/path`, URLs without passwords.
    pub fn shown(&self, address: &str) -> String {
        match &self.ftp {
            Some(ftp) if self.on_ftp(address) => ftp.url(address),
            _ => display_address(address),
        }
    }

    /// Ends the run's connections.
    pub async fn close(mut self) {
        if let Some(session) = self.session.take() {
            session.quit().await;
        }
    }
}

impl Opened {
    /// Splits the bytes (for the pipeline) from what [`Sources::finish`] needs afterwards.
    pub fn split(self) -> (Input, Option<Pending>) {
        (self.input, self.pending)
    }
}

fn list_local(
    address: &str,
    folder: &str,
    pattern: &glob::Pattern,
) -> Result<Vec<String>, SourceError> {
    let dir = if folder.is_empty() {
        PathBuf::from(".")
    } else {
        local_path(folder)
    };
    let entries = std::fs::read_dir(&dir).map_err(|source| SourceError::Open {
        address: address.to_owned(),
        source,
    })?;
    let mut paths: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| pattern.matches(name))
        .map(|name| Path::new(&dir).join(name).to_string_lossy().into_owned())
        .collect();
    paths.sort();
    Ok(paths)
}

/// Opens the export an address names: an `http(s)://` link or a local path.
pub async fn open(address: &str) -> Result<Input, SourceError> {
    if is_http(address) {
        return http::open(address).await;
    }
    let path = local_path(address);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|source| SourceError::Open {
            address: address.to_owned(),
            source,
        })?;
    let size = file.metadata().await.ok().map(|m| m.len());
    Ok(Input {
        name: Arc::from(address),
        size,
        body: Body::File(file.into_std().await),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            display_address("https://crm:s3cret@files.example/x.xml"),
            "https://***@files.example/x.xml"
        );
        assert_eq!(
            display_address("https://files.example/x.xml?dl=1"),
            "https://files.example/x.xml?dl=1"
        );
        assert_eq!(display_address("/data/x.xml"), "/data/x.xml");
    }
}
