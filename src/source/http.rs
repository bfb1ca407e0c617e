//! HTTP(S) links: the body streams into the parser; statuses become errors a user can act on.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tokio_util::io::StreamReader;

use super::{Body, Input, SourceError, display_address};

/// Streams an HTTP(S) body: redirects followed (up to 10), no copy on disk, a stalled
/// transfer fails after a minute without bytes.
pub async fn open(address: &str) -> Result<Input, SourceError> {
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
        body: Body::Stream(Box::new(StreamReader::new(body))),
    })
}
