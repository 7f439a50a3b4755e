//! Drill health: what `due` and `history` say, for every playbook with runs.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::decisions::pending;
use super::{Peer, Shared, blocking};

pub(super) async fn health_page(State(app): Shared, peer: Peer, headers: HeaderMap) -> Response {
    let who = signed_in!(app, headers, peer);
    let reader = app.clone();
    let page = blocking(move || {
        let view = reader.dir.view()?;
        let (runs, _) = view.list();
        let now = crate::clock::now();
        let every = reader.options.every;
        let due: Vec<serde_json::Value> = crate::due::known(&runs)
            .iter()
            .map(|candidate| {
                let verdict = crate::due::check(candidate, &runs, candidate.cadence(every), now);
                serde_json::json!({
                    "name": verdict.name,
                    "due": verdict.due,
                    "reason": verdict.reason,
                    "every": verdict.every.to_string(),
                })
            })
            .collect();
        let history: Vec<serde_json::Value> = crate::history::playbooks(&runs)
            .iter()
            .map(|name| {
                let entry = crate::history::Entry::new(name, &runs);
                let rows: Vec<[String; 6]> = entry.rows.iter().map(crate::history::cells).collect();
                let newest = runs.iter().find(|run| run.playbook == *name);
                let latest = newest.map(|run| run.run_id.clone());
                let chart = newest.map_or(serde_json::Value::Null, |run| {
                    crate::report::rto_chart(run, &entry.rows)
                });
                serde_json::json!({
                    "name": entry.name,
                    "rows": rows,
                    "trend": entry.trend,
                    "next": entry.next(),
                    "latest": latest,
                    "chart": chart,
                })
            })
            .collect();
        Ok::<_, String>(serde_json::json!({
            "due": due,

            "history": history,
            "headings": crate::history::HEADINGS,
            "pending": pending(&runs).len(),
        }))
    })
    .await;
    app.page("health.html", &who, page)
}
