//! Pushes: records in, per-record outcomes out, with the file pipeline's validation, matching
//! table and halt rule. The JSON form is read whole (up to the body limit) and answered with
//! one object, `200` or `422`; the NDJSON form streams both ways — records are applied while
//! the body arrives and each outcome goes out as an NDJSON line, the last line says how the
//! push ended — so a million records take the memory of a few chunks.

use std::io::{self, BufRead, Read};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::records::{self, Entity};
use super::shapes::{ImportAnswer, PushError, PushOutcome, PushResult};
use super::{Api, ApiError, organization};
use crate::apply::{Applied, Applier, Flow};
use crate::error::Warnings;
use crate::layout::Layout;
use crate::model::{Parsed, RecordOutcome};
use crate::observe::Silent;
use crate::pipeline;
use crate::report::{FileReport, RunReport};
use crate::results::{self, Results};
use crate::run::{self, Begun};
use crate::source::{self, Input};
use crate::stage::{Batch, DEFAULT_CHUNK_SIZE, QUEUE};
use crate::store::{Scope, Store, Trigger};
use crate::validate::validate_chunk;

/// A single NDJSON line longer than this is refused (one record is never that big).
const MAX_LINE: u64 = 1024 * 1024;

#[derive(Debug, Deserialize)]
pub struct SourceQuery {
    source: Option<String>,
}

/// Reads a whole JSON body: 415 for another content type, 413 over the limit, 400 with the
/// line and column for bad JSON.
pub async fn read_json<S, T: DeserializeOwned>(
    api: &Api<S>,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    if content_type(headers) != "application/json" {
        return Err(unsupported(headers, "application/json"));
    }
    let bytes = axum::body::to_bytes(body, api.body_limit)
        .await
        .map_err(|_| too_large(api.body_limit))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let mut error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body is not the JSON expected: {e}"),
        );
        error.detail = Some(json!({ "line": e.line(), "column": e.column() }));
        error
    })
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn unsupported(headers: &HeaderMap, expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "Content-Type {:?} is not accepted here: send {expected}",
            content_type(headers)
        ),
    )
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the body is over {} MiB: send large batches as NDJSON (application/x-ndjson), which streams",
            limit / (1024 * 1024)
        ),
    )
}

#[derive(Debug, Deserialize)]
struct JsonPush {
    source: String,
    #[serde(default)]
    clients: Option<Vec<Value>>,
    #[serde(default)]
    premises: Option<Vec<Value>>,
}

/// `POST /api/v1/clients` and `/api/v1/premises`.
pub async fn push<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    entity: Entity,
    headers: HeaderMap,
    Query(query): Query<SourceQuery>,
    body: Body,
) -> Response {
    let result = match content_type(&headers).as_str() {
        "application/x-ndjson" => push_ndjson(&api, entity, &headers, query, body).await,
        _ => push_json(&api, entity, &headers, body).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn push_json<S: Store>(
    api: &Api<S>,
    entity: Entity,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let org = organization(api, headers).await?;
    if content_type(headers) != "application/json" {
        return Err(unsupported(
            headers,
            "application/json or application/x-ndjson",
        ));
    }
    let push: JsonPush = read_json(api, headers, body).await?;
    let items = match entity {
        Entity::Clients => push.clients,
        Entity::Premises => push.premises,
    }
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body needs a list {:?}", entity.key()),
        )
    })?;
    let file: Arc<str> = Arc::from("request");
    let total = items.len() as u64;
    let scope = begin(api, &org, &push.source).await?;
    let run_id = scope.run_id.unwrap_or_default();
    let mut report = RunReport::default();
    report.files.push(FileReport {
        file: file.to_string(),
        records: 0,
        end: None,
    });
    let mut outcomes = Vec::new();
    let results = Arc::new(Mutex::new(Results::kept()));
    let apply = async {
        let mut applier = Applier::new(&*api.store, &scope, &mut report, Arc::new(Silent))
            .collecting()
            .writing(Some(results.clone()));
        let mut index = 0u64;
        for chunk in items.chunks(DEFAULT_CHUNK_SIZE) {
            let parsed: Vec<Parsed> = chunk
                .iter()
                .map(|v| {
                    index += 1;
                    records::parse(entity, v, &file, index, 0)
                })
                .collect();
            let validated = tokio::task::spawn_blocking(move || validate_chunk(parsed))
                .await
                .map_err(|e| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                })?;
            let flow = applier.batch(Batch::Records(validated), &file).await;
            outcomes.extend(applier.take_outcomes().iter().map(outcome));
            if flow == Flow::Halt {
                lock(&results).not_processed(total - index);
                break;
            }
        }
        Ok::<(), ApiError>(())
    };
    run::holding_lease(&*api.store, run_id, apply).await?;
    run::close_results(&*api.store, run_id, &results, &report).await;
    run::end(&*api.store, run_id, &report).await?;
    let status = if report.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let answer = PushResult {
        outcomes: Some(outcomes),
        ..summary(run_id, &report, total)
    };
    Ok((status, Json(answer)).into_response())
}

async fn begin<S: Store>(api: &Api<S>, org: &str, source: &str) -> Result<Scope, ApiError> {
    if source.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_source",
            "name the source (the accounting system, e.g. 1c)",
        ));
    }
    match run::begin(&*api.store, org, source.trim(), None, Trigger::Api).await? {
        Begun::Started(scope) => Ok(scope),
        // Only pipelines hold leases; a push never waits for one.
        Begun::Refused(refused) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_running",
            refused.report.error.map(|e| e.message).unwrap_or_default(),
        )),
    }
}

async fn push_ndjson<S: Store + 'static>(
    api: &Arc<Api<S>>,
    entity: Entity,
    headers: &HeaderMap,
    query: SourceQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let org = organization(api, headers).await?;
    let Some(source) = query.source else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_source",
            "an NDJSON push names its source in the query: ?source=1c",
        ));
    };
    let scope = begin(api, &org, &source).await?;
    let run_id = scope.run_id.unwrap_or_default();
    let bytes = body
        .into_data_stream()
        .map_err(|e| io::Error::other(e.to_string()));
    let reader = SyncIoBridge::new(StreamReader::new(bytes));
    let (parsed_tx, parsed_rx) = mpsc::channel(QUEUE);
    let (total_tx, total_rx) = oneshot::channel();
    tokio::task::spawn_blocking(move || read_lines(entity, reader, parsed_tx, total_tx));
    let mut validated = pipeline::spawn_validate(parsed_rx);
    let (out_tx, out_rx) = mpsc::channel::<Result<Bytes, io::Error>>(QUEUE);
    let store = api.store.clone();
    tokio::spawn(async move {
        let file: Arc<str> = Arc::from("request");
        let mut report = RunReport::default();
        report.files.push(FileReport {
            file: file.to_string(),
            records: 0,
            end: None,
        });
        let mut client_gone = false;
        let results = Arc::new(Mutex::new(Results::kept()));
        let mut seen = 0u64;
        let apply = async {
            let mut applier = Applier::new(&*store, &scope, &mut report, Arc::new(Silent))
                .collecting()
                .writing(Some(results.clone()));
            while let Some(batch) = validated.recv().await {
                if let Batch::Records(items) = &batch {
                    seen += items.len() as u64;
                }
                let flow = applier.batch(batch, &file).await;
                let mut lines = Vec::new();
                for applied in applier.take_outcomes() {
                    let _ = serde_json::to_writer(&mut lines, &outcome(&applied));
                    lines.push(b'\n');
                }
                if !client_gone && out_tx.send(Ok(Bytes::from(lines))).await.is_err() {
                    client_gone = true;
                }
                if flow == Flow::Halt {
                    break;
                }
            }
        };
        run::holding_lease(&*store, run_id, apply).await;
        drop(validated);
        let total = total_rx.await.unwrap_or(report.records);
        lock(&results).not_processed(total.saturating_sub(seen));
        run::close_results(&*store, run_id, &results, &report).await;
        if let Err(e) = run::end(&*store, run_id, &report).await {
            tracing::error!(run_id, error = %e, "cannot record the push");
        }
        let last = PushResult {
            done: Some(true),
            ..summary(run_id, &report, total)
        };
        let mut line = serde_json::to_vec(&last).unwrap_or_default();
        line.push(b'\n');
        let _ = out_tx.send(Ok(Bytes::from(line))).await;
    });
    let stream = futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The parse stage of an NDJSON push: one record per non-empty line, chunked. After the
/// pipeline stops listening (an error halted it) the rest is only counted, so the answer can
/// say how many records were not processed.
fn read_lines(
    entity: Entity,
    reader: impl Read,
    out: mpsc::Sender<Batch<Parsed>>,
    total: oneshot::Sender<u64>,
) {
    let file: Arc<str> = Arc::from("request");
    let mut reader = io::BufReader::with_capacity(64 * 1024, reader);
    let mut listening = true;
    let mut chunk = Vec::with_capacity(DEFAULT_CHUNK_SIZE);
    let mut buf = Vec::new();
    let (mut line, mut index) = (0u64, 0u64);
    let mut fatal = None;
    loop {
        buf.clear();
        match (&mut reader).take(MAX_LINE + 1).read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                fatal = Some(format!("the body could not be read after line {line}: {e}"));
                break;
            }
        }
        line += 1;
        if buf.len() as u64 > MAX_LINE && !buf.ends_with(b"\n") {
            fatal = Some(format!("line {line} is longer than {MAX_LINE} bytes"));
            break;
        }
        let text = buf.trim_ascii();
        if text.is_empty() {
            continue;
        }
        index += 1;
        if !listening {
            continue;
        }
        let parsed = match serde_json::from_slice::<Value>(text) {
            Ok(value) => records::parse(entity, &value, &file, index, line),
            Err(e) => records::unreadable(&file, index, line, &e),
        };
        chunk.push(parsed);
        if chunk.len() == DEFAULT_CHUNK_SIZE {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(DEFAULT_CHUNK_SIZE));
            listening = out.blocking_send(Batch::Records(full)).is_ok();
        }
    }
    if listening {
        if !chunk.is_empty() {
            let _ = out.blocking_send(Batch::Records(chunk));
        }
        let end = match fatal {
            None => Batch::End(Warnings::default()),
            Some(message) => Batch::Fatal(crate::error::Problem::new(
                crate::error::Code::SourceUnreadable,
                message,
                crate::error::Position {
                    file: file.clone(),
                    line,
                    column: 0,
                    ..crate::error::Position::default()
                },
            )),
        };
        let _ = out.blocking_send(end);
    }
    let _ = total.send(index);
}

/// `POST /api/v1/imports?source=…`: an XML export in the body, streamed through the file
/// pipeline and recorded as an `api` run.
/// An XML export (the canonical format) in the body, streamed through the file pipeline.
#[utoipa::path(post, path = "/api/v1/imports",
    params(("source" = String, Query, description = "the source of the export")),
    request_body(content = String, content_type = "application/xml"),
    responses(
        (status = 200, description = "imported", body = ImportAnswer),
        (status = 400, description = "no source named", body = super::shapes::ErrorBody), (status = 401, description = "no token, or an unknown or revoked one", body = super::shapes::ErrorBody), (status = 403, description = "a token used where it may not be", body = super::shapes::ErrorBody),
        (status = 415, description = "another content type", body = super::shapes::ErrorBody),
        (status = 422, description = "halted: the report with the error", body = ImportAnswer),
    ), security(("bearer" = [])))]
pub async fn import_xml<S: Store + 'static>(
    State(api): State<Arc<Api<S>>>,
    headers: HeaderMap,
    Query(query): Query<SourceQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let org = organization(&api, &headers).await?;
    let kind = content_type(&headers);
    if !matches!(kind.as_str(), "application/xml" | "text/xml") {
        return Err(unsupported(&headers, "application/xml"));
    }
    let Some(source) = query.source else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_source",
            "name the source in the query: ?source=1c",
        ));
    };
    let size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = body
        .into_data_stream()
        .map_err(|e| io::Error::other(e.to_string()));
    let (run_id, report) = import_stream(
        &api,
        &org,
        &source,
        "request",
        size,
        Layout::native(),
        StreamReader::new(bytes),
    )
    .await?;
    let status = if report.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(ImportAnswer { run_id, report })).into_response())
}

/// Imports an XML export arriving as a byte stream — a request's body, a file uploaded in
/// the console — as a recorded run of the organization's source; the run's id and report.
pub async fn import_stream<S: Store + 'static>(
    api: &Api<S>,
    org: &str,
    source: &str,
    name: &str,
    size: Option<u64>,
    layout: Arc<Layout>,
    bytes: impl tokio::io::AsyncRead + Send + Unpin + 'static,
) -> Result<(i64, RunReport), ApiError> {
    let scope = begin(api, org, source).await?;
    let run_id = scope.run_id.unwrap_or_default();
    let input = Input {
        name: Arc::from(name),
        size,
        body: source::Body::Stream(Box::new(bytes)),
    };
    let mut report = RunReport::default();
    report.files.push(FileReport {
        file: name.into(),
        records: 0,
        end: None,
    });
    let mut options = pipeline::Options {
        layout,
        ..pipeline::Options::default()
    };
    let results = run::results_of(&mut options);
    let import = pipeline::import_input(&*api.store, &scope, input, options, &mut report);
    run::holding_lease(&*api.store, run_id, import).await;
    run::close_results(&*api.store, run_id, &results, &report).await;
    run::end(&*api.store, run_id, &report).await?;
    Ok((run_id, report))
}

fn lock(results: &results::Shared) -> std::sync::MutexGuard<'_, Results> {
    results.lock().unwrap_or_else(|e| e.into_inner())
}

fn outcome(applied: &Applied) -> PushOutcome {
    let (outcome, accounts) = match &applied.outcome {
        RecordOutcome::Client { outcome, .. } => (outcome.as_str(), None),
        RecordOutcome::Premise { premise, accounts } => (
            premise.as_str(),
            Some(accounts.iter().map(|a| a.as_str().to_owned()).collect()),
        ),
    };
    PushOutcome {
        index: applied.index,
        id: applied.id.clone(),
        outcome: outcome.to_owned(),
        accounts,
    }
}

/// How a push ended: counts, warnings, the error with the failing record, what was left.
fn summary(run_id: i64, report: &RunReport, total: u64) -> PushResult {
    PushResult {
        run_id,
        status: report.status,
        records: report.records,
        counts: report.counts,
        warnings: report.warnings.clone(),
        warnings_total: report.warnings_total,
        error: report.error.as_ref().map(PushError::from),
        not_processed: total.saturating_sub(report.records),
        outcomes: None,
        done: None,
    }
}
