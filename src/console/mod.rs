//! The web console (SPEC §11): the seed's «Обмен данными» screen for the organization's
//! staff — sign-in, the organization's pipelines, «Запустить сейчас», run history and a
//! run's report. Server-rendered HTML that works without JavaScript; a small script only
//! refreshes a running run's progress. Served by `serve` and `daemon` at `/` beside the API,
//! over the same store and pipelines.
//!
//! Every page belongs to the signed-in user's organization: another organization's
//! pipeline or run is not found (404), as in the API. Every form that changes something
//! carries the session's CSRF token.

mod auth;
mod form;
mod views;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use minijinja::context;
use minijinja::value::Serde;
use serde::Deserialize;

pub use auth::{IDLE, hash_password};

use crate::api::{Api, ApiError, import_stream, token_hash};
use crate::daemon::StartError;
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::source::Sources;
use crate::store::{RunFilter, SessionRow, Store, StoreError, StoredPipeline, Trigger};
use auth::{Brake, COOKIE, new_secret, password_matches};
use form::{FieldErrors, PipelineForm};
use views::{PipelineView, RunView, render};

/// What the console's handlers share: the API's store and pipelines, and the brake on
/// wrong passwords.
pub struct Console<S> {
    api: Arc<Api<S>>,
    brake: Brake,
}

type Shared<S> = State<Arc<Console<S>>>;

/// The console's routes, to be merged with the API's.
pub fn router<S: Store + 'static>(api: Arc<Api<S>>) -> Router {
    let console = Arc::new(Console {
        api,
        brake: Brake::default(),
    });
    Router::new()
        .route("/", get(pipelines::<S>))
        .route("/login", get(login_page).post(login::<S>))
        .route("/logout", post(logout::<S>))
        .route(
            "/pipelines/new",
            get(new_pipeline::<S>).post(create_pipeline::<S>),
        )
        .route(
            "/pipelines/{name}",
            get(pipeline::<S>).post(update_pipeline::<S>),
        )
        .route("/pipelines/{name}/delete", post(delete_pipeline::<S>))
        .route("/pipelines/{name}/run", post(run_now::<S>))
        .route(
            "/upload",
            get(upload_page::<S>)
                .post(upload::<S>)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/runs/{id}", get(run::<S>))
        .route("/runs/{id}/progress", get(progress::<S>))
        .route("/static/console.css", get(stylesheet))
        .route("/static/console.js", get(script))
        .with_state(console)
}

/// A page, or why there is none: every failure is a page in the console's words.
enum Page {
    Html(StatusCode, String),
    Redirect(Redirect),
    Message(Box<Notice>),
}

/// A page that only says something: an error, a refusal.
struct Notice {
    status: StatusCode,
    heading: &'static str,
    message: String,
    session: Option<SessionRow>,
}

impl Page {
    fn message(notice: Notice) -> Page {
        Page::Message(Box::new(notice))
    }
}

impl Page {
    fn not_found(session: SessionRow) -> Page {
        Page::message(Notice {
            status: StatusCode::NOT_FOUND,
            heading: "Не найдено",
            message: "Такой страницы у вашей организации нет.".into(),
            session: Some(session),
        })
    }
}

impl From<StoreError> for Page {
    fn from(e: StoreError) -> Page {
        tracing::error!(error = %e, "database error in the console");
        Page::message(Notice {
            status: StatusCode::SERVICE_UNAVAILABLE,
            heading: "База данных недоступна",
            message: format!(
                "Страницу не удалось показать: {} [{}]. Повторите попытку позже.",
                e,
                e.code()
            ),
            session: None,
        })
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self {
            Page::Html(status, html) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Page::Redirect(to) => to.into_response(),
            Page::Message(notice) => {
                let Notice {
                    status,
                    heading,
                    message,
                    session,
                } = *notice;
                let ctx = context! { heading, message, session => session.map(session_context) };
                page(status, "message.html", ctx).into_response()
            }
        }
    }
}

/// Renders a template into a page; a template that fails is reported as plain text.
fn page(status: StatusCode, name: &str, ctx: minijinja::Value) -> Page {
    match render(name, ctx) {
        Ok(html) => Page::Html(status, html),
        Err(e) => {
            tracing::error!("{e}");
            Page::Html(
                StatusCode::SERVICE_UNAVAILABLE,
                "Страницу не удалось показать; подробности в журнале сервера.".into(),
            )
        }
    }
}

/// What the templates know of the session (never its id).
fn session_context(s: SessionRow) -> minijinja::Value {
    context! { login => s.login, organization => s.organization, csrf => s.csrf }
}

/// The signed-in session, or a redirect to the sign-in page.
async fn signed_in<S: Store>(console: &Console<S>, jar: &CookieJar) -> Result<SessionRow, Page> {
    let Some(cookie) = jar.get(COOKIE) else {
        return Err(Page::Redirect(Redirect::to("/login")));
    };
    match console
        .api
        .store
        .session(&token_hash(cookie.value()), IDLE)
        .await?
    {
        Some(session) => Ok(session),
        None => Err(Page::Redirect(Redirect::to("/login"))),
    }
}

/// The form's CSRF token is the session's, or the request is refused (403).
fn check_csrf(session: &SessionRow, form: &HashMap<String, String>) -> Result<(), Page> {
    let sent = form.get("csrf").map(String::as_bytes).unwrap_or_default();
    let expected = session.csrf.as_bytes();
    // Compared in constant time: the token is a secret of the session.
    let same = sent.len() == expected.len()
        && sent
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(Page::message(Notice {
            status: StatusCode::FORBIDDEN,
            heading: "Запрос отклонён",
            message: "Форма устарела или пришла не с этой страницы. Откройте страницу заново и повторите."
                .into(),
            session: Some(session.clone()),
        }))
    }
}

async fn login_page() -> Page {
    page(
        StatusCode::OK,
        "login.html",
        context! { login => "", error => None::<String> },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
}

async fn login<S: Store>(
    State(console): Shared<S>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<(CookieJar, Page), Page> {
    let login = form.login.trim().to_owned();
    let refused = |status, error: &str| {
        page(
            status,
            "login.html",
            context! { login => login.clone(), error => error },
        )
    };
    if console.brake.engaged(&login) {
        return Err(refused(
            StatusCode::TOO_MANY_REQUESTS,
            "Слишком много неверных попыток. Подождите минуту и попробуйте снова.",
        ));
    }
    let stored = console.api.store.password_hash(&login).await?;
    // Hashing is deliberately slow: it runs off the async threads.
    let password = form.password;
    let user = tokio::task::spawn_blocking(move || {
        let hash = stored.as_ref().map(|(_, hash)| hash.as_str());
        password_matches(&password, hash)
            .then_some(stored)
            .flatten()
    })
    .await
    .ok()
    .flatten();
    let Some((user_id, _)) = user else {
        console.brake.failed(&login);
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "Неверный логин или пароль.",
        ));
    };
    console.brake.succeeded(&login);
    let id = new_secret();
    console
        .api
        .store
        .open_session(&token_hash(&id), user_id, &new_secret())
        .await?;
    // `Secure` where a TLS-terminating proxy says the browser came over HTTPS.
    let tls = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = Cookie::build((COOKIE, id))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(tls)
        .path("/");
    Ok((jar.add(cookie), Page::Redirect(Redirect::to("/"))))
}

async fn logout<S: Store>(
    State(console): Shared<S>,
    jar: CookieJar,
    Form(form): Form<HashMap<String, String>>,
) -> Result<(CookieJar, Page), Page> {
    let session = signed_in(&console, &jar).await?;
    check_csrf(&session, &form)?;
    if let Some(cookie) = jar.get(COOKIE) {
        console
            .api
            .store
            .close_session(&token_hash(cookie.value()))
            .await?;
    }
    let jar = jar.remove(Cookie::build(COOKIE).path("/"));
    Ok((jar, Page::Redirect(Redirect::to("/login"))))
}

/// The organization's pipelines: name, schedule in words, next run, last run.
async fn pipelines<S: Store + 'static>(
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

/// A run's stored report as JSON, if it has one.
async fn stored_report<S: Store>(
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

/// A pipeline's settings (read-only for a file's pipeline), «Запустить сейчас» and its runs.
async fn pipeline<S: Store + 'static>(
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
        },
    )
}

/// A pipeline name in a URL path.
fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn new_pipeline<S: Store + 'static>(
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

async fn create_pipeline<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    check_csrf(&session, &fields)?;
    let form = PipelineForm::from_fields(&fields);
    if fields.get("action").map(String::as_str) == Some("check") {
        return Ok(check_connection(&console, session, form, true).await);
    }
    save(&console, session, form, true).await
}

async fn update_pipeline<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(name): Path<String>,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    check_csrf(&session, &fields)?;
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
    let mut errors = FieldErrors::new();
    let password_set = !creating && stored_password(console, &session, &form.name).await?;
    let typed = !form.ftp_password.is_empty();
    let sealed = match (typed, daemon.secret_key()) {
        (false, _) => None,
        (true, Some(key)) => key.seal(&form.ftp_password).ok(),
        (true, None) => {
            errors.insert(
                "ftp_password",
                "Пароль не сохранён: на сервере не задан ключ шифрования CRM_SECRET_KEY \
                 (32 случайных байта в base64, например openssl rand -base64 32)."
                    .into(),
            );
            None
        }
    };
    if creating && daemon.is_stored(&form.name) == Some(false) {
        errors.insert(
            "name",
            "Это название занято выгрузкой, заданной файлом.".into(),
        );
    }
    let definition = match form.to_definition(&session.organization, typed || password_set) {
        Ok(definition) => definition,
        Err(found) => {
            for (field, message) in found {
                errors.entry(field).or_insert(message);
            }
            String::new()
        }
    };
    if !errors.is_empty() {
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
    let stored = StoredPipeline {
        organization: session.organization.clone(),
        name: form.name.clone(),
        definition,
        ftp_password: sealed,
    };
    if !console.api.store.save_pipeline(&stored, creating).await? {
        errors.insert("name", "Такое название уже есть.".into());
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
    daemon.load_stored().await?;
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
    let mut sources = Sources::new(&pipeline.files);
    let mut lines = vec!["Соединение установлено, вход выполнен.".to_owned()];
    for address in &pipeline.files.addresses {
        match sources.probe(address).await {
            Ok(None) => lines.push(format!("{address}: не на FTP-сервере")),
            Ok(Some(found)) if found.matching.is_empty() => lines.push(format!(
                "{address}: не найдено; в папке {}: {}",
                found.folder,
                if found.listed.is_empty() {
                    "пусто".to_owned()
                } else {
                    found.listed.join(", ")
                }
            )),
            Ok(Some(found)) => {
                lines.push(format!("{address}: найдено {}", found.matching.join(", ")));
            }
            Err(e) => {
                lines = vec![format!("Ошибка: {e} [{}]", e.code())];
                break;
            }
        }
    }
    sources.close().await;
    lines
}

async fn delete_pipeline<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(name): Path<String>,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    check_csrf(&session, &fields)?;
    if !console_pipeline_of(&console, &session, &name)
        || !console
            .api
            .store
            .delete_pipeline(&session.organization, &name)
            .await?
    {
        return Err(Page::not_found(session));
    }
    if let Some(daemon) = &console.api.daemon {
        daemon.load_stored().await?;
    }
    Ok(Page::Redirect(Redirect::to("/")))
}

/// «Запустить сейчас»: starts the pipeline and shows its run, or says why it did not start.
async fn run_now<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(name): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    check_csrf(&session, &form)?;
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

/// A run: its status, counts, warnings and error — what the e-mail says.
async fn run<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    let Ok(id) = id.parse::<i64>() else {
        return Err(Page::not_found(session));
    };
    let Some((row, report)) = console
        .api
        .store
        .run(id, Some(&session.organization))
        .await?
    else {
        return Err(Page::not_found(session));
    };
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

/// The upload form: a file from the browser, imported like `POST /api/v1/imports`.
async fn upload_page<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
) -> Result<Page, Page> {
    let session = signed_in(&console, &jar).await?;
    Ok(page(
        StatusCode::OK,
        "upload.html",
        context! { session => session_context(session), source => "", error => None::<String> },
    ))
}

/// Streams the uploaded file into an import (never whole in memory) and shows its run.
/// The form's fields come before the file, so the CSRF token is checked before a byte of
/// the file is read.
async fn upload<S: Store + 'static>(
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
            context! { session => session_context(session.clone()), source, error },
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
        let file = field.file_name().unwrap_or("upload.xml").to_owned();
        let run_id = import_field(&console, &session, &source, &file, field).await?;
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
async fn progress<S: Store + 'static>(
    State(console): Shared<S>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Result<Response, Page> {
    let session = signed_in(&console, &jar).await?;
    let Ok(id) = id.parse::<i64>() else {
        return Err(Page::not_found(session));
    };
    let Some((row, _)) = console
        .api
        .store
        .run(id, Some(&session.organization))
        .await?
    else {
        return Err(Page::not_found(session));
    };
    let (records, rate) = live(&console, id).unwrap_or((row.records, 0));
    let running = row.status == crate::store::RunStatus::Running;
    Ok(
        axum::Json(serde_json::json!({ "running": running, "records": records, "rate": rate }))
            .into_response(),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/console.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/console.js"),
    )
}
