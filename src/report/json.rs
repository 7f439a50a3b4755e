//! The JSON report: the structure tools, dashboards and drill-trend scripts read. Every field
//! is documented in docs/reports.md and its name never changes; new fields may be added.
//! Unknown values are `null` and empty lists are `[]` rather than missing, so a reader never
//! has to tell "absent" from "not applicable".

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::event::{Ask, Mode, Status};
use crate::state::RunState;

use super::report_steps;
use crate::measure::{Measure, objectives, recovery_time, step_duration};

/// Bumped only if a field's meaning changes incompatibly (which the contract forbids); a
/// reader can check it to be sure.
const REPORT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Report<'a> {
    report_version: u32,
    run_id: &'a str,
    playbook: &'a str,
    playbook_file: &'a str,
    playbook_hash: &'a str,
    mode: Mode,
    dry_run: bool,
    operator: &'a str,
    started_at: Timestamp,
    declared_at: Option<Timestamp>,
    clock_started_at: Timestamp,
    finished_at: Option<Timestamp>,
    outcome: &'static str,
    exit_code: Option<u8>,
    objectives: ObjectivesJson,
    human_wait_seconds: f64,
    recovery_seconds: f64,
    duration_seconds: f64,
    /// The journal's hash chain as checked: records, head, breaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    journal: Option<&'a crate::chain::Chain>,
    resumes: Vec<Resume<'a>>,
    interruptions: Vec<Interruption<'a>>,
    steps: Vec<Step<'a>>,
    notifications: Vec<NotificationJson<'a>>,
    post_mortem_notes: Option<NotesJson<'a>>,
}

/// One message a notify step sent or tried to send (`every:` repeats included).
#[derive(Serialize)]
struct NotificationJson<'a> {
    step: &'a str,
    at: Timestamp,
    repeat: bool,
    to: Option<&'a str>,
    message: Option<&'a str>,
    delivered: bool,
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct NotesJson<'a> {
    root_cause: &'a str,
    remediation: &'a [String],
    by: &'a str,
    at: Timestamp,
}

#[derive(Serialize)]
struct ObjectivesJson {
    rto: MeasureJson,
    rpo: MeasureJson,
}

#[derive(Serialize)]
struct MeasureJson {
    objective_seconds: Option<f64>,
    achieved_seconds: Option<f64>,
    margin_seconds: Option<f64>,
    met: Option<bool>,
}

impl From<&Measure> for MeasureJson {
    fn from(measure: &Measure) -> MeasureJson {
        MeasureJson {
            objective_seconds: measure.objective.map(|o| seconds(o.signed())),
            achieved_seconds: measure.achieved.map(seconds),
            margin_seconds: measure.margin().map(seconds),
            met: measure.met,
        }
    }
}

#[derive(Serialize)]
struct Resume<'a> {
    at: Timestamp,
    by: &'a str,
}

#[derive(Serialize)]
struct Interruption<'a> {
    at: Timestamp,
    reason: &'a str,
}

#[derive(Serialize)]
struct Step<'a> {
    id: &'a str,
    kind: Option<&'a str>,
    cleanup: bool,
    clock_stop: bool,
    status: Status,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    duration_seconds: Option<f64>,
    attempts: Vec<AttemptJson<'a>>,
    outputs: &'a BTreeMap<String, serde_json::Value>,
    error: Option<&'a str>,
    evidence: &'a [String],
    skipped_reason: Option<&'a str>,
    approvals: Vec<Approval<'a>>,
    human_wait_seconds: f64,
}

#[derive(Serialize)]
struct AttemptJson<'a> {
    number: u32,
    status: Status,
    started_at: Timestamp,
    finished_at: Option<Timestamp>,
    error: Option<&'a str>,
    /// `permanent` or `transient`, for a failed attempt of a journal that records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_class: Option<crate::event::ErrorClass>,
}

#[derive(Serialize)]
struct Approval<'a> {
    ask: Ask,
    approved: bool,
    by: &'a str,
    /// The OS account and host it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a crate::event::OsAccount>,
    /// Its SSH signature as checked: "signed with SHA256:… (verified)" or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    at: Timestamp,
    reason: Option<&'a str>,
    pre_approved: bool,
}

/// Seconds with millisecond precision: what the journal's timestamps are worth, and no float
/// noise like 12.300000000000001 in a file people diff.
fn seconds(d: SignedDuration) -> f64 {
    d.as_millis() as f64 / 1_000.0
}

fn report(state: &RunState) -> Report<'_> {
    let measured = objectives(state);
    Report {
        report_version: REPORT_VERSION,
        run_id: &state.run_id,
        playbook: &state.playbook,
        playbook_file: &state.file,
        playbook_hash: &state.playbook_hash,
        mode: state.mode,
        dry_run: state.dry_run,
        operator: &state.operator,
        started_at: state.started_at,
        declared_at: state.declared_at,
        clock_started_at: state.clock_start(),
        finished_at: state.finished.map(|(at, _)| at),
        outcome: state.outcome_name(),
        exit_code: state.finished.map(|(_, code)| code),
        objectives: ObjectivesJson {
            rto: (&measured.rto).into(),
            rpo: (&measured.rpo).into(),
        },
        human_wait_seconds: seconds(state.human_wait()),
        recovery_seconds: seconds(recovery_time(state, &measured)),
        duration_seconds: seconds(crate::measure::total_duration(state)),
        journal: state.journal.as_ref(),
        resumes: state
            .resumes
            .iter()
            .map(|(at, by)| Resume { at: *at, by })
            .collect(),
        interruptions: state
            .interruptions
            .iter()
            .map(|(at, reason)| Interruption { at: *at, reason })
            .collect(),
        steps: report_steps(state)
            .into_iter()
            .map(|(plan, step)| Step {
                id: &step.id,
                kind: plan.map(|plan| plan.kind.as_str()),
                cleanup: plan.is_some_and(|plan| plan.cleanup),
                clock_stop: plan.is_some_and(|plan| plan.clock_stop),
                status: step.status,
                started_at: step.span().map(|(start, _)| start),
                finished_at: step.span().and_then(|(_, end)| end),
                duration_seconds: step_duration(step).map(seconds),
                attempts: step
                    .attempts
                    .iter()
                    .map(|attempt| AttemptJson {
                        number: attempt.number,
                        status: attempt.status,
                        started_at: attempt.started_at,
                        finished_at: attempt.finished_at,
                        error: attempt.error.as_deref(),
                        error_class: attempt.error_class,
                    })
                    .collect(),
                outputs: &step.outputs,
                error: step.error.as_deref(),
                evidence: &step.evidence,
                skipped_reason: step.skipped_reason.as_deref(),
                approvals: step
                    .approvals
                    .iter()
                    .map(|decision| Approval {
                        ask: decision.ask,
                        approved: decision.approved,
                        by: &decision.by,
                        account: decision.account.as_ref(),
                        signature: decision.signature_summary(&state.run_id, step),
                        at: decision.at,
                        reason: decision.reason.as_deref(),
                        pre_approved: decision.pre_approved,
                    })
                    .collect(),
                human_wait_seconds: seconds(step.human_wait),
            })
            .collect(),
        notifications: state
            .notifications
            .iter()
            .map(|notification| NotificationJson {
                step: &notification.step,
                at: notification.at,
                repeat: notification.repeat,
                to: notification.to.as_deref(),
                message: notification.message.as_deref(),
                delivered: notification.ok(),
                error: notification.error.as_deref(),
            })
            .collect(),
        post_mortem_notes: state.notes.as_ref().map(|notes| NotesJson {
            root_cause: &notes.root_cause,
            remediation: &notes.remediation,
            by: &notes.by,
            at: notes.at,
        }),
    }
}

pub(crate) fn render(state: &RunState) -> String {
    // Serializing these structs cannot fail: string keys only, no non-finite floats (every
    // float is a whole number of milliseconds). Should it ever, the reader gets valid JSON
    // that says so instead of a half-written file.
    match serde_json::to_string_pretty(&report(state)) {
        Ok(mut text) => {
            text.push('\n');
            text
        }
        Err(error) => format!(
            "{}\n",
            serde_json::json!({ "report_version": REPORT_VERSION, "error": error.to_string() })
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures::{RESTORE_ERROR, failed_run};

    fn parsed() -> Value {
        let text = render(&failed_run());
        assert!(text.ends_with("}\n"), "trailing newline");
        assert!(text.contains("\n  \"run_id\""), "pretty-printed");
        serde_json::from_str(&text).expect("the report is JSON")
    }

    #[test]
    fn the_run_fields_are_there_with_their_values() {
        let report = parsed();
        assert_eq!(report["report_version"], 1);
        assert_eq!(report["run_id"], "0193-r1");
        assert_eq!(report["playbook"], "database-restore");
        assert_eq!(report["playbook_file"], "playbooks/database-restore.yaml");
        assert_eq!(
            report["playbook_hash"],
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(report["mode"], "drill");
        assert_eq!(report["dry_run"], false);
        assert_eq!(report["operator"], "ops");
        assert_eq!(report["started_at"], "2027-01-15T08:00:00Z");
        assert_eq!(report["declared_at"], Value::Null);
        assert_eq!(report["clock_started_at"], "2027-01-15T08:00:00Z");
        assert_eq!(report["finished_at"], "2027-01-15T08:03:24Z");
        assert_eq!(report["outcome"], "failed");
        assert_eq!(report["exit_code"], 1);
        assert_eq!(report["human_wait_seconds"], 120.0);
        assert_eq!(report["recovery_seconds"], 84.0);
        assert_eq!(report["duration_seconds"], 204.0);
        assert_eq!(report["resumes"], json!([]));
        assert_eq!(report["interruptions"], json!([]));
        assert_eq!(report["notifications"], json!([]));
        assert_eq!(report["post_mortem_notes"], Value::Null);
    }

    #[test]
    fn notifications_are_listed_with_where_what_and_whether_delivered() {
        let text = render(&crate::fixtures::communication_run());
        let report: Value = serde_json::from_str(&text).expect("json");
        let notifications = report["notifications"].as_array().expect("array");
        assert_eq!(notifications.len(), 7);
        assert_eq!(
            notifications[0],
            json!({
                "step": "declare",
                "at": "2027-01-15T08:00:02Z",
                "repeat": false,
                "to": "webhook hooks.slack.com",
                "message": "Incident declared: database down\nDetails in #inc",
                "delivered": false,
                "error": "the receiver answered HTTP 500 Internal Server Error: ok"
            })
        );
        assert_eq!(notifications[4]["repeat"], true);
        assert_eq!(notifications[4]["delivered"], false);
        assert_eq!(
            notifications[4]["to"],
            "POST status.example.com/api/v1/incidents"
        );
        let delivered = notifications
            .iter()
            .filter(|n| n["delivered"] == true)
            .count();
        assert_eq!(delivered, 5);
    }

    #[test]
    fn objectives_are_in_seconds_with_null_for_unknown() {
        let report = parsed();
        assert_eq!(
            report["objectives"],
            json!({
                "rto": {
                    "objective_seconds": 1800.0,
                    "achieved_seconds": null,
                    "margin_seconds": null,
                    "met": null
                },
                "rpo": {
                    "objective_seconds": 3600.0,
                    "achieved_seconds": 1500.0,
                    "margin_seconds": 2100.0,
                    "met": true
                }
            })
        );
    }

    #[test]
    fn steps_carry_attempts_errors_evidence_and_approvals() {
        let report = parsed();
        let steps = report["steps"].as_array().expect("steps");
        let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
        assert_eq!(ids, ["assess", "restore", "smoke", "drop_target"]);

        let assess = &steps[0];
        assert_eq!(assess["kind"], "assess");
        assert_eq!(assess["outputs"]["taken_at"], "2027-01-15T07:35:00Z");

        let restore = &steps[1];
        assert_eq!(restore["status"], "failed");
        assert_eq!(restore["started_at"], "2027-01-15T08:02:11Z");
        assert_eq!(restore["finished_at"], "2027-01-15T08:03:20Z");
        assert_eq!(restore["duration_seconds"], 69.0);
        assert_eq!(restore["error"], RESTORE_ERROR);
        assert_eq!(restore["evidence"].as_array().map(Vec::len), Some(12));
        assert_eq!(restore["human_wait_seconds"], 120.0);
        assert_eq!(
            restore["attempts"][0],
            json!({
                "number": 1,
                "status": "failed",
                "started_at": "2027-01-15T08:02:11Z",
                "finished_at": "2027-01-15T08:02:20Z",
                "error": "connection refused"
            })
        );
        assert_eq!(restore["attempts"][1]["number"], 2);
        assert_eq!(
            restore["approvals"],
            json!([{
                "ask": "gate",
                "approved": true,
                "by": "alice",
                "at": "2027-01-15T08:02:10Z",
                "reason": "backup looks right",
                "pre_approved": false
            }])
        );

        let smoke = &steps[2];
        assert_eq!(smoke["status"], "skipped");
        assert_eq!(smoke["clock_stop"], true);
        assert_eq!(smoke["skipped_reason"], "needs `restore`, which failed");
        assert_eq!(smoke["started_at"], Value::Null);
        assert_eq!(smoke["attempts"], json!([]));
        assert_eq!(smoke["outputs"], json!({}));
        assert_eq!(steps[3]["cleanup"], true);
    }

    #[test]
    fn every_documented_step_field_is_present() {
        let report = parsed();
        let documented = [
            "id",
            "kind",
            "cleanup",
            "clock_stop",
            "status",
            "started_at",
            "finished_at",
            "duration_seconds",
            "attempts",
            "outputs",
            "error",
            "evidence",
            "skipped_reason",
            "approvals",
            "human_wait_seconds",
        ];
        for step in report["steps"].as_array().expect("steps") {
            let mut keys: Vec<&str> = step
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            let mut expected = documented.to_vec();
            expected.sort_unstable();
            assert_eq!(keys, expected);
        }
    }

    /// docs/reports.md is the contract: a field the report writes but the page does not
    /// describe fails here.
    #[test]
    fn every_field_is_documented() {
        let docs = include_str!("../../docs/reports.md");
        fn walk(value: &Value, path: &str, found: &mut Vec<String>) {
            match value {
                Value::Object(map) if path != "steps[].outputs" => {
                    for (key, child) in map {
                        let child_path = if path.is_empty() {
                            key.clone()
                        } else {
                            format!("{path}.{key}")
                        };
                        found.push(child_path.clone());
                        walk(child, &child_path, found);
                    }
                }
                Value::Array(items) => {
                    for item in items {
                        walk(item, &format!("{path}[]"), found);
                    }
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        walk(&parsed(), "", &mut found);
        let communication: Value =
            serde_json::from_str(&render(&crate::fixtures::communication_run())).expect("json");
        assert!(communication["post_mortem_notes"].is_object());
        walk(&communication, "", &mut found);
        found.sort();
        found.dedup();
        assert!(found.len() > 40, "{found:?}");
        for path in found {
            assert!(
                docs.contains(&format!("`{path}`")),
                "docs/reports.md does not document `{path}`"
            );
        }
    }
}
