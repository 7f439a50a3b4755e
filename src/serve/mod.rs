//! `drillbook serve`: the team's view of runs in a browser — runs and their live view, the
//! reports, the decisions waiting across runs (approved or rejected by a signed-in person under
//! the same rules as `drillbook approve`), and drill health (`history` and `due`).
//!
//! It reads and writes the same state as the CLI (a state directory, or `--state URL`). People
//! sign in with an account of the users file ([`users`]), or through an authenticating proxy
//! trusted by address; every state-changing request carries its session's CSRF token; failed
//! sign-ins are slowed down ([`session::Limiter`]).

/// The signed-in person, or the sign-in page (defined before the modules that use it).
macro_rules! signed_in {
    ($app:expr, $headers:expr, $peer:expr) => {
        match $app.who(&$headers, $peer.0) {
            Some(who) => who,
            None => {
                return axum::response::IntoResponse::into_response(axum::response::Redirect::to(
                    "/login",
                ));
            }
        }
    };
}

mod auth;
mod decisions;
mod health;
mod pages;
mod run_pages;
mod session;
pub mod users;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::runs::StateDir;
use session::{Limiter, Session, Sessions};
use users::{Role, Users};

/// How the server is set up.
pub struct Options {
    pub listen: SocketAddr,
    /// The users file (`<state-dir>/users.json`).
    pub users: std::path::PathBuf,
    /// Addresses of authenticating proxies whose identity header is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// The header those proxies put the signed-in name in (e.g. `X-Forwarded-User`).
    pub identity_header: Option<String>,
    /// Mark the session cookie `Secure` (served behind TLS).
    pub secure_cookies: bool,
    /// The cadence the health page judges every playbook by (default: each one's own, else
    /// 92d).
    pub every: Option<crate::duration::Duration>,
}

pub(super) struct App {
    dir: StateDir,
    options: Options,
    sessions: Sessions,
    limiter: Limiter,
    pages: minijinja::Environment<'static>,
}

pub(super) const COOKIE: &str = "drillbook_session";

/// Serves until the process is stopped. `ready` is told the address once it listens.
pub fn serve(
    dir: StateDir,
    options: Options,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let app = Arc::new(App {
            dir,
            options,
            sessions: Sessions::default(),
            limiter: Limiter::default(),
            pages: pages::templates(),
        });
        let router = axum::Router::new()
            .route("/", get(|| async { Redirect::to("/runs") }))
            .route("/login", get(auth::login_page).post(auth::login))
            .route("/logout", post(auth::logout))
            .route("/runs", get(run_pages::runs_page))
            .route("/runs/{id}", get(run_pages::run_page))
            .route("/runs/{id}/live", get(run_pages::run_live))
            .route("/runs/{id}/report/{format}", get(run_pages::run_report))
            .route("/runs/{id}/decide", post(decisions::decide))
            .route("/approvals", get(decisions::approvals_page))
            .route("/health", get(health::health_page))
            .route("/static/live.js", get(live_js))
            .layer(axum::middleware::map_response(secure_headers))
            .with_state(app);
        ready(address);
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .map_err(|e| e.to_string())
    })
}

/// Every answer: no caching, no framing, no referrer, scripts from here only.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ));
    response
}

pub(super) type Shared = State<Arc<App>>;
pub(super) type Peer = ConnectInfo<SocketAddr>;

impl App {
    /// Who is asking: a trusted proxy's word, or a session cookie.
    fn who(&self, headers: &HeaderMap, peer: SocketAddr) -> Option<Session> {
        if let Some(name) = self.options.identity_header.as_ref().and_then(|h| {
            let trusted = self.options.trusted_proxies.contains(&peer.ip());
            trusted
                .then(|| headers.get(h.as_str())?.to_str().ok())
                .flatten()
        }) {
            let role = Users::load(&self.options.users)
                .ok()
                .and_then(|users| users.role_of(name))
                .unwrap_or(Role::Viewer);
            return Some(self.sessions.of_proxied(name, role));
        }
        self.sessions.get(&cookie(headers)?)
    }

    /// A page from what a blocking read built: its context, or why it could not (500).
    fn page(
        &self,
        name: &str,
        who: &Session,
        built: Result<Result<serde_json::Value, String>, Response>,
    ) -> Response {
        match built {
            Ok(Ok(context)) => self.render(name, Some(who), context),
            Ok(Err(error)) => failure(&error),
            Err(response) => response,
        }
    }

    fn render(
        &self,
        name: &str,
        who: Option<&Session>,
        mut context: serde_json::Value,
    ) -> Response {
        if let (Some(map), Some(who)) = (context.as_object_mut(), who) {
            map.insert("user".into(), who.user.clone().into());
            map.insert("role".into(), who.role.name().into());
            map.insert("csrf".into(), who.csrf.clone().into());
            map.insert("can_decide".into(), (who.role == Role::Approver).into());
        }
        match self
            .pages
            .get_template(name)
            .and_then(|template| template.render(crate::report::json_value(&context)))
        {
            Ok(html) => Html(html).into_response(),
            Err(error) => failure(&format!("cannot show the page: {error}")),
        }
    }
}

pub(super) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

pub(super) fn failure(message: &str) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, message.to_owned()).into_response()
}

/// Runs blocking work (reading the state, recording a decision) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| failure(&e.to_string()))
}

async fn live_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        pages::LIVE_JS,
    )
        .into_response()
}
