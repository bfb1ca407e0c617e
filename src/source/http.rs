//! HTTP(S) links: the body streams into the parser; statuses become errors a user can act on.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::io::StreamReader;

use super::{Body, Input, SourceError, display_address};

/// How long a download may go without a byte before it fails.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What happened to a body that broke off, in the terms a person can check against the
/// file: how much arrived, of how much the server announced.
fn body_error(e: reqwest::Error, received: u64, expected: Option<u64>) -> String {
    let of = expected.map_or_else(String::new, |n| format!(" of {n} expected"));
    if e.is_timeout() {
        format!(
            "no bytes arrived for {} s after {received} bytes{of}: the server stalled",
            READ_TIMEOUT.as_secs()
        )
    } else {
        format!(
            "the connection closed after {received} bytes{of} ({})",
            e.without_url()
        )
    }
}

/// Streams an HTTP(S) body: redirects followed (up to 10), no copy on disk, a stalled
/// transfer fails after a minute without bytes.
pub async fn open(address: &str) -> Result<Input, SourceError> {
    let shown = display_address(address);
    let http_error = |e: reqwest::Error| SourceError::Http {
        address: shown.clone(),
        message: if e.is_timeout() {
            format!(
                "the server sent no answer within {} s",
                READ_TIMEOUT.as_secs()
            )
        } else {
            e.without_url().to_string()
        },
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(READ_TIMEOUT)
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
    let mut received = 0u64;
    let body = response.bytes_stream().map(move |item| match item {
        Ok(bytes) => {
            received += bytes.len() as u64;
            Ok(bytes)
        }
        Err(e) => Err(io::Error::other(body_error(e, received, size))),
    });
    Ok(Input {
        name: Arc::from(shown.as_str()),
        size,
        body: Body::Stream(Box::new(StreamReader::new(body))),
    })
}
