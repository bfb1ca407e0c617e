//! The organization's pipelines: the list, a file's pipeline read-only, the settings form
//! of a console pipeline (save, «Проверить соединение», delete) and «Запустить сейчас».

use std::collections::HashMap;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use axum_extra::extract::CookieJar;
use minijinja::context;
use minijinja::value::Serde;

use super::form::{FieldErrors, PipelineForm};
use super::runs::stored_report;
use super::views::{PipelineView, RunView};
use super::{Console, Notice, Page, Shared, page, session_context, signed_form, signed_in};
use crate::daemon::{SaveError, StartError};
use crate::layout;
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::source::probe_all;
use crate::store::{RunFilter, SessionRow, Store, StoreError, Trigger};

/// The organization's pipelines: name, schedule in words, next run, last run.
pub(super) async fn pipelines<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    if let Some(daemon) = &console.api.daemon {
        for name in daemon.names() {
            let Some(p) = daemon
                .pipeline(&name)
                .filter(|p| p.organization == session.organization)
            else {
                continue;
            };
            let last = latest_run(&*console.api.store, &session.organization, &p.name).await?;
            let view = PipelineView::new(&p, now);
            rows.push(context! {
                name => view.name,
                schedule => view.schedule,
                next => view.next,
                last => last.map(Serde),
            });
        }
    }
    Ok(page(
        StatusCode::OK,
        "pipelines.html",
        context! { session => session_context(session), pipelines => rows },
    ))
}

async fn latest_run<S: Store>(
    store: &S,
    org: &str,
    pipeline: &str,
) -> Result<Option<RunView>, StoreError> {
    let filter = RunFilter {
        org: Some(org.to_owned()),
        pipeline: Some(pipeline.to_owned()),
        limit: 1,
    };
    let Some(row) = store.runs(&filter).await?.into_iter().next() else {
        return Ok(None);
    };
    let report = stored_report(store, row.id, org).await?;
    Ok(Some(RunView::new(&row, report.as_ref())))
}

/// A pipeline's settings (read-only for a file's pipeline), «Запустить сейчас» and its runs.
pub(super) async fn pipeline<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(name): Path<String>,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    let Some(p) = console
        .api
        .daemon
        .as_ref()
        .and_then(|d| d.pipeline(&name))
        .filter(|p| p.organization == session.organization)
    else {
        return Err(Page::not_found(session));
    };
    let runs = runs_of(&console, &session, &p.name).await?;
    if console.api.daemon.as_ref().and_then(|d| d.is_stored(&name)) == Some(true) {
        let password_set = stored_password(&console, &session, &name).await?;
        let form = PipelineForm::of(&p);
        return Ok(form_page(
            session,
            form,
            FieldErrors::new(),
            false,
            password_set,
            runs,
            None,
        ));
    }
    let view = PipelineView::new(&p, chrono::Utc::now());
    Ok(page(
        StatusCode::OK,
        "pipeline.html",
        context! { session => session_context(session), p => Serde(view), runs => Serde(runs) },
    ))
}

/// The pipeline's runs, newest first, as the history shows them.
async fn runs_of<S: Store + 'static>(
    console: &Console<S>,
    session: &SessionRow,
    pipeline: &str,
) -> Result<Vec<RunView>, StoreError> {
    let filter = RunFilter {
        org: Some(session.organization.clone()),
        pipeline: Some(pipeline.to_owned()),
        limit: 50,
    };
    let mut runs = Vec::new();
    for row in console.api.store.runs(&filter).await? {
        let report = stored_report(&*console.api.store, row.id, &session.organization).await?;
        runs.push(RunView::new(&row, report.as_ref()));
    }
    Ok(runs)
}

/// Whether the organization's console pipeline has a password stored.
async fn stored_password<S: Store + 'static>(
    console: &Console<S>,
    session: &SessionRow,
    name: &str,
) -> Result<bool, StoreError> {
    Ok(console.api.store.stored_pipelines().await?.iter().any(|p| {
        p.name == name && p.organization == session.organization && p.ftp_password.is_some()
    }))
}

/// The settings form: a new pipeline's, or a console pipeline's with its runs. Mistakes
/// are shown at their fields, with what was typed (never a password).
fn form_page(
    session: SessionRow,
    form: PipelineForm,
    errors: FieldErrors,
    creating: bool,
    password_set: bool,
    runs: Vec<RunView>,
    check: Option<Vec<String>>,
) -> Page {
    let tz = if form.timezone.is_empty() {
        "UTC"
    } else {
        form.timezone.as_str()
    };
    let schedule = [
        &form.minute,
        &form.hour,
        &form.day,
        &form.month,
        &form.weekday,
    ]
    .map(|f| if f.is_empty() { "*" } else { f.as_str() })
    .join(" ");
    let parsed = Schedule::parse(&schedule, Some(tz)).ok();
    let upcoming: Vec<String> = parsed
        .as_ref()
        .map(|s| {
            s.upcoming(chrono::Utc::now(), 5)
                .iter()
                .map(|t| t.format("%d.%m.%Y %H:%M").to_string())
                .collect()
        })
        .unwrap_or_default();
    let action = if creating {
        "/pipelines/new".to_owned()
    } else {
        format!("/pipelines/{}", encode(&form.name))
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    page(
        status,
        "pipeline_form.html",
        context! {
            session => session_context(session),
            form => Serde(&form),
            errors => Serde(&errors),
            creating,
            password_set,
            action,
            schedule_words => parsed.as_ref().map(Schedule::describe),
            upcoming,
            runs => Serde(runs),
            probe_lines => check,
            layouts => layout::offered(std::path::Path::new(layout::FOLDER)),
        },
    )
}

/// A pipeline name in a URL path.
fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub(super) async fn new_pipeline<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    let form = PipelineForm::new_pipeline();
    Ok(form_page(
        session,
        form,
        FieldErrors::new(),
        true,
        false,
        Vec::new(),
        None,
    ))
}

pub(super) async fn create_pipeline<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Page, Page> {
    let session = signed_form(&console, &jar, &fields).await?;
    let form = PipelineForm::from_fields(&fields);
    if fields.get("action").map(String::as_str) == Some("check") {
        return Ok(check_connection(&console, session, form, true).await);
    }
    save(&console, session, form, true).await
}

pub(super) async fn update_pipeline<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(name): Path<String>,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Page, Page> {
    let session = signed_form(&console, &jar, &fields).await?;
    if !console_pipeline_of(&console, &session, &name) {
        return Err(Page::not_found(session));
    }
    let mut form = PipelineForm::from_fields(&fields);
    form.name = name;
    if fields.get("action").map(String::as_str) == Some("check") {
        return Ok(check_connection(&console, session, form, false).await);
    }
    save(&console, session, form, false).await
}

/// The pipeline was made in the console and is the session's organization's.
fn console_pipeline_of<S: Store + 'static>(
    console: &Console<S>,
    session: &SessionRow,
    name: &str,
) -> bool {
    console.api.daemon.as_ref().is_some_and(|d| {
        d.is_stored(name) == Some(true)
            && d.pipeline(name)
                .is_some_and(|p| p.organization == session.organization)
    })
}

/// Checks and saves the form; the pipeline's page, or the form again with its mistakes.
async fn save<S: Store + 'static>(
    console: &Console<S>,
    session: SessionRow,
    form: PipelineForm,
    creating: bool,
) -> Result<Page, Page> {
    let Some(daemon) = &console.api.daemon else {
        return Err(Page::not_found(session));
    };
    let password_set = !creating && stored_password(console, &session, &form.name).await?;
    let typed = (!form.ftp_password.is_empty()).then_some(form.ftp_password.as_str());
    let saved = match form.to_definition(&session.organization, typed.is_some() || password_set) {
        Err(errors) => Err(errors),
        Ok(definition) => {
            match daemon
                .save_pipeline(&session.organization, &definition, typed, creating)
                .await
            {
                Ok(_) => Ok(()),
                Err(SaveError::Invalid(found)) => Err(super::form::at_fields(&found)),
                Err(SaveError::NotFound) => return Err(Page::not_found(session)),
                Err(SaveError::Store(e)) => return Err(e.into()),
            }
        }
    };
    if let Err(errors) = saved {
        return Err(form_page(
            session,
            form,
            errors,
            creating,
            password_set,
            Vec::new(),
            None,
        ));
    }
    Ok(Page::Redirect(Redirect::to(&format!(
        "/pipelines/{}",
        encode(&form.name)
    ))))
}

/// «Проверить соединение»: logs in to the form's FTP server (with the password typed, or the
/// one stored) and lists what each address finds in its folder, or the error.
async fn check_connection<S: Store + 'static>(
    console: &Console<S>,
    session: SessionRow,
    form: PipelineForm,
    creating: bool,
) -> Page {
    let stored = if creating {
        Ok(None)
    } else {
        opened_password(console, &session, &form.name).await
    };
    let password = match (form.ftp_password.is_empty(), stored) {
        (false, _) => Ok(Some(Secret::new(form.ftp_password.clone()))),
        (true, stored) => stored,
    };
    let password_set = !creating && matches!(password, Ok(Some(_))) && form.ftp_password.is_empty();
    let lines = match password {
        Err(message) => vec![message],
        Ok(password) => match form.pipeline(&session.organization, password) {
            Err(errors) => {
                return form_page(
                    session,
                    form,
                    errors,
                    creating,
                    password_set,
                    Vec::new(),
                    None,
                );
            }
            Ok(pipeline) => probe(&pipeline).await,
        },
    };
    form_page(
        session,
        form,
        FieldErrors::new(),
        creating,
        password_set,
        Vec::new(),
        Some(lines),
    )
}

/// The stored FTP password of the organization's console pipeline, opened; `Err` says why
/// it cannot be.
async fn opened_password<S: Store + 'static>(
    console: &Console<S>,
    session: &SessionRow,
    name: &str,
) -> Result<Option<Secret>, String> {
    let stored = console
        .api
        .store
        .stored_pipelines()
        .await
        .map_err(|e| format!("Ошибка базы данных: {e}"))?;
    let Some(sealed) = stored
        .into_iter()
        .find(|p| p.name == name && p.organization == session.organization)
        .and_then(|p| p.ftp_password)
    else {
        return Ok(None);
    };
    let key = console
        .api
        .daemon
        .as_ref()
        .and_then(|d| d.secret_key())
        .ok_or_else(|| crate::secret::SecretError::NoKey.to_string())?;
    key.open(&sealed).map(Some).map_err(|e| e.to_string())
}

/// What each FTP address of the pipeline finds, in words.
async fn probe(pipeline: &crate::config::Pipeline) -> Vec<String> {
    if pipeline.files.ftp.is_none() {
        return vec!["Сервер не задан: файлы берутся не с FTP, проверять нечего.".into()];
    }
    let found = match probe_all(&pipeline.files).await {
        Ok(found) => found,
        Err(e) => return vec![format!("Ошибка: {e} [{}]", e.code())],
    };
    let mut lines = vec!["Соединение установлено, вход выполнен.".to_owned()];
    for (address, probe) in found {
        lines.push(match probe {
            None => format!("{address}: не на FTP-сервере"),
            Some(p) if p.matching.is_empty() => format!(
                "{address}: не найдено; в папке {}: {}",
                p.folder,
                if p.listed.is_empty() {
                    "пусто".to_owned()
                } else {
                    p.listed.join(", ")
                }
            ),
            Some(p) => format!("{address}: найдено {}", p.matching.join(", ")),
        });
    }
    lines
}

pub(super) async fn delete_pipeline<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(name): Path<String>,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Page, Page> {
    let session = signed_form(&console, &jar, &fields).await?;
    let deleted = match &console.api.daemon {
        Some(daemon) if console_pipeline_of(&console, &session, &name) => {
            daemon.delete_pipeline(&session.organization, &name).await?
        }
        _ => false,
    };
    if !deleted {
        return Err(Page::not_found(session));
    }
    Ok(Page::Redirect(Redirect::to("/")))
}

/// «Запустить сейчас»: starts the pipeline and shows its run, or says why it did not start.
pub(super) async fn run_now<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(name): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Page, Page> {
    let session = signed_form(&console, &jar, &form).await?;
    let daemon = console.api.daemon.as_ref().filter(|d| {
        d.pipeline(&name)
            .is_some_and(|p| p.organization == session.organization)
    });
    let Some(daemon) = daemon else {
        return Err(Page::not_found(session));
    };
    let refusal = match daemon.start(&name, Trigger::Manual).await {
        Ok(started) => {
            return Ok(Page::Redirect(Redirect::to(&format!(
                "/runs/{}",
                started.run_id
            ))));
        }
        Err(StartError::AlreadyRunning(refused)) => refused
            .report
            .error
            .map(|e| e.message)
            .unwrap_or_else(|| "выгрузка уже выполняется".into()),
        Err(StartError::Stopping) => "сервер останавливается".into(),
        Err(StartError::Unknown(_)) => return Err(Page::not_found(session)),
        Err(StartError::Store(e)) => return Err(e.into()),
    };
    Err(Page::message(Notice {
        status: StatusCode::CONFLICT,
        heading: "Запуск отклонён",
        message: format!("«{name}» не запущена: {refusal}. Дождитесь окончания текущего запуска."),
        session: Some(session),
    }))
}
