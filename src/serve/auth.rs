//! Signing in and out: accounts checked against the users file, a session cookie (HttpOnly,
//! SameSite=Strict, Secure behind TLS), failed attempts slowed down, and the CSRF token every
//! state-changing form carries.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, Session};
use super::users::Users;
use super::{COOKIE, Peer, Shared, blocking, cookie, failure};

#[derive(Deserialize)]
pub(super) struct Flash {
    pub(super) said: Option<String>,
    pub(super) error: Option<String>,
}

pub(super) async fn login_page(State(app): Shared, Query(flash): Query<Flash>) -> Response {
    app.render(
        "login.html",
        None,
        serde_json::json!({ "flash": flash.error, "flash_error": true }),
    )
}

#[derive(Deserialize)]
pub(super) struct Credentials {
    name: String,
    password: String,
}

pub(super) async fn login(
    State(app): Shared,
    peer: Peer,
    Form(given): Form<Credentials>,
) -> Response {
    let keys = [
        format!("name:{}", given.name),
        format!("ip:{}", peer.0.ip()),
    ];
    if let Some(wait) = keys.iter().find_map(|key| app.limiter.check(key).err()) {
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed sign-ins: try again in {}s",
                wait.as_secs() + 1
            ),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let path = app.options.users.clone();
    let checked = blocking(move || {
        Users::load(&path).map(|users| {
            users
                .check(&given.name, &given.password)
                .map(|user| (user.name.clone(), user.role))
        })
    })
    .await;
    match checked {
        Err(response) => response,
        Ok(Err(error)) => failure(&error),
        Ok(Ok(None)) => {
            for key in &keys {
                app.limiter.failed(key);
            }
            Redirect::to("/login?error=wrong+name+or+password").into_response()
        }
        Ok(Ok(Some((name, role)))) => {
            for key in &keys {
                app.limiter.succeeded(key);
            }
            let token = app.sessions.open(&name, role);
            let secure = if app.options.secure_cookies {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                session::LIFETIME.as_secs()
            );
            let mut response = Redirect::to("/runs").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Csrf {
    csrf: String,
}

/// Whether a state-changing request carries the session's token.
pub(super) fn forged(who: &Session, given: &str) -> Option<Response> {
    use std::iter::zip;
    let same = who.csrf.len() == given.len()
        && zip(who.csrf.bytes(), given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    (!same).then(|| {
        (
            StatusCode::FORBIDDEN,
            "refused: the form's CSRF token is missing or wrong (reload the page and try again)",
        )
            .into_response()
    })
}

pub(super) async fn logout(
    State(app): Shared,
    peer: Peer,
    headers: HeaderMap,
    form: Result<Form<Csrf>, FormRejection>,
) -> Response {
    let who = match app.who(&headers, peer.0) {
        Some(who) => who,
        None => return Redirect::to("/login").into_response(),
    };
    let given = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Some(refused) = forged(&who, &given) {
        return refused;
    }
    if let Some(token) = cookie(&headers) {
        app.sessions.close(&token);
    }
    let mut response = Redirect::to("/login").into_response();
    let expired = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
