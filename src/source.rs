//! Where the bytes of an export come from. Every source is an async byte stream with a
//! name, so the parser never knows whether it reads a local file, an FTP transfer or an
//! HTTP body.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncRead;

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
        source: std::io::Error,
    },
}

impl SourceError {
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::Open { .. } => "source_unreadable",
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

/// Opens the export an address names.
pub async fn open(address: &str) -> Result<Input, SourceError> {
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
