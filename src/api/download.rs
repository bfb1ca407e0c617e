//! A run's kept results as a download (SPEC §12): the stored gzip parts streamed in order,
//! as they are to a client that accepts gzip, decompressed on the way to one that does not.
//! The API and the console serve the same bytes.

use std::io::Write;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flate2::write::GzDecoder;

use crate::store::{RunRow, RunStatus, Store, StoreError};

/// Why a run's results cannot be downloaded.
#[derive(Debug)]
pub enum Unavailable {
    /// The run has not ended: its results are not complete yet.
    Running,
    /// The run kept none (it was refused, or ran before results were kept).
    None,
    Store(StoreError),
}

impl From<StoreError> for Unavailable {
    fn from(e: StoreError) -> Self {
        Unavailable::Store(e)
    }
}

impl Unavailable {
    /// The status and the message the API's error body and the console's page show.
    pub fn explain(&self) -> (StatusCode, &'static str, String) {
        match self {
            Unavailable::Running => (
                StatusCode::CONFLICT,
                "run_in_progress",
                "the run is still going: its results can be downloaded once it ends".to_owned(),
            ),
            Unavailable::None => (
                StatusCode::NOT_FOUND,
                "no_results",
                "this run kept no results (it was refused, or ran before results were kept)"
                    .to_owned(),
            ),
            Unavailable::Store(e) => (StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string()),
        }
    }
}

/// The results of `run` (already known to be the asker's) as a CSV download.
pub async fn results<S: Store + 'static>(
    store: Arc<S>,
    run: &RunRow,
    headers: &HeaderMap,
) -> Result<Response, Unavailable> {
    if run.status == RunStatus::Running {
        return Err(Unavailable::Running);
    }
    let first = store
        .results_part(run.id, 0)
        .await?
        .ok_or(Unavailable::None)?;
    let gzip = accepts_gzip(headers);
    let run_id = run.id;
    let start = Parts {
        first: Some(first),
        next: 1,
        decoder: (!gzip).then(|| GzDecoder::new(Vec::new())),
        done: false,
    };
    let parts = futures::stream::unfold(start, move |mut parts| {
        let store = store.clone();
        async move {
            let bytes = parts.step(&*store, run_id).await;
            bytes.map(|b| (b.map(Bytes::from), parts))
        }
    });
    let mut response = Body::from_stream(parts).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(name) = HeaderValue::from_str(&format!(
        "attachment; filename=\"run-{run_id}-results.csv\""
    )) {
        h.insert(header::CONTENT_DISPOSITION, name);
    }
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(response)
}

/// Where a download is: the part in hand, the next to fetch, and the decoder for a client
/// that takes no gzip.
struct Parts {
    first: Option<Vec<u8>>,
    next: i64,
    decoder: Option<GzDecoder<Vec<u8>>>,
    done: bool,
}

impl Parts {
    /// The next bytes to send; `None` after the last.
    async fn step<S: Store>(&mut self, store: &S, run_id: i64) -> Option<std::io::Result<Vec<u8>>> {
        if self.done {
            return None;
        }
        let bytes = match self.first.take() {
            Some(bytes) => bytes,
            None => match store.results_part(run_id, self.next).await {
                Ok(Some(bytes)) => {
                    self.next += 1;
                    bytes
                }
                Ok(None) => {
                    self.done = true;
                    // What the decoder still holds after the last part.
                    let mut decoder = self.decoder.take()?;
                    return Some(
                        decoder
                            .try_finish()
                            .map(|()| std::mem::take(decoder.get_mut())),
                    );
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(std::io::Error::other(e)));
                }
            },
        };
        Some(match &mut self.decoder {
            None => Ok(bytes),
            Some(d) => d.write_all(&bytes).map(|()| std::mem::take(d.get_mut())),
        })
    }
}

/// The client takes a gzip body as it is (a browser does; curl without `--compressed` does
/// not, and gets the CSV).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let gzip = parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"));
            // `gzip;q=0` refuses it.
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            gzip && !refused
        })
}
