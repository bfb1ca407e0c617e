//! The HTTP API (SPEC §9): what the company's server or 1C uses to push data, the reads,
//! run-now and run history, the residents' app's login event; plus `/healthz`, `/metrics`
//! and `/openapi.json`. Every `/api/v1` request carries `Authorization: Bearer TOKEN`; a
//! token belongs to one organization and never reaches another's data (404, never the data).

mod doc;
pub mod download;
mod pipelines;
mod push;
pub mod records;
pub mod shapes;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::WithRejection;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::daemon::{Daemon, StartError};
use crate::store::{Bearer, Lookup, RunFilter, RunStatus, Store, StoreError, Trigger};
use shapes::{ClientRecord, ClientsPush, PremiseRecord, PremisesPush, PushOutcome, PushResult};
use shapes::{
    ClientsAnswer, ErrorBody, ErrorDetail, LoginAnswer, LoginBody, PipelineSummary,
    PipelinesAnswer, PremiseAnswer, RunAnswer, RunStarted, RunsAnswer, WhoAmI,
};

pub use push::import_stream;
pub use records::Entity;

/// Every route, as documented in `openapi.json` (a test holds the two together).
pub const PATHS: [&str; 16] = [
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/api/v1/clients",
    "/api/v1/premises",
    "/api/v1/imports",
    "/api/v1/premises/{source}/{id}",
    "/api/v1/pipelines",
    "/api/v1/pipelines/{name}",
    "/api/v1/pipelines/{name}/run",
    "/api/v1/pipelines/{name}/check",
    "/api/v1/runs",
    "/api/v1/runs/{id}",
    "/api/v1/runs/{id}/results",
    "/api/v1/logins",
    "/api/v1/whoami",
];

/// The OpenAPI description served at `/openapi.json`, generated from the handlers.
pub fn openapi() -> &'static str {
    &doc::OPENAPI
}

/// Bodies read whole (the JSON form of a push, a login) are refused above this size; NDJSON
/// and XML bodies stream and have no limit.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// What the handlers share.
pub struct Api<S> {
    pub store: Arc<S>,
    /// Pipelines for run-now; `None` when nothing serves pipelines.
    pub daemon: Option<Arc<Daemon<S>>>,
    pub metrics: Option<PrometheusHandle>,
    pub body_limit: usize,
}

impl<S> Api<S> {
    pub fn new(store: Arc<S>) -> Self {
        Api {
            store,
            daemon: None,
            metrics: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

/// The router over a store.
pub fn router<S: Store + 'static>(api: Api<S>) -> Router {
    routes(Arc::new(api))
}

/// The API's routes over shared state (the console shares it).
pub fn routes<S: Store + 'static>(api: Arc<Api<S>>) -> Router {
    let [
        health,
        metrics,
        openapi,
        clients,
        premises,
        imports,
        premise,
        pipelines,
        pipeline,
        run_now,
        check,
        runs,
        run,
        run_results,
        logins,
        whoami,
    ] = PATHS;
    Router::new()
        .route(health, get(healthz))
        .route(metrics, get(render_metrics::<S>))
        .route(openapi, get(openapi_json))
        .route(clients, post(push_clients::<S>).get(read_clients::<S>))
        .route(premises, post(push_premises::<S>))
        .route(imports, post(push::import_xml::<S>))
        .route(premise, get(read_premise::<S>))
        .route(
            pipelines,
            get(list_pipelines::<S>).post(pipelines::create::<S>),
        )
        .route(
            pipeline,
            get(pipelines::read::<S>)
                .put(pipelines::update::<S>)
                .delete(pipelines::delete::<S>),
        )
        .route(run_now, post(run_pipeline::<S>))
        .route(check, post(pipelines::check::<S>))
        .route(runs, get(list_runs::<S>))
        .route(run, get(show_run::<S>))
        .route(run_results, get(download_results::<S>))
        .route(logins, post(login::<S>))
        .route(whoami, get(who_am_i::<S>))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_route)
        .layer(axum::middleware::from_fn(refuse_long_uris))
        .with_state(api)
}

/// The longest request target answered: no path or query of this API comes near it.
/// hyper itself answers 414 without a body past 64 KiB, before any route can; below that
/// the answer is the documented JSON.
const MAX_URI_BYTES: usize = 8 * 1024;

async fn refuse_long_uris(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let length = request.uri().to_string().len();
    if length > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the request's address is {length} bytes long, over the {MAX_URI_BYTES} served: \
                 send data in the body (POST), not in the query"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// A path no route serves: the documented JSON error under `/api/`, a plain page elsewhere.
async fn no_route(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no {} here: see /openapi.json", uri.path()),
        )
        .into_response();
    }
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Страница не найдена. Not found.\n",
    )
        .into_response()
}

/// A route asked with a method it does not serve.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not served at {}: see /openapi.json",
            uri.path()
        ),
    )
}

/// An error answer: `{"error":{"code","message", …}}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Extra members of the error object (a position, a record index).
    pub detail: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
            detail: None,
        }
    }

    fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} here"),
        )
    }
}

/// A query string the handler cannot read.
impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
    }
}

/// A path segment the handler cannot read (`/api/v1/runs/abc`): there is no such thing.
impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", e.body_text())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "database error in the API");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = match self.detail {
            Some(Value::Object(extra)) => extra,
            _ => serde_json::Map::new(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                detail,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

type Shared<S> = State<Arc<Api<S>>>;

/// The SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random token (256 bits), shown once.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("crm_{hex}")
}

/// Who is asking: 401 without a live token.
async fn bearer<S: Store>(api: &Api<S>, headers: &HeaderMap) -> Result<Bearer, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "send Authorization: Bearer TOKEN (crm-import token create --org ORG makes one)",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    match api.store.bearer(&token_hash(token)).await? {
        Some(bearer) => Ok(bearer),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the token is unknown or revoked",
        )),
    }
}

/// The organization a token speaks for; the app token has none (403).
async fn organization<S: Store>(api: &Api<S>, headers: &HeaderMap) -> Result<String, ApiError> {
    match bearer(api, headers).await? {
        Bearer::Organization { code, .. } => Ok(code),
        Bearer::App => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "app_token",
            "the residents' app token may only report logins",
        )),
    }
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "the server is up", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "this description", content_type = "application/json")))]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi()).into_response()
}

#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus metrics", body = String, content_type = "text/plain"),
    (status = 404, description = "metrics are off", body = ErrorBody),
))]
async fn render_metrics<S: Store>(State(api): Shared<S>) -> Response {
    match &api.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::not_found("metrics").into_response(),
    }
}

#[utoipa::path(get, path = "/api/v1/whoami", responses(
    (status = 200, description = "whom the token speaks for", body = WhoAmI), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody),
), security(("bearer" = [])))]
async fn who_am_i<S: Store>(
    State(api): Shared<S>,
    headers: HeaderMap,
) -> Result<Json<WhoAmI>, ApiError> {
    Ok(Json(match bearer(&api, &headers).await? {
        Bearer::Organization { code, .. } => WhoAmI {
            organization: Some(code),
            app: None,
        },
        Bearer::App => WhoAmI {
            organization: None,
            app: Some(true),
        },
    }))
}

/// Clients as JSON (one answer) or NDJSON (streamed both ways: an outcome line per record,
/// then a last line with `done`), with the files' validation, matching table and halt rule.
#[utoipa::path(post, path = "/api/v1/clients",
    params(("source" = Option<String>, Query, description = "the source, for NDJSON pushes")),
    request_body(content((ClientsPush = "application/json"), (ClientRecord = "application/x-ndjson"))),
    responses(
        (status = 200, description = "every record applied", content((PushResult = "application/json"), (PushOutcome = "application/x-ndjson"))),
        (status = 400, description = "not the JSON expected", body = ErrorBody), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody),
        (status = 413, description = "a JSON body over the limit", body = ErrorBody),
        (status = 415, description = "another content type", body = ErrorBody),
        (status = 422, description = "halted at the first failing record", body = PushResult),
    ), security(("bearer" = [])))]
async fn push_clients<S: Store + 'static>(
    state: Shared<S>,
    headers: HeaderMap,
    query: Query<push::SourceQuery>,
    body: Body,
) -> Response {
    push::push(state, Entity::Clients, headers, query, body).await
}

/// Premises with their accounts, as JSON or NDJSON, like clients.
#[utoipa::path(post, path = "/api/v1/premises",
    params(("source" = Option<String>, Query, description = "the source, for NDJSON pushes")),
    request_body(content((PremisesPush = "application/json"), (PremiseRecord = "application/x-ndjson"))),
    responses(
        (status = 200, description = "every record applied", content((PushResult = "application/json"), (PushOutcome = "application/x-ndjson"))),
        (status = 400, description = "not the JSON expected", body = ErrorBody), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody),
        (status = 413, description = "a JSON body over the limit", body = ErrorBody),
        (status = 415, description = "another content type", body = ErrorBody),
        (status = 422, description = "halted at the first failing record", body = PushResult),
    ), security(("bearer" = [])))]
async fn push_premises<S: Store + 'static>(
    state: Shared<S>,
    headers: HeaderMap,
    query: Query<push::SourceQuery>,
    body: Body,
) -> Response {
    push::push(state, Entity::Premises, headers, query, body).await
}

#[derive(Debug, Deserialize)]
struct ClientQuery {
    phone: Option<String>,
    source: Option<String>,
    external_id: Option<String>,
    #[serde(default)]
    archived: bool,
}

/// `?archived=true`: include what a snapshot archived.
#[derive(Debug, Default, Deserialize)]
struct ArchivedQuery {
    #[serde(default)]
    archived: bool,
}

/// Clients by phone or by external id, in the export's shape.
#[utoipa::path(get, path = "/api/v1/clients",
    params(
        ("phone" = Option<String>, Query, description = "any spelling of a phone"),
        ("source" = Option<String>, Query, description = "with external_id"),
        ("archived" = Option<bool>, Query, description = "true: include links a snapshot archived"),
        ("external_id" = Option<String>, Query, description = "with source"),
    ),
    responses(
        (status = 200, description = "the cards found", body = ClientsAnswer),
        (status = 400, description = "ask by phone or by source and external id", body = ErrorBody), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn read_clients<S: Store>(
    State(api): Shared<S>,
    headers: HeaderMap,
    Query(q): Query<ClientQuery>,
) -> Result<Json<ClientsAnswer>, ApiError> {
    let org = organization(&api, &headers).await?;
    let lookup = match (q.phone, q.source, q.external_id) {
        (Some(phone), None, None) => match crate::phone::normalize(&phone) {
            Some(e164) => Lookup::ClientsByPhone(e164),
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_phone",
                    format!("{phone:?} is not a phone number"),
                ));
            }
        },
        (None, Some(source), Some(id)) => Lookup::ClientByRef { source, id },
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "ask by ?phone=… or by ?source=…&external_id=…",
            ));
        }
    };
    let clients = api
        .store
        .lookup(&org, &lookup, q.archived)
        .await?
        .unwrap_or_default();
    Ok(Json(ClientsAnswer { clients }))
}

/// A premise with its accounts, in the export's shape.
#[utoipa::path(get, path = "/api/v1/premises/{source}/{id}",
    params(("source" = String, Path), ("id" = String, Path),
        ("archived" = Option<bool>, Query, description = "true: also a premise or accounts a snapshot archived")),
    responses((status = 200, description = "the premise", body = PremiseAnswer), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody), (status = 404, description = "not this organization's", body = ErrorBody)),
    security(("bearer" = [])))]
async fn read_premise<S: Store>(
    State(api): Shared<S>,
    headers: HeaderMap,
    Path((source, id)): Path<(String, String)>,
    WithRejection(Query(q), _): WithRejection<Query<ArchivedQuery>, ApiError>,
) -> Result<Json<PremiseAnswer>, ApiError> {
    let org = organization(&api, &headers).await?;
    let lines = api
        .store
        .lookup(&org, &Lookup::Premise { source, id }, q.archived)
        .await?
        .unwrap_or_default();
    let mut lines = lines.into_iter();
    match lines.next() {
        Some(premise) => Ok(Json(PremiseAnswer {
            premise,
            accounts: lines.collect(),
        })),
        None => Err(ApiError::not_found("such premise")),
    }
}

/// The organization's pipelines.
#[utoipa::path(get, path = "/api/v1/pipelines",
    responses((status = 200, description = "its pipelines", body = PipelinesAnswer), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_pipelines<S: Store + 'static>(
    State(api): Shared<S>,
    headers: HeaderMap,
) -> Result<Json<PipelinesAnswer>, ApiError> {
    let org = organization(&api, &headers).await?;
    let pipelines = match &api.daemon {
        None => Vec::new(),
        Some(daemon) => daemon
            .names()
            .into_iter()
            .filter_map(|name| daemon.pipeline(&name))
            .filter(|p| p.organization == org)
            .map(|p| PipelineSummary {
                editable: daemon.is_stored(&p.name) == Some(true),
                name: p.name.clone(),
                schedule: p.schedule.clone(),
                timezone: p.timezone.clone(),
            })
            .collect(),
    };
    Ok(Json(PipelinesAnswer { pipelines }))
}

/// «Запустить сейчас».
#[utoipa::path(post, path = "/api/v1/pipelines/{name}/run",
    params(("name" = String, Path)),
    responses(
        (status = 202, description = "started", body = RunStarted), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody), (status = 404, description = "not this organization's", body = ErrorBody),
        (status = 409, description = "the pipeline is running", body = ErrorBody),
        (status = 503, description = "the server is stopping", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn run_pipeline<S: Store + 'static>(
    State(api): Shared<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let org = organization(&api, &headers).await?;
    let Some(daemon) = &api.daemon else {
        return Err(ApiError::not_found(
            "pipelines (start the server with --pipelines)",
        ));
    };
    match daemon.pipeline(&name) {
        Some(p) if p.organization == org => {}
        _ => return Err(ApiError::not_found("such pipeline")),
    }
    match daemon.start(&name, Trigger::Api).await {
        Ok(started) => Ok((
            StatusCode::ACCEPTED,
            Json(RunStarted {
                run_id: started.run_id,
                status: RunStatus::Running,
            }),
        )
            .into_response()),
        Err(StartError::AlreadyRunning(refused)) => {
            let message = refused
                .report
                .error
                .map(|e| e.message)
                .unwrap_or_else(|| "already running".into());
            let mut error = ApiError::new(StatusCode::CONFLICT, "already_running", message);
            error.detail = Some(json!({ "run_id": refused.run_id }));
            Err(error)
        }
        Err(StartError::Unknown(_)) => Err(ApiError::not_found("such pipeline")),
        Err(StartError::Stopping) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the server is stopping",
        )),
        Err(StartError::Store(e)) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    pipeline: Option<String>,
    limit: Option<u32>,
}

/// Run history, newest first.
#[utoipa::path(get, path = "/api/v1/runs",
    params(
        ("pipeline" = Option<String>, Query, description = "only this pipeline"),
        ("limit" = Option<u32>, Query, description = "at most this many (default 50)"),
    ),
    responses((status = 200, description = "the runs", body = RunsAnswer), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_runs<S: Store>(
    State(api): Shared<S>,
    headers: HeaderMap,
    WithRejection(Query(q), _): WithRejection<Query<RunsQuery>, ApiError>,
) -> Result<Json<RunsAnswer>, ApiError> {
    let org = organization(&api, &headers).await?;
    let runs = api
        .store
        .runs(&RunFilter {
            org: Some(org),
            pipeline: q.pipeline,
            limit: q.limit.unwrap_or(50).min(1000),
        })
        .await?;
    Ok(Json(RunsAnswer { runs }))
}

/// One run with its report.
#[utoipa::path(get, path = "/api/v1/runs/{id}",
    params(("id" = i64, Path)),
    responses((status = 200, description = "the run", body = RunAnswer), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody), (status = 404, description = "not this organization's", body = ErrorBody)),
    security(("bearer" = [])))]
async fn show_run<S: Store>(
    State(api): Shared<S>,
    headers: HeaderMap,
    WithRejection(Path(id), _): WithRejection<Path<i64>, ApiError>,
) -> Result<Json<RunAnswer>, ApiError> {
    let org = organization(&api, &headers).await?;
    match api.store.run(id, Some(&org)).await? {
        Some((row, report)) => {
            let report: Value = report
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or(Value::Null);
            Ok(Json(RunAnswer { run: row, report }))
        }
        None => Err(ApiError::not_found("such run")),
    }
}

/// A run's per-record results: CSV (UTF-8 with BOM, `;`), gzip-encoded for a client that
/// accepts it.
#[utoipa::path(get, path = "/api/v1/runs/{id}/results",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "one line per record: file;index;line;kind;id;outcome;merged_into;code;message;count, then a closing not_processed line", content_type = "text/csv"),
        (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody),
        (status = 404, description = "not this organization's, or a run that kept no results", body = ErrorBody),
        (status = 409, description = "the run is still going", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn download_results<S: Store + 'static>(
    State(api): Shared<S>,
    headers: HeaderMap,
    WithRejection(Path(id), _): WithRejection<Path<i64>, ApiError>,
) -> Result<Response, ApiError> {
    let org = organization(&api, &headers).await?;
    let Some((row, _)) = api.store.run(id, Some(&org)).await? else {
        return Err(ApiError::not_found("such run"));
    };
    download::results(api.store.clone(), &row, &headers)
        .await
        .map_err(|e| {
            let (status, code, message) = e.explain();
            ApiError::new(status, code, message)
        })
}

/// The residents' app reports a login: cards with that phone are marked (app token only).
#[utoipa::path(post, path = "/api/v1/logins",
    request_body = LoginBody,
    responses(
        (status = 200, description = "cards marked", body = LoginAnswer),
        (status = 400, description = "not the JSON expected", body = ErrorBody), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody),
        (status = 413, description = "a body over the limit", body = ErrorBody),
        (status = 415, description = "another content type", body = ErrorBody),
        (status = 422, description = "not a phone number", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn login<S: Store>(
    State(api): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<LoginAnswer>, ApiError> {
    if bearer(&api, &headers).await? != Bearer::App {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_app_token",
            "logins come from the residents' app: use its token (crm-import token create --app)",
        ));
    }
    let body: LoginBody = push::read_json(&api, &headers, body).await?;
    let Some(phone) = crate::phone::normalize(&body.phone) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone",
            format!("{:?} is not a phone number", body.phone),
        ));
    };
    let marked = api.store.mark_logged_in(&phone).await?;
    Ok(Json(LoginAnswer { phone, marked }))
}
