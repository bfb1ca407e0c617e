//! Where the bytes of an export come from. Every source is an async byte stream with a
//! name, so the parser never knows whether it reads a local file or an HTTP body.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

/// An export being read: its name in reports and its bytes.
pub struct Input {
    pub name: Arc<str>,
    /// The size in bytes, when the source knows it (for progress).
    pub size: Option<u64>,
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
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
}

impl SourceError {
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::Open { .. } => "source_unreadable",
            SourceError::NotFound { .. } => "not_found",
            SourceError::Status { .. } => "http_status",
            SourceError::Http { .. } => "download_failed",
        }
    }
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

/// Opens the export an address names: an `http(s)://` link or a local path.
pub async fn open(address: &str) -> Result<Input, SourceError> {
    if is_http(address) {
        return open_http(address).await;
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
        reader: Box::new(file),
    })
}

/// Streams an HTTP(S) body: redirects followed (up to 10), no copy on disk, a stalled
/// transfer fails after a minute without bytes.
async fn open_http(address: &str) -> Result<Input, SourceError> {
    let shown = display_address(address);
    let http_error = |e: reqwest::Error| SourceError::Http {
        address: shown.clone(),
        message: e.without_url().to_string(),
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
        .map_err(http_error)?;
    let response = client.get(address).send().await.map_err(http_error)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(SourceError::NotFound { address: shown });
    }
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 | 403 => ": the link needs a login; use a direct public download link",
            500..=599 => ": the server failed; try again later",
            _ => "",
        };
        return Err(SourceError::Status {
            address: shown,
            status: status.as_u16(),
            hint,
        });
    }
    let size = response.content_length();
    let body = response
        .bytes_stream()
        .map_err(|e| io::Error::other(e.without_url()));
    Ok(Input {
        name: Arc::from(shown.as_str()),
        size,
        reader: Box::new(StreamReader::new(body)),
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
