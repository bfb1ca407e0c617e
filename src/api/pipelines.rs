//! The organization's pipelines through the API (SPEC §11, "API parity"): read, create,
//! update and delete the console's pipelines, and check a pipeline's FTP connection — the
//! daemon's code the console uses, in JSON. A file's pipeline can be read and checked, not
//! changed.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use toml::Table;

use super::shapes::{
    AddressFound, CheckAnswer, CheckError, ErrorBody, FtpOut, PipelineAnswer, PipelineBody,
    PipelineOut,
};
use super::{Api, ApiError, organization, push};
use crate::config::{ConfigError, Pipeline};
use crate::daemon::{Daemon, SaveError};
use crate::source::probe_all;
use crate::store::Store;

impl PipelineBody {
    /// The pipeline file's TOML (without `organization`) and the password typed.
    fn definition(&self) -> (String, Option<&str>) {
        use toml::Value as T;
        let strings = |list: &[String]| T::Array(list.iter().cloned().map(T::String).collect());
        let mut table = Table::new();
        table.insert("name".into(), T::String(self.name.clone()));
        table.insert("source".into(), T::String(self.source.clone()));
        table.insert("files".into(), strings(&self.files));
        table.insert(
            "delete_after_read".into(),
            T::Boolean(self.delete_after_read),
        );
        for (key, value) in [
            ("settle_secs", self.settle_secs),
            ("min_records", self.min_records),
            ("max_shrink_percent", self.max_shrink_percent),
            ("max_archive_percent", self.max_archive_percent),
        ] {
            if let Some(n) = value {
                table.insert(key.into(), T::Integer(n.min(i64::MAX as u64) as i64));
            }
        }
        if let Some(mode) = &self.mode {
            table.insert("mode".into(), T::String(mode.clone()));
        }
        if let Some(layout) = &self.layout {
            table.insert("layout".into(), T::String(layout.clone()));
        }
        if !self.notify.is_empty() {
            table.insert("notify".into(), strings(&self.notify));
        }
        if let Some(schedule) = &self.schedule {
            table.insert("schedule".into(), T::String(schedule.clone()));
        }
        if let Some(tz) = &self.timezone {
            table.insert("timezone".into(), T::String(tz.clone()));
        }
        let mut password = None;
        if let Some(ftp) = &self.ftp {
            let mut t = Table::new();
            t.insert("host".into(), T::String(ftp.host.clone()));
            if let Some(port) = ftp.port {
                t.insert("port".into(), T::Integer(i64::from(port)));
            }
            if let Some(user) = &ftp.user {
                t.insert("user".into(), T::String(user.clone()));
            }
            t.insert("tls".into(), T::Boolean(ftp.tls));
            t.insert("passive".into(), T::Boolean(ftp.passive));
            table.insert("ftp".into(), T::Table(t));
            password = ftp.password.as_deref().filter(|p| !p.is_empty());
        }
        (toml::to_string(&table).unwrap_or_default(), password)
    }
}

/// A loaded pipeline in the API's shape, with whether it may be changed here and whether a
/// password is set (never the password).
fn pipeline_out(p: &Pipeline, editable: bool) -> PipelineOut {
    PipelineOut {
        name: p.name.clone(),
        source: p.source.clone(),
        files: p.files.addresses.clone(),
        delete_after_read: p.files.delete_after_read,
        settle_secs: p.files.settle.as_secs(),
        min_records: p.files.min_records,
        max_shrink_percent: p.files.max_shrink_percent,
        mode: if p.files.snapshot.is_some() {
            "snapshot"
        } else {
            "upsert"
        },
        max_archive_percent: p.files.snapshot,
        layout: (!p.layout.native).then(|| p.layout.name.clone()),
        notify: p.notify.clone(),
        schedule: p.schedule.clone(),
        timezone: p.timezone.clone(),
        ftp: p.files.ftp.as_deref().map(|f| FtpOut {
            host: f.host.clone(),
            port: f.port,
            user: f.user.clone(),
            tls: f.tls,
            passive: f.passive,
            password_set: f.password.is_some() || f.password_env.is_some(),
        }),
        editable,
    }
}

type Shared<S> = State<Arc<Api<S>>>;

/// The daemon that holds the pipelines, and the organization's pipeline of that name.
fn organization_pipeline<'a, S: Store + 'static>(
    api: &'a Api<S>,
    org: &str,
    name: &str,
) -> Result<(&'a Arc<Daemon<S>>, Arc<Pipeline>), ApiError> {
    let daemon = api.daemon.as_ref().ok_or_else(no_pipelines)?;
    match daemon.pipeline(name) {
        Some(p) if p.organization == org => Ok((daemon, p)),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such pipeline here",
        )),
    }
}

fn no_pipelines() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no pipelines here (the server runs without pipelines)",
    )
}

/// One pipeline (never its password).
#[utoipa::path(get, path = "/api/v1/pipelines/{name}", params(("name" = String, Path)),
    responses((status = 200, description = "the pipeline", body = PipelineAnswer), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody), (status = 404, description = "not this organization's", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn read<S: Store + 'static>(
    State(api): Shared<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<PipelineAnswer>, ApiError> {
    let org = organization(&api, &headers).await?;
    let (daemon, p) = organization_pipeline(&api, &org, &name)?;
    let editable = daemon.is_stored(&name) == Some(true);
    Ok(Json(PipelineAnswer {
        pipeline: pipeline_out(&p, editable),
    }))
}

/// Creates a pipeline of the organization, checked as a pipeline file is.
#[utoipa::path(post, path = "/api/v1/pipelines", request_body = PipelineBody,
    responses(
        (status = 201, description = "created", body = PipelineAnswer),
        (status = 400, description = "not the JSON expected", body = ErrorBody), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody),
        (status = 415, description = "another content type", body = ErrorBody),
        (status = 422, description = "mistakes, by key (`error.fields`)", body = ErrorBody),
    ), security(("bearer" = [])))]
pub async fn create<S: Store + 'static>(
    State(api): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let org = organization(&api, &headers).await?;
    let body: PipelineBody = push::read_json(&api, &headers, body).await?;
    let daemon = api.daemon.as_ref().ok_or_else(no_pipelines)?;
    let pipeline = save(daemon, &org, &body, true).await?;
    Ok((StatusCode::CREATED, Json(PipelineAnswer { pipeline })).into_response())
}

/// Replaces a pipeline made in the console or through the API (the password kept when none
/// is given).
#[utoipa::path(put, path = "/api/v1/pipelines/{name}", params(("name" = String, Path)), request_body = PipelineBody,
    responses(
        (status = 200, description = "saved", body = PipelineAnswer),
        (status = 400, description = "not the JSON expected", body = ErrorBody), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody), (status = 404, description = "not this organization's", body = ErrorBody),
        (status = 409, description = "defined by a pipeline file", body = ErrorBody),
        (status = 415, description = "another content type", body = ErrorBody),
        (status = 422, description = "mistakes, by key (`error.fields`)", body = ErrorBody),
    ), security(("bearer" = [])))]
pub async fn update<S: Store + 'static>(
    State(api): Shared<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<PipelineAnswer>, ApiError> {
    let org = organization(&api, &headers).await?;
    let (daemon, _) = organization_pipeline(&api, &org, &name)?;
    if daemon.is_stored(&name) != Some(true) {
        return Err(from_file());
    }
    let mut body: PipelineBody = push::read_json(&api, &headers, body).await?;
    body.name = name;
    let pipeline = save(daemon, &org, &body, false).await?;
    Ok(Json(PipelineAnswer { pipeline }))
}

/// Deletes a pipeline made in the console or through the API.
#[utoipa::path(delete, path = "/api/v1/pipelines/{name}", params(("name" = String, Path)),
    responses(
        (status = 204, description = "deleted"), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody), (status = 404, description = "not this organization's", body = ErrorBody),
        (status = 409, description = "defined by a pipeline file", body = ErrorBody),
    ), security(("bearer" = [])))]
pub async fn delete<S: Store + 'static>(
    State(api): Shared<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let org = organization(&api, &headers).await?;
    let (daemon, _) = organization_pipeline(&api, &org, &name)?;
    if daemon.is_stored(&name) != Some(true) {
        return Err(from_file());
    }
    daemon.delete_pipeline(&org, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Logs in to the pipeline's FTP server and says what each address finds.
#[utoipa::path(post, path = "/api/v1/pipelines/{name}/check", params(("name" = String, Path)),
    responses((status = 200, description = "what each address finds, or the error", body = CheckAnswer), (status = 401, description = "no token, or an unknown or revoked one", body = ErrorBody), (status = 403, description = "a token used where it may not be", body = ErrorBody), (status = 404, description = "not this organization's", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn check<S: Store + 'static>(
    State(api): Shared<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<CheckAnswer>, ApiError> {
    let org = organization(&api, &headers).await?;
    let (_, p) = organization_pipeline(&api, &org, &name)?;
    let found = if p.files.ftp.is_none() {
        Ok(Vec::new())
    } else {
        probe_all(&p.files).await
    };
    Ok(Json(match found {
        Ok(found) => CheckAnswer {
            ok: true,
            addresses: found
                .into_iter()
                .map(|(address, probe)| AddressFound {
                    address,
                    on_ftp: probe.is_some(),
                    folder: probe.as_ref().map(|p| p.folder.clone()),
                    found: probe
                        .as_ref()
                        .map(|p| p.matching.clone())
                        .unwrap_or_default(),
                    listed: probe.map(|p| p.listed).unwrap_or_default(),
                })
                .collect(),
            error: None,
        },
        Err(e) => CheckAnswer {
            ok: false,
            addresses: Vec::new(),
            error: Some(CheckError {
                code: e.code().into(),
                message: e.to_string(),
            }),
        },
    }))
}

fn from_file() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "defined_by_file",
        "this pipeline is defined by a pipeline file on the server: change the file",
    )
}

async fn save<S: Store + 'static>(
    daemon: &Daemon<S>,
    org: &str,
    body: &PipelineBody,
    create: bool,
) -> Result<PipelineOut, ApiError> {
    let (definition, password) = body.definition();
    match daemon
        .save_pipeline(org, &definition, password, create)
        .await
    {
        Ok(p) => Ok(pipeline_out(&p, true)),
        Err(SaveError::Invalid(errors)) => Err(invalid(&errors)),
        Err(SaveError::NotFound) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such pipeline here",
        )),
        Err(SaveError::Store(e)) => Err(e.into()),
    }
}

/// 422 with every mistake by the pipeline file's key.
fn invalid(errors: &[ConfigError]) -> ApiError {
    let fields: serde_json::Map<String, Value> = errors
        .iter()
        .map(|e| (e.key.clone(), Value::String(e.message.clone())))
        .collect();
    let mut error = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_pipeline",
        format!("the pipeline has {} mistake(s)", errors.len()),
    );
    error.detail = Some(json!({ "fields": fields }));
    error
}
