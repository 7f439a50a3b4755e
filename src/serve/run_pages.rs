//! The runs: the list with its filters, a run's page (its live view while it runs, polled by
//! the page's one script), and its reports.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::Flash;
use super::decisions::pending;
use super::{Peer, Shared, blocking};
use crate::report::Format;
use crate::runs::StateDir;

#[derive(Deserialize, Serialize, Default)]
pub(super) struct RunsQuery {
    playbook: Option<String>,
    mode: Option<String>,
    status: Option<String>,
    since: Option<String>,
    said: Option<String>,
    error: Option<String>,
}

pub(super) async fn runs_page(
    State(app): Shared,
    peer: Peer,
    headers: HeaderMap,
    Query(query): Query<RunsQuery>,
) -> Response {
    let who = signed_in!(app, headers, peer);
    let reader = app.clone();
    let page = blocking(move || {
        let view = reader.dir.view()?;
        let filter = crate::runs::Filter::new(
            query.playbook.clone(),
            query.mode.clone(),
            query.status.clone(),
            query.since.as_deref(),
        );
        let (runs, _) = view.list();
        let playbooks = crate::history::playbooks(&runs);
        let pending = pending(&runs).len();
        let (rows, flash) = match &filter {
            Ok(filter) => (
                runs.iter()
                    .filter(|run| filter.keeps(&view, run))
                    .map(|run| row(&view, run))
                    .collect::<Vec<_>>(),
                None,
            ),
            Err(error) => (Vec::new(), Some(error.clone())),
        };
        Ok::<_, String>(serde_json::json!({
            "runs": rows,
            "total": runs.len(),
            "playbooks": playbooks,
            "statuses": crate::runs::STATUSES,
            "filter": query,
            "filtered": filter.is_ok(),
            "pending": pending,
            "flash": flash,
            "flash_error": true,
            "location": reader.dir.location(),
        }))
    })
    .await;
    app.page("runs.html", &who, page)
}

pub(super) fn row(view: &StateDir, run: &crate::state::RunState) -> serde_json::Value {
    let end = run.finished.map_or(run.last_at, |(at, _)| at);
    serde_json::json!({
        "id": run.run_id,
        "playbook": run.playbook,
        "mode": run.mode.name(),
        "status": view.status_of(run),
        "started": run.started_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        "duration": crate::format::format_duration(crate::measure::elapsed(run.started_at, end)),
    })
}

#[derive(Deserialize)]
pub(super) struct RunId {
    pub(super) id: String,
}

pub(super) async fn run_page(
    State(app): Shared,
    peer: Peer,
    headers: HeaderMap,
    Path(RunId { id }): Path<RunId>,
    Query(flash): Query<Flash>,
) -> Response {
    let who = signed_in!(app, headers, peer);
    let reader = app.clone();
    let page = blocking(move || {
        let view = reader.dir.view()?;
        view.refresh(&id)?;
        let state = view.load(&id)?;
        let live = state.outcome().is_none() && view.running(&state);
        let text = live_text(&view, &id, &state)?;
        let (runs, _) = view.list();
        Ok::<_, String>(serde_json::json!({
            "run": row(&view, &state),
            "questions": pending(std::slice::from_ref(&state)),
            "pending": pending(&runs).len(),
            "view": text,
            "live": live,
            "flash": flash.said.or(flash.error.clone()),
            "flash_error": flash.error.is_some(),
        }))
    })
    .await;
    match page {
        Ok(Ok(context)) => app.render("run.html", Some(&who), context),
        Ok(Err(error)) => (StatusCode::NOT_FOUND, error).into_response(),
        Err(response) => response,
    }
}

/// A run as its console shows it while it runs, its text report once it is over.
fn live_text(view: &StateDir, id: &str, state: &crate::state::RunState) -> Result<String, String> {
    match state.outcome() {
        None => crate::ui::console::snapshot(view, id),
        Some(_) => Ok(crate::report::render(state, Format::Text)),
    }
}

pub(super) async fn run_live(
    State(app): Shared,
    peer: Peer,
    headers: HeaderMap,
    Path(RunId { id }): Path<RunId>,
) -> Response {
    if app.who(&headers, peer.0).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let reader = app.clone();
    let text = blocking(move || {
        let view = reader.dir.view()?;
        view.refresh(&id)?;
        let state = view.load(&id)?;
        Ok::<_, String>((live_text(&view, &id, &state)?, state.outcome().is_some()))
    })
    .await;
    match text {
        Ok(Ok((text, over))) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                "x-run-over",
                HeaderValue::from_static(if over { "1" } else { "0" }),
            );
            response
        }
        Ok(Err(error)) => (StatusCode::NOT_FOUND, error).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
pub(super) struct ReportPath {
    id: String,
    format: String,
}

pub(super) async fn run_report(
    State(app): Shared,
    peer: Peer,
    headers: HeaderMap,
    Path(ReportPath { id, format }): Path<ReportPath>,
) -> Response {
    let _who = signed_in!(app, headers, peer);
    let (format, content_type, extension) = match format.as_str() {
        "html" => (Format::Html, "text/html; charset=utf-8", None),
        "md" => (Format::Markdown, "text/markdown; charset=utf-8", Some("md")),
        "json" => (Format::Json, "application/json", Some("json")),
        "junit" => (Format::Junit, "application/xml", Some("xml")),
        "text" => (Format::Text, "text/plain; charset=utf-8", None),
        other => {
            return (
                StatusCode::NOT_FOUND,
                format!("no report format `{other}`: html, md, json, junit or text"),
            )
                .into_response();
        }
    };
    let reader = app.clone();
    let name = id.clone();
    let report = blocking(move || {
        let view = reader.dir.view()?;
        let state = view.load(&id)?;
        let (runs, _) = view.list();
        Ok::<_, String>(crate::report::render_among(&state, &runs, format))
    })
    .await;
    match report {
        Ok(Ok(text)) => {
            let mut response = text.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if let Some(extension) = extension
                && crate::runs::check_run_id(&name).is_ok()
                && let Ok(value) =
                    HeaderValue::from_str(&format!("attachment; filename=\"{name}.{extension}\""))
            {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Ok(Err(error)) => (StatusCode::NOT_FOUND, error).into_response(),
        Err(response) => response,
    }
}
