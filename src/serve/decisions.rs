//! Decisions: the questions waiting across runs, and a signed-in approver's answer, recorded
//! as `drillbook approve` records one (the same four-eyes and `allowed` rules), with the
//! person's web sign-in as their account.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{Flash, forged};
use super::run_pages::RunId;
use super::users::Role;
use super::{Peer, Shared, blocking};

/// The open questions of every run, oldest first.
pub(super) fn pending(runs: &[crate::state::RunState]) -> Vec<serde_json::Value> {
    let mut questions: Vec<(jiff::Timestamp, serde_json::Value)> = Vec::new();
    for run in runs
        .iter()
        .filter(|run| run.outcome().is_none() || run.finished.is_some_and(|(_, code)| code == 4))
    {
        for step in &run.steps {
            let Some(question) = &step.question else {
                continue;
            };
            let since = step.decision_window();
            let approved_by: Vec<String> = step
                .approvals
                .iter()
                .filter(|d| d.approved && d.ask == question.ask && d.at >= since)
                .map(|d| match &d.account {
                    Some(account) => format!("{} ({account})", d.by),
                    None => d.by.clone(),
                })
                .collect();
            questions.push((
                question.asked_at,
                serde_json::json!({
                    "run_id": run.run_id,
                    "playbook": run.playbook,
                    "step": step.id,
                    "ask": question.ask.name(),
                    "prompt": question.prompt,
                    "approvers": question.approvers,
                    "approved_by": approved_by,
                    "allowed": question.allowed,
                    "signed": question.signed,
                    "asked_at": question.asked_at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
                }),
            ));
        }
    }
    questions.sort_by_key(|(at, _)| *at);
    questions.into_iter().map(|(_, q)| q).collect()
}

pub(super) async fn approvals_page(
    State(app): Shared,
    peer: Peer,
    headers: HeaderMap,
    Query(flash): Query<Flash>,
) -> Response {
    let who = signed_in!(app, headers, peer);
    let reader = app.clone();
    let page = blocking(move || {
        let view = reader.dir.view()?;
        let (runs, _) = view.list();
        let questions = pending(&runs);
        Ok::<_, String>(serde_json::json!({
            "pending": questions.len(),
            "questions": questions,
            "flash": flash.said.or(flash.error.clone()),
            "flash_error": flash.error.is_some(),
        }))
    })
    .await;
    app.page("approvals.html", &who, page)
}

#[derive(Deserialize)]
pub(super) struct DecisionForm {
    csrf: String,
    step: String,
    decision: String,
    reason: Option<String>,
}

pub(super) async fn decide(
    State(app): Shared,
    peer: Peer,
    headers: HeaderMap,
    Path(RunId { id }): Path<RunId>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let Some(who) = app.who(&headers, peer.0) else {
        return (StatusCode::FORBIDDEN, "refused: sign in first").into_response();
    };
    let Ok(Form(form)) = form else {
        return (
            StatusCode::FORBIDDEN,
            "refused: the form's CSRF token is missing or wrong (reload the page and try again)",
        )
            .into_response();
    };
    if let Some(refused) = forged(&who, &form.csrf) {
        return refused;
    }
    if let Err(error) = crate::runs::check_run_id(&id) {
        return (StatusCode::NOT_FOUND, error).into_response();
    }
    if who.role != Role::Approver {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "refused: {} may look but not decide (a viewer's account)",
                who.user
            ),
        )
            .into_response();
    }
    let approved = form.decision == "approve";
    let reason = form.reason.filter(|r| !r.trim().is_empty());
    let dir = app.dir.clone();
    let run_id = id.clone();
    let decided = blocking(move || {
        let view = dir.view()?;
        let decision = crate::engine::Decision {
            step: form.step,
            approved,
            by: who.user.clone(),
            reason,
            sign_with: None,
            account: Some(crate::event::OsAccount {
                user: who.user.clone(),
                // SAFETY: getuid has no preconditions.
                uid: unsafe { libc::getuid() },
                host: crate::account::host(),
                via: Some("drillbook serve".into()),
            }),
        };
        crate::engine::approve(&dir, &view, &run_id, &decision)
            .map_err(|refusal| strip_error(&refusal.render(false)))
    })
    .await;
    let back = |key: &str, text: &str| {
        let text: String =
            percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        Redirect::to(&format!("/runs/{id}?{key}={text}")).into_response()
    };
    match decided {
        Ok(Ok(said)) => back("said", &said),
        Ok(Err(why)) => back("error", &why),
        Err(response) => response,
    }
}

/// A refusal as the CLI words it, without its `error: ` and final newline.
fn strip_error(text: &str) -> String {
    text.trim_end()
        .strip_prefix("error: ")
        .unwrap_or(text.trim_end())
        .to_owned()
}
