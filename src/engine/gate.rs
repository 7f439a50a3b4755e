//! The human gates in front of a step — its `approval:`, a `kind: approval` step's question, a
//! manual step's attestation — and how each is settled: from the journal (a decision already
//! recorded), from pre-approval flags, or by asking the operator, until a deadline rejects.

use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::run::Shared;
use super::step::Fatal;
use crate::event::{Ask, Event, OsAccount};
use crate::human::{Question, Reply, Withdrawn};
use crate::inbox::Letter;
use crate::model::Step;
use crate::state::StepState;
use crate::steps::StepConfig;
/// The human gates in front of a step, in order: its `approval:`, then for a `kind: approval`
/// step its own question, and for a manual step the attestation.
pub(super) fn gates(step: &Step) -> Vec<Gate> {
    let mut gates = Vec::new();
    if let Some(gate) = &step.approval {
        gates.push(Gate {
            ask: Ask::Gate,
            text: gate.prompt.clone(),
            approvers: gate.approvers,
            timeout: gate.timeout.map(|t| t.0),
            allowed: gate.allowed.clone(),
            signed: gate.signed,
        });
    }
    match &step.params {
        // The step's own timeout bounds the wait: for a gate, expiry means "no".
        StepConfig::Approval(approval) => gates.push(Gate {
            ask: Ask::Gate,
            text: approval.prompt.clone(),
            approvers: approval.approvers.unwrap_or(1).max(1),
            timeout: step.timeout.map(|t| t.0),
            allowed: approval.allowed.clone(),
            signed: approval.signed,
        }),
        StepConfig::Manual(manual) => gates.push(Gate {
            ask: Ask::Attest,
            text: manual.instructions.clone(),
            approvers: 1,
            timeout: None,
            allowed: Vec::new(),
            signed: false,
        }),
        _ => {}
    }
    gates
}

/// A question that must be settled before a step runs.
pub(super) struct Gate {
    pub(super) ask: Ask,
    /// The prompt or instructions (rendered before asking).
    pub(super) text: String,
    /// Distinct people whose "yes" is needed.
    pub(super) approvers: u32,
    /// Expiry rejects.
    pub(super) timeout: Option<Duration>,
    /// Who may decide (declared names); empty: anyone.
    pub(super) allowed: Vec<String>,
    /// Every decision must be signed with the decider's key on record.
    pub(super) signed: bool,
}

pub(super) enum Settled {
    Yes((String, Timestamp)),
    No,
    Waiting,
    Cancelled,
    /// Incident mode: the step's one question was answered "skip" or "abort".
    Skip(String),
    Abort(String, Option<String>),
}

/// How often a question waiting at a terminal looks for decisions from other shells.
const INBOX_LOOK: Duration = Duration::from_millis(200);

/// Who answered a question first.
enum Answered {
    Here(Option<Reply>),
    Elsewhere(Letter),
}

/// Gets a decision on `ask` from the journal, pre-approval flags, or the operator.
pub(super) async fn settle(
    shared: &std::sync::Arc<Shared>,
    step: &Step,
    prior: Option<&StepState>,
    gate: Gate,
    cancel: &CancellationToken,
) -> Result<Settled, Fatal> {
    let Gate {
        ask,
        text,
        approvers,
        timeout,
        allowed,
        signed,
    } = gate;
    let may = |name: &str| crate::steps::approval::may_decide(&allowed, name);
    let keys = &shared.playbook.signers;
    // Whether `by` may decide without a signature (at a terminal, or ahead of time).
    let unsigned_ok = |by: &str| {
        let decision = crate::signing::Decision {
            run_id: &shared.run_id,
            step: &step.id,
            ask: ask.name(),
            asked_at: "",
            approved: true,
            by,
            reason: None,
        };
        crate::steps::approval::admit(keys, signed, &decision, None).is_ok()
    };
    // Decisions count from the last attempt on: a gate passed before a failed attempt is asked
    // again for the next one.
    let since = prior
        .and_then(|p| p.attempts.last())
        .map_or(Timestamp::MIN, |a| a.started_at);
    // A resumed run counts only approvals that still hold: a signature that no longer
    // verifies (the journal was edited), or a missing one where a key is on record, counts
    // for nothing, and the question is asked again.
    let holds =
        |p: &StepState, d: &crate::state::Decision| match d.signature_check(&shared.run_id, p) {
            Some(checked) => checked.is_ok(),
            None => unsigned_ok(&d.by),
        };
    let mut yes: Vec<Yes> = prior
        .map(|p| {
            p.approvals
                .iter()
                .filter(|d| d.ask == ask && d.approved && d.at >= since && holds(p, d))
                .map(|d| Yes {
                    by: d.by.clone(),
                    account: d.account.clone(),
                    at: d.at,
                })
                .collect()
        })
        .unwrap_or_default();
    let open = prior
        .and_then(|p| p.question.clone())
        .filter(|q| q.ask == ask);
    let enough = |yes: &[Yes]| people(yes) >= approvers as usize;
    let settled = |yes: &[Yes]| {
        let last = yes.last().expect("enough approvals");
        Settled::Yes((last.by.clone(), last.at))
    };

    // Pre-approvals are the person's who gave them to `run`, also when another resumes.
    let pre_approver = &shared.pre_approver;
    let pre_account = shared.pre_approver_account.clone();
    if shared.pre_approved(&step.id, ask)
        && may(pre_approver)
        && unsigned_ok(pre_approver)
        && !yes.iter().any(|y| y.is(pre_approver, pre_account.as_ref()))
    {
        let record = shared.emitter.emit(Event::ApprovalDecided {
            step: step.id.clone(),
            ask,
            approved: true,
            by: pre_approver.clone(),
            reason: None,
            pre_approved: true,
            account: pre_account.clone(),
            signature: None,
        })?;
        yes.push(Yes {
            by: pre_approver.clone(),
            account: pre_account,
            at: record.at,
        });
    }
    if enough(&yes) {
        return Ok(settled(&yes));
    }

    // When the question was asked: part of what a signed decision signs.
    let (expires_at, asked_at) = match &open {
        Some(question) => (question.expires_at, question.asked_at),
        None => {
            let expires_at = timeout.and_then(|t| {
                crate::clock::now()
                    .checked_add(jiff::SignedDuration::try_from(t).ok()?)
                    .ok()
            });
            let record = shared.emitter.emit(Event::ApprovalRequested {
                step: step.id.clone(),
                ask,
                prompt: text.clone(),
                approvers,
                expires_at,
                allowed: allowed.clone(),
                keys: keys.clone(),
                signed,
            })?;
            (expires_at, record.at)
        }
    };
    let reject = |by: String,
                  reason: Option<String>,
                  account: Option<OsAccount>,
                  signature: Option<String>| {
        shared.emitter.emit(Event::ApprovalDecided {
            step: step.id.clone(),
            ask,
            approved: false,
            by,
            reason,
            pre_approved: false,
            account,
            signature,
        })
    };
    let expired = |reject: &dyn Fn(
        String,
        Option<String>,
        Option<OsAccount>,
        Option<String>,
    ) -> Result<_, Fatal>| {
        let waited = timeout.map_or_else(String::new, |t| {
            format!(" within {}", crate::duration::Duration(t))
        });
        reject(
            "timeout".into(),
            Some(format!("no decision{waited}")),
            None,
            None,
        )
        .map(|_| Settled::No)
    };
    loop {
        let remaining = match expires_at {
            Some(at) => {
                let left = at.duration_since(crate::clock::now());
                if left.is_negative() || left.is_zero() {
                    return expired(&reject);
                }
                Some(left.unsigned_abs())
            }
            None => None,
        };
        if !shared.operator.interactive() {
            return Ok(Settled::Waiting);
        }
        let withdrawn = Withdrawn::default();
        let question = Question {
            step: step.id.clone(),
            ask,
            text: text.clone(),
            summary: super::step::shown_summary(shared, step),
            targets: Vec::new(),
            approved_by: yes.iter().map(Yes::shown).collect(),
            approved_here: yes.iter().any(|y| {
                y.account
                    .as_ref()
                    .is_some_and(|a| a.same_person(&shared.account))
            }),
            approvers,
            elapsed: shared.elapsed(),
            rto: shared.rto,
            incident: shared.mode == crate::event::Mode::Incident,
            allowed: allowed.clone(),
            allowed_here: may(&shared.operator_name),
            signed_elsewhere: !unsigned_ok(&shared.operator_name),
            withdrawn: withdrawn.clone(),
        };
        let operator = shared.operator.clone();
        let naming = shared.clone();
        let index = shared.playbook.index_of(&step.id);
        let asked = ask_human(shared, cancel, move || {
            let targets = index
                .map(|i| super::step::writes_to(&naming, &naming.playbook.steps[i]))
                .unwrap_or_default();
            operator.ask(&Question {
                targets,
                ..question
            })
        });
        let answered = async {
            tokio::select! {
                reply = asked => Answered::Here(reply),
                letter = letter_for(shared, &step.id) => Answered::Elsewhere(letter),
            }
        };
        let answered = match remaining {
            Some(left) => match tokio::time::timeout(left, answered).await {
                Ok(answered) => answered,
                Err(_) => {
                    withdrawn.raise();
                    return expired(&reject);
                }
            },
            None => answered.await,
        };
        // The terminal stops asking whatever answered: its thread sees the flag and returns.
        withdrawn.raise();
        // A decision from another shell may come signed (checked in `from_letter`).
        let mut signature = None;
        let reply = match answered {
            Answered::Here(reply) => reply.map(|reply| (reply, shared.account.clone())),
            Answered::Elsewhere(letter) => {
                let (id, relayed) = (letter.id.clone(), letter.relayed);
                let account = letter.account();
                signature = letter.signature.clone();
                let (answer, reply) = match may(&letter.by) {
                    true => from_letter(
                        letter,
                        &yes,
                        approvers,
                        &step.id,
                        (&shared.run_id, ask, asked_at),
                        (keys, signed),
                    ),
                    false => (Err(not_allowed(&letter.by, &step.id, &allowed)), None),
                };
                crate::inbox::reply(&shared.run_dir, &id, relayed, &answer);
                match reply {
                    Some(reply) => Some((reply, account)),
                    None => continue,
                }
            }
        };
        // An answer at this terminal is this process's account's.
        let (reply, account) = match reply {
            Some((reply, account)) => (Some(reply), account),
            None => (None, shared.account.clone()),
        };
        match reply {
            None => return Ok(Settled::Cancelled),
            Some(Reply::Unavailable) => return Ok(Settled::Waiting),
            Some(reply @ (Reply::Skip { .. } | Reply::Abort { .. })) => {
                shared.emitter.emit(Event::Confirmed {
                    step: step.id.clone(),
                    answer: if matches!(reply, Reply::Skip { .. }) {
                        "skip"
                    } else {
                        "abort"
                    }
                    .into(),
                    waited_ms: 0,
                })?;
                return Ok(match reply {
                    Reply::Skip { by } => Settled::Skip(by),
                    Reply::Abort { by, reason } => Settled::Abort(by, reason),
                    _ => unreachable!("matched above"),
                });
            }
            // Only the people allowed decide, and signed where it must be: the terminal's
            // operator waits for them too.
            Some(Reply::Yes { by, .. } | Reply::No { by, .. })
                if !may(&by) || (signature.is_none() && !unsigned_ok(&by)) => {}
            Some(Reply::No { by, reason }) => {
                reject(by, reason, Some(account), signature)?;
                return Ok(Settled::No);
            }
            // One account, one approval, whatever names it gives.
            Some(Reply::Yes { by, .. }) if yes.iter().any(|y| y.is(&by, Some(&account))) => {}
            Some(Reply::Yes { by, reason }) => {
                let record = shared.emitter.emit(Event::ApprovalDecided {
                    step: step.id.clone(),
                    ask,
                    approved: true,
                    by: by.clone(),
                    reason,
                    pre_approved: false,
                    account: Some(account.clone()),
                    signature,
                })?;
                yes.push(Yes {
                    by,
                    account: Some(account),
                    at: record.at,
                });
                if enough(&yes) {
                    return Ok(settled(&yes));
                }
            }
        }
    }
}

/// The next decision for `step` posted to the run's inbox by `drillbook approve` in another
/// shell; pending forever when none comes.
async fn letter_for(shared: &Shared, step: &str) -> Letter {
    loop {
        if let Some(letter) = crate::inbox::take(&shared.run_dir, step).into_iter().next() {
            return letter;
        }
        tokio::time::sleep(INBOX_LOOK).await;
    }
}

/// Why `by` may not decide `step`.
pub(super) fn not_allowed(by: &str, step: &str, allowed: &[String]) -> String {
    format!(
        "{by} is not among the people allowed to decide `{step}` ({})",
        allowed.join(", ")
    )
}

/// An approval already given: by whom, from which account, when.
struct Yes {
    by: String,
    account: Option<OsAccount>,
    at: Timestamp,
}

impl Yes {
    /// Whether this approval is `by`'s, or that account's under any name.
    fn is(&self, by: &str, account: Option<&OsAccount>) -> bool {
        self.by.trim().eq_ignore_ascii_case(by.trim())
            || matches!((&self.account, account), (Some(a), Some(b)) if a.same_person(b))
    }

    /// "alice (root@db-1)".
    fn shown(&self) -> String {
        match &self.account {
            Some(account) => format!("{} ({account})", self.by),
            None => self.by.clone(),
        }
    }
}

/// How many different people approved: names and accounts both distinct. An approval with no
/// recorded account (an older journal) counts by its name alone.
fn people(yes: &[Yes]) -> usize {
    let mut names: Vec<String> = yes.iter().map(|y| y.by.trim().to_lowercase()).collect();
    names.sort_unstable();
    names.dedup();
    let mut uids: Vec<(Option<String>, u32)> = yes
        .iter()
        .filter_map(|y| Some(y.account.as_ref()?.person()))
        .collect();
    uids.sort_unstable();
    uids.dedup();
    let unaccounted = yes.iter().filter(|y| y.account.is_none()).count();
    names.len().min(uids.len() + unaccounted)
}

/// A decision from another shell, checked as `drillbook approve` checks one it writes itself:
/// the sender's answer, and the reply it stands for (`None`: refused, keep asking).
fn from_letter(
    letter: Letter,
    yes: &[Yes],
    approvers: u32,
    step: &str,
    (run_id, ask, asked_at): (&str, Ask, Timestamp),
    (keys, signed): (&std::collections::BTreeMap<String, String>, bool),
) -> (crate::inbox::Answer, Option<Reply>) {
    let account = letter.account();
    // A signature must hold for this decision of this question, against the decider's key on
    // record; one on record must be used.
    let asked_at = asked_at.to_string();
    let decision = crate::signing::Decision {
        run_id,
        step,
        ask: ask.name(),
        asked_at: &asked_at,
        approved: letter.approved,
        by: &letter.by,
        reason: letter.reason.as_deref(),
    };
    if let Err(why) =
        crate::steps::approval::admit(keys, signed, &decision, letter.signature.as_deref())
    {
        return (Err(format!("refused: {why}")), None);
    }
    let Letter {
        approved,
        by,
        reason,
        ..
    } = letter;
    if let Some(earlier) = yes.iter().find(|y| y.is(&by, Some(&account))) {
        let why = if earlier.by.trim().eq_ignore_ascii_case(by.trim()) {
            format!("{by} already approved `{step}`; it needs {approvers} different people")
        } else {
            format!(
                "OS account {} already approved `{step}` as {}; four eyes need another person's account",
                account.user, earlier.by
            )
        };
        return (Err(why), None);
    }
    let count = yes.len() + 1;
    let answer = if !approved {
        format!("{by} rejected `{step}`; the running drillbook recorded it")
    } else if count < approvers as usize {
        format!(
            "{by} approved `{step}` ({count} of {approvers} approvals); someone else must approve too"
        )
    } else {
        format!("{by} approved `{step}`; the running drillbook goes on")
    };
    let reply = if approved {
        Reply::Yes { by, reason }
    } else {
        Reply::No { by, reason }
    };
    (Ok(answer), Some(reply))
}

/// Runs a blocking conversation with the operator, one at a time, off the async threads.
/// `None` when the run was cancelled meanwhile.
pub(super) async fn ask_human<T: Send + 'static>(
    shared: &Shared,
    cancel: &CancellationToken,
    ask: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _turn = tokio::select! {
        turn = shared.asking.lock() => turn,
        _ = cancel.cancelled() => return None,
    };
    tokio::select! {
        answer = tokio::task::spawn_blocking(ask) => answer.ok(),
        _ = cancel.cancelled() => None,
    }
}
