//! Signing in and out: the password checked against its Argon2id hash (slowed down after
//! repeated mistakes), a session opened in the database, its cookie set and cleared.

use std::collections::HashMap;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Redirect;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use minijinja::context;
use serde::Deserialize;

use super::auth::{COOKIE, new_secret, password_matches};
use super::{Page, Shared, page, signed_form};
use crate::api::token_hash;
use crate::store::Store;

pub(super) async fn login_page() -> Page {
    page(
        StatusCode::OK,
        "login.html",
        context! { login => "", error => None::<String> },
    )
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    login: String,
    password: String,
}

pub(super) async fn login<S: Store>(
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

pub(super) async fn logout<S: Store>(
    State(console): Shared<S>,
    jar: CookieJar,
    Form(form): Form<HashMap<String, String>>,
) -> Result<(CookieJar, Page), Page> {
    signed_form(&console, &jar, &form).await?;
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
