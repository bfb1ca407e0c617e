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
mod pipelines;
mod runs;
mod session;
mod views;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use minijinja::context;

pub use auth::{IDLE, hash_password};

use crate::api::{Api, token_hash};
use crate::store::{SessionRow, Store, StoreError};
use auth::{Brake, COOKIE};
use views::render;

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
        .route("/", get(pipelines::pipelines::<S>))
        .route("/login", get(session::login_page).post(session::login::<S>))
        .route("/logout", post(session::logout::<S>))
        .route(
            "/pipelines/new",
            get(pipelines::new_pipeline::<S>).post(pipelines::create_pipeline::<S>),
        )
        .route(
            "/pipelines/{name}",
            get(pipelines::pipeline::<S>).post(pipelines::update_pipeline::<S>),
        )
        .route(
            "/pipelines/{name}/delete",
            post(pipelines::delete_pipeline::<S>),
        )
        .route("/pipelines/{name}/run", post(pipelines::run_now::<S>))
        .route(
            "/upload",
            get(runs::upload_page::<S>)
                .post(runs::upload::<S>)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/runs/{id}", get(runs::run::<S>))
        .route("/runs/{id}/progress", get(runs::progress::<S>))
        .route("/runs/{id}/results", get(runs::results::<S>))
        .route("/runs/{id}/resume", post(runs::resume::<S>))
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

/// The signed-in session of a form that changes something, its CSRF token checked.
async fn signed_form<S: Store>(
    console: &Console<S>,
    jar: &CookieJar,
    form: &HashMap<String, String>,
) -> Result<SessionRow, Page> {
    let session = signed_in(console, jar).await?;
    check_csrf(&session, form)?;
    Ok(session)
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
