//! Runs: a run's report, a running run's live progress, and a file uploaded in the browser
//! imported as a run.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use minijinja::context;
use minijinja::value::Serde;

use super::views::RunView;
use super::{
    Console, Notice, Page, Shared, check_csrf, page, session_context, signed_form, signed_in,
};
use crate::api::download::{self, Unavailable};
use crate::api::{ApiError, import_stream};
use crate::daemon::StartError;
use crate::layout::{self, Layout};
use crate::run::{self, NotResumable};
use crate::store::{RunRow, SessionRow, Store, StoreError};

/// A run's stored report as JSON, if it has one.
pub(super) async fn stored_report<S: Store>(
    store: &S,
    run_id: i64,
    org: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    Ok(store
        .run(run_id, Some(org))
        .await?
        .and_then(|(_, report)| report)
        .and_then(|text| serde_json::from_str(&text).ok()))
}

/// A run: its status, counts, warnings and error — what the e-mail says.
pub(super) async fn run<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    let (id, row, report) = organization_run(&console, session.clone(), &id).await?;
    let report: Option<serde_json::Value> = report.and_then(|r| serde_json::from_str(&r).ok());
    let mut view = RunView::new(&row, report.as_ref());
    let (records, rate) = live(&console, id).unwrap_or((view.records, 0));
    view.records = records;
    Ok(page(
        StatusCode::OK,
        "run.html",
        context! {
            session => session_context(session),
            run => Serde(&view),
            rate,
            report => report.map(Serde),
        },
    ))
}

/// The organization's run with this id (as the path gives it) and its stored report; any
/// other id is not found.
async fn organization_run<S: Store + 'static>(
    console: &Console<S>,
    session: SessionRow,
    id: &str,
) -> Result<(i64, RunRow, Option<String>), Page> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(Page::not_found(session));
    };
    match console
        .api
        .store
        .run(id, Some(&session.organization))
        .await?
    {
        Some((row, report)) => Ok((id, row, report)),
        None => Err(Page::not_found(session)),
    }
}

/// The run's per-record results as a CSV download (the API's bytes).
pub(super) async fn results<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Page> {
    let session = signed_in(&console, &jar).await?;
    let (_, row, _) = organization_run(&console, session.clone(), &id).await?;
    match download::results(console.api.store.clone(), &row, &headers).await {
        Ok(response) => Ok(response),
        Err(Unavailable::Store(e)) => Err(e.into()),
        Err(unavailable) => Err(Page::message(Notice {
            status: unavailable.explain().0,
            heading: "Результатов нет",
            message: match unavailable {
                Unavailable::Running => {
                    "Запуск ещё идёт: результаты по записям можно скачать, когда он закончится."
                }
                _ => "У этого запуска нет результатов по записям: он был отклонён или прошёл до того, как их стали сохранять.",
            }
            .into(),
            session: Some(session),
        })),
    }
}

/// «Продолжить»: starts the run's pipeline again, skipping what the run committed.
pub(super) async fn resume<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Page, Page> {
    let session = signed_form(&console, &jar, &form).await?;
    let (id, row, _) = organization_run(&console, session.clone(), &id).await?;
    let daemon = console.api.daemon.as_ref();
    let (Some(daemon), Some(name)) = (daemon, row.pipeline.as_deref()) else {
        return Err(Page::not_found(session));
    };
    let refused = |message: String| {
        Page::message(Notice {
            status: StatusCode::CONFLICT,
            heading: "Продолжить нельзя",
            message,
            session: Some(session.clone()),
        })
    };
    let resume = match run::resumable(&*console.api.store, &session.organization, id).await {
        Ok(resume) => resume,
        Err(NotResumable::Store(e)) => return Err(e.into()),
        Err(NotResumable::Unknown) => return Err(Page::not_found(session)),
        Err(NotResumable::Ended(_)) => {
            return Err(refused(format!(
                "Запуск {id} завершился без ошибки: продолжать нечего."
            )));
        }
        Err(NotResumable::Unreadable(e)) => {
            return Err(refused(format!("Отчёт запуска {id} не читается: {e}.")));
        }
    };
    match daemon.resume(name, resume).await {
        Ok(started) => Ok(Page::Redirect(Redirect::to(&format!(
            "/runs/{}",
            started.run_id
        )))),
        Err(StartError::Unknown(_)) => Err(Page::not_found(session)),
        Err(StartError::Store(e)) => Err(e.into()),
        Err(StartError::AlreadyRunning(_)) => Err(refused(format!(
            "«{name}» сейчас выполняется. Дождитесь окончания текущего запуска."
        ))),
        Err(StartError::Stopping) => Err(refused("Сервер останавливается.".into())),
    }
}

/// Records so far and records/s of a run this process is carrying out.
fn live<S: Store + 'static>(console: &Console<S>, run_id: i64) -> Option<(u64, u64)> {
    let progress = console.api.daemon.as_ref()?.progress(run_id)?;
    let secs = progress.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        progress.records() as f64 / secs
    } else {
        0.0
    };
    Some((progress.records(), rate as u64))
}

/// A running run's progress as JSON, for the page's script.
pub(super) async fn progress<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Result<Response, Page> {
    let session = signed_in(&console, &jar).await?;
    let (id, row, _) = organization_run(&console, session, &id).await?;
    let (records, rate) = live(&console, id).unwrap_or((row.records, 0));
    let running = row.status == crate::store::RunStatus::Running;
    Ok(
        axum::Json(serde_json::json!({ "running": running, "records": records, "rate": rate }))
            .into_response(),
    )
}

/// The upload form: a file from the browser, imported like `POST /api/v1/imports`.
pub(super) async fn upload_page<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    Ok(page(
        StatusCode::OK,
        "upload.html",
        context! {
            session => session_context(session),
            source => "",
            error => None::<String>,
            layouts => layout::offered(std::path::Path::new(layout::FOLDER)),
        },
    ))
}

/// Streams the uploaded file into an import (never whole in memory) and shows its run.
/// The form's fields come before the file, so the CSRF token is checked before a byte of
/// the file is read.
pub(super) async fn upload<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    mut multipart: Multipart,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    let mut fields = HashMap::new();
    let refused = |session: &SessionRow, source: &str, error: String| {
        page(
            StatusCode::BAD_REQUEST,
            "upload.html",
            context! {
                session => session_context(session.clone()),
                source,
                error,
                layouts => layout::offered(std::path::Path::new(layout::FOLDER)),
            },
        )
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(refused(&session, "", format!("Файл не дошёл: {e}"))),
        };
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        if name != "file" {
            let value = field.text().await.unwrap_or_default();
            fields.insert(name, value);
            continue;
        }
        check_csrf(&session, &fields)?;
        let source = fields
            .get("source")
            .map(|s| s.trim())
            .unwrap_or_default()
            .to_owned();
        if source.is_empty() {
            return Err(refused(
                &session,
                "",
                "Укажите источник, например 1c.".into(),
            ));
        }
        let chosen = fields.get("layout").map_or("", |l| l.trim());
        let layout = if chosen.is_empty() {
            Layout::native()
        } else {
            match layout::is_offered(chosen).then(|| Layout::load(std::path::Path::new(chosen))) {
                Some(Ok(layout)) => Arc::new(layout),
                _ => {
                    return Err(refused(
                        &session,
                        &source,
                        "Выберите формат файла из списка.".into(),
                    ));
                }
            }
        };
        let file = field.file_name().unwrap_or("upload.xml").to_owned();
        let run_id = import_field(&console, &session, &source, &file, layout, field).await?;
        return Ok(Page::Redirect(Redirect::to(&format!("/runs/{run_id}"))));
    }
    Err(refused(
        &session,
        fields.get("source").map_or("", |s| s.as_str()),
        "Выберите файл выгрузки.".into(),
    ))
}

/// Feeds an uploaded file's chunks to an import through a small channel, so the import
/// reads the upload as it arrives; the run's id.
async fn import_field<S: Store + 'static>(
    console: &Console<S>,
    session: &SessionRow,
    source: &str,
    file: &str,
    layout: Arc<Layout>,
    mut field: axum::extract::multipart::Field<'_>,
) -> Result<i64, Page> {
    use futures::SinkExt;
    let (mut tx, rx) = futures::channel::mpsc::channel::<std::io::Result<axum::body::Bytes>>(4);
    let feed = async move {
        loop {
            let chunk = match field.chunk().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => break,
                Err(e) => Err(std::io::Error::other(format!("the upload broke off: {e}"))),
            };
            let failed = chunk.is_err();
            // The import stopped reading (it halted): the rest of the file is not needed.
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    };
    let reader = tokio_util::io::StreamReader::new(rx);
    let import = import_stream(
        &console.api,
        &session.organization,
        source,
        file,
        None,
        layout,
        reader,
    );
    let ((), imported) = tokio::join!(feed, import);
    imported
        .map(|(run_id, _)| run_id)
        .map_err(|e| api_refusal(session, e))
}

/// An import the API would refuse, as a page.
fn api_refusal(session: &SessionRow, e: ApiError) -> Page {
    Page::message(Notice {
        status: e.status,
        heading: "Импорт не запущен",
        message: format!("{} [{}]", e.message, e.code),
        session: Some(session.clone()),
    })
}
