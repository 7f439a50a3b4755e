//! Hand-made journals for the tests of everything that reads a run's state: reports,
//! measures, history, prediction, projection, due.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::duration::Duration;
use crate::event::{Ask, Event, Mode, PlannedStep, Record, Status};
use crate::state::RunState;

/// Base time: 2027-01-15T08:00:00Z.
pub(crate) const BASE: i64 = 1_800_000_000;

pub(crate) fn at(second: i64) -> Timestamp {
    Timestamp::from_second(BASE + second).expect("timestamp")
}

pub(crate) fn planned(id: &str, kind: &str) -> PlannedStep {
    PlannedStep {
        id: id.into(),
        kind: kind.into(),
        description: None,
        needs: vec![],
        summary: format!("{kind} {id}"),
        cleanup: false,
        clock_stop: false,
        live_only: false,
    }
}

/// Builds a journal record by record, numbering them.
pub(crate) struct Journal {
    records: Vec<Record>,
}

impl Journal {
    pub(crate) fn start(
        plan: Vec<PlannedStep>,
        rto: Option<&str>,
        rpo: Option<&str>,
        declared_at: Option<Timestamp>,
    ) -> Journal {
        let duration = |text: &str| Duration::parse(text).expect("duration");
        let mut journal = Journal { records: vec![] };
        journal.push(
            0,
            Event::RunStarted {
                run_id: "0193-r1".into(),
                playbook: "database-restore".into(),
                file: "playbooks/database-restore.yaml".into(),
                playbook_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                    .into(),
                mode: Mode::Drill,
                dry_run: false,
                declared_at,
                operator: "ops".into(),
                pid: 1,
                rto: rto.map(duration),
                rpo: rpo.map(duration),
                vars: BTreeMap::new(),
                secrets_file: None,
                max_parallel: 4,
                steps: plan,
            },
        );
        journal
    }

    pub(crate) fn push(&mut self, second: i64, event: Event) -> &mut Journal {
        self.records.push(Record {
            seq: self.records.len() as u64,
            prev: None,
            at: at(second),
            event,
        });
        self
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attempt(
        &mut self,
        step: &str,
        attempt: u32,
        from: i64,
        to: i64,
        status: Status,
        error: Option<&str>,
        outputs: BTreeMap<String, serde_json::Value>,
        evidence: Vec<String>,
    ) -> &mut Journal {
        self.push(
            from,
            Event::StepStarted {
                step: step.into(),
                attempt,
                params: serde_json::Value::Null,
            },
        );
        self.push(
            to,
            Event::StepFinished {
                step: step.into(),
                attempt,
                status,
                outputs,
                error: error.map(str::to_owned),
                evidence,
                error_class: None,
            },
        )
    }

    pub(crate) fn ok(&mut self, step: &str, from: i64, to: i64) -> &mut Journal {
        self.attempt(
            step,
            1,
            from,
            to,
            Status::Succeeded,
            None,
            BTreeMap::new(),
            vec![],
        )
    }

    pub(crate) fn gate(
        &mut self,
        step: &str,
        asked: i64,
        decided: i64,
        by: &str,
        approved: bool,
    ) -> &mut Journal {
        self.push(
            asked,
            Event::ApprovalRequested {
                step: step.into(),
                ask: Ask::Gate,
                prompt: format!("run {step}?"),
                approvers: 1,
                expires_at: None,
                allowed: Vec::new(),
                keys: Default::default(),
                signed: false,
            },
        );
        self.push(
            decided,
            Event::ApprovalDecided {
                step: step.into(),
                ask: Ask::Gate,
                approved,
                by: by.into(),
                reason: Some("backup looks right".into()),
                pre_approved: false,
                account: None,
                signature: None,
            },
        )
    }

    pub(crate) fn finish(&mut self, second: i64, exit_code: u8) -> &mut Journal {
        self.push(second, Event::RunFinished { exit_code })
    }

    pub(crate) fn state(&self) -> RunState {
        RunState::fold(&self.records).expect("fold")
    }
}

/// Outputs of a notify step's send.
pub(crate) fn sent(to: &str, message: &str) -> BTreeMap<String, serde_json::Value> {
    BTreeMap::from([
        ("to".into(), to.into()),
        ("message".into(), message.into()),
        ("status".into(), 200.into()),
    ])
}

pub(crate) const DECLARE_HOOK: &str = "webhook hooks.slack.com";
pub(crate) const STATUS_API: &str = "POST status.example.com/api/v1/incidents";

/// An incident with its messages: `declare` fails once (HTTP 500) then posts; `updates`
/// calls a status page, then repeats every minute — once failing — until `recover` stops
/// the clock; `restored` posts a message with a `|` in it; erin writes post-mortem notes.
pub(crate) fn communication_run() -> RunState {
    let mut recover = planned("recover", "command");
    recover.clock_stop = true;
    let plan = vec![
        planned("declare", "notify"),
        planned("updates", "notify"),
        recover,
        planned("restored", "notify"),
    ];
    let mut journal = Journal::start(plan, Some("30m"), None, None);
    let repeated = |error: Option<&str>| Event::NotificationRepeated {
        step: "updates".into(),
        error: error.map(str::to_owned),
        to: Some(STATUS_API.into()),
        message: Some(r#"{"status":"investigating"}"#.into()),
    };
    journal
        .attempt(
            "declare",
            1,
            1,
            2,
            Status::Failed,
            Some("the receiver answered HTTP 500 Internal Server Error: ok"),
            sent(
                DECLARE_HOOK,
                "Incident declared: database down\nDetails in #inc",
            ),
            vec![],
        )
        .attempt(
            "declare",
            2,
            3,
            4,
            Status::Succeeded,
            None,
            sent(
                DECLARE_HOOK,
                "Incident declared: database down\nDetails in #inc",
            ),
            vec!["delivered: HTTP 200 OK".into()],
        )
        .attempt(
            "updates",
            1,
            5,
            6,
            Status::Succeeded,
            None,
            sent(STATUS_API, r#"{"status":"investigating"}"#),
            vec![],
        )
        .push(
            6,
            Event::StepStarted {
                step: "recover".into(),
                attempt: 1,
                params: serde_json::Value::Null,
            },
        )
        .push(66, repeated(None))
        .push(
            126,
            repeated(Some("could not send the notification: connection failed")),
        )
        .push(186, repeated(None))
        .push(
            200,
            Event::StepFinished {
                step: "recover".into(),
                attempt: 1,
                status: Status::Succeeded,
                outputs: BTreeMap::new(),
                error: None,
                evidence: vec![],
                error_class: None,
            },
        )
        .attempt(
            "restored",
            1,
            201,
            202,
            Status::Succeeded,
            None,
            sent(DECLARE_HOOK, "Recovered | all <b>good</b>"),
            vec![],
        )
        .push(
            205,
            Event::PostMortemNotes {
                root_cause: "A full disk on the primary.".into(),
                remediation: vec!["Alert on disk usage.".into()],
                by: "erin".into(),
            },
        )
        .finish(210, 0);
    journal.state()
}

/// The error of the failed step: HTML in it must come out escaped, `|` must not break a
/// Markdown table.
pub(crate) const RESTORE_ERROR: &str =
    "pg_restore exited with status 1: relation <b>orders</b> | already exists";

/// A failed drill: `assess` succeeds with a backup 25 minutes older than the start,
/// alice approves `restore` after a two-minute wait, `restore` fails twice (retried),
/// `smoke` (the clock-stop step) is skipped because of it, the cleanup step runs.
pub(crate) fn failed_run() -> RunState {
    let mut smoke = planned("smoke", "smoke-test");
    smoke.clock_stop = true;
    let mut drop_target = planned("drop_target", "command");
    drop_target.cleanup = true;
    let plan = vec![
        planned("assess", "assess"),
        planned("restore", "restore"),
        smoke,
        drop_target,
    ];
    let taken_at = Timestamp::from_second(BASE - 1_500).expect("timestamp");
    let evidence: Vec<String> = (1..=12).map(|n| format!("stderr line {n}")).collect();
    let mut journal = Journal::start(plan, Some("30m"), Some("1h"), None);
    journal
        .attempt(
            "assess",
            1,
            1,
            5,
            Status::Succeeded,
            None,
            BTreeMap::from([
                ("taken_at".into(), taken_at.to_string().into()),
                ("backup".into(), "production/2027-01-15.dump".into()),
            ]),
            vec!["newest complete backup: production/2027-01-15.dump".into()],
        )
        .gate("restore", 10, 130, "alice", true)
        .attempt(
            "restore",
            1,
            131,
            140,
            Status::Failed,
            Some("connection refused"),
            BTreeMap::new(),
            vec![],
        )
        .attempt(
            "restore",
            2,
            150,
            200,
            Status::Failed,
            Some(RESTORE_ERROR),
            BTreeMap::new(),
            evidence,
        )
        .push(
            200,
            Event::StepSkipped {
                step: "smoke".into(),
                reason: "needs `restore`, which failed".into(),
                blocked: true,
            },
        )
        .ok("drop_target", 201, 203)
        .finish(204, 1);
    journal.state()
}
