//! Conversations with the person at the terminal: approvals, manual steps, reruns, and the
//! incident-mode "proceed?" before each step. Answers are typed words rather than arrow-key
//! menus, so that a tired operator cannot approve by leaning on Enter, and a test driving a
//! pseudo-terminal can answer by typing.

use std::sync::PoisonError;
use std::time::Duration;

use dialoguer::console::{Style, Term};

use super::progress::Terminal;
use super::{Budget, compact, objective};
use crate::event::Ask;
use crate::human::{Confirmation, Go, Notes, Operator, Question, Reply, Withdrawn};

/// What a conversation needs from a terminal, so the logic can be tested with a script.
pub(crate) trait Conversation {
    fn say(&mut self, text: &str);
    /// The first line of a block, which deserves to stand out.
    fn heading(&mut self, text: &str) {
        self.say(text);
    }
    /// One typed answer; `None` when nobody can answer (end of input, terminal gone).
    fn read(&mut self, prompt: &str, allow_empty: bool) -> Option<String>;
}

/// The real terminal, on stderr so that stdout stays clean for whatever the run prints there.
/// Answers are read as whole lines (the terminal's own line editing), in slices, so that a
/// question answered elsewhere stops being asked.
pub(crate) struct Console {
    term: Term,
    color: bool,
    withdrawn: Withdrawn,
}

impl Console {
    pub(crate) fn stderr(color: bool) -> Console {
        Console {
            term: Term::stderr(),
            color,
            withdrawn: Withdrawn::default(),
        }
    }
}

impl Conversation for Console {
    fn say(&mut self, text: &str) {
        let _ = self.term.write_line(text);
    }

    fn heading(&mut self, text: &str) {
        if self.color {
            let style = Style::new().force_styling(true).yellow().bold();
            self.say(&style.apply_to(text).to_string());
        } else {
            self.say(text);
        }
    }

    fn read(&mut self, prompt: &str, allow_empty: bool) -> Option<String> {
        loop {
            let _ = self.term.write_str(&format!("{prompt}: "));
            let _ = self.term.flush();
            let line = super::stdin_line::read(&self.withdrawn)?;
            if allow_empty || !line.trim().is_empty() {
                return Some(line);
            }
        }
    }
}

impl Terminal {
    /// Runs one conversation with the bars off the screen and no other conversation
    /// interleaved.
    fn converse<T>(&self, withdrawn: Withdrawn, talk: impl FnOnce(&mut Console) -> T) -> T {
        let _turn = self
            .conversation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _paused = self.pause();
        let mut console = Console {
            withdrawn,
            ..Console::stderr(self.header.color)
        };
        let answer = talk(&mut console);
        if console.withdrawn.is_raised() {
            console.say("");
            console.say("  answered from another shell");
        }
        answer
    }
}

impl Operator for Terminal {
    fn interactive(&self) -> bool {
        Term::stderr().is_term()
    }

    fn ask(&self, question: &Question) -> Reply {
        self.converse(question.withdrawn.clone(), |console| {
            ask(console, question, &self.header.operator)
        })
    }

    fn confirm(&self, confirmation: &Confirmation) -> Go {
        self.converse(Withdrawn::default(), |console| {
            confirm(console, confirmation, &self.header.operator)
        })
    }

    fn post_mortem(&self, outcome: &str) -> Option<Notes> {
        self.converse(Withdrawn::default(), |console| {
            post_mortem(console, outcome, &self.header.operator)
        })
    }
}

pub(crate) fn ask(
    conversation: &mut impl Conversation,
    question: &Question,
    operator: &str,
) -> Reply {
    let reply = match question.ask {
        Ask::Gate => gate(conversation, question, operator),
        Ask::Attest => attest(conversation, question, operator),
        Ask::Rerun => rerun(conversation, question, operator),
    };
    reply.unwrap_or(Reply::Unavailable)
}

fn gate(
    conversation: &mut impl Conversation,
    question: &Question,
    operator: &str,
) -> Option<Reply> {
    conversation.say("");
    conversation.heading(&format!("Approval needed: {}", question.step));
    say_indented(conversation, &question.text);
    if !question.summary.trim().is_empty() {
        conversation.say(&format!("  will: {}", question.summary));
    }
    say_targets(conversation, &question.targets);
    conversation.say(&elapsed_line(question.elapsed, question.rto));
    if question.approvers > 1 {
        conversation.say(&format!(
            "  needs {} different people to approve",
            question.approvers
        ));
    }
    if !question.approved_by.is_empty() {
        conversation.say(&format!(
            "  approved so far: {}",
            question.approved_by.join(", ")
        ));
    }
    if !question.allowed.is_empty() {
        conversation.say(&format!(
            "  only these people may decide: {}",
            question.allowed.join(", ")
        ));
    }
    let prompt = if question.incident {
        format!("Approve {}? [yes/no/skip/abort]", question.step)
    } else {
        format!("Approve {}? [yes/no]", question.step)
    };
    loop {
        let answer = normalize(&conversation.read(&prompt, false)?);
        match answer.as_str() {
            "yes" | "y" | "no" | "n" => {
                if let Some(why) = question.not_here(operator, answer.starts_with('y')) {
                    conversation.say(&format!("  {why}"));
                    continue;
                }
            }
            _ => {}
        }
        match answer.as_str() {
            "yes" | "y" => {
                return Some(Reply::Yes {
                    by: operator.to_string(),
                    reason: None,
                });
            }
            "no" | "n" => return refusal(conversation, operator),
            _ => {}
        }
        if question.incident {
            match incident_answer(conversation, &answer, operator)? {
                Some(reply) => return Some(reply),
                None if matches!(answer.as_str(), "abort" | "a") => continue,
                None => conversation.say("  please answer yes, no, skip or abort"),
            }
        } else {
            conversation.say("  please answer yes or no");
        }
    }
}

/// Incident mode's other answers to a step's one question: skip it, or abort the run (after a
/// reason, which is the confirmation: Enter alone goes back to the question). `None` when the
/// answer is neither, or the abort was taken back.
fn incident_answer(
    conversation: &mut impl Conversation,
    answer: &str,
    operator: &str,
) -> Option<Option<Reply>> {
    let by = operator.to_string();
    match answer {
        "skip" | "s" => Some(Some(Reply::Skip { by })),
        "abort" | "a" => {
            let reason = conversation.read("Abort the run: why? (Enter alone goes back)", true)?;
            let reason = reason.trim();
            Some((!reason.is_empty()).then(|| Reply::Abort {
                by,
                reason: Some(reason.to_string()),
            }))
        }
        _ => Some(None),
    }
}

fn attest(
    conversation: &mut impl Conversation,
    question: &Question,
    operator: &str,
) -> Option<Reply> {
    conversation.say("");
    conversation.heading(&format!("Manual step: {}", question.step));
    say_indented(conversation, &question.text);
    conversation.say(&elapsed_line(question.elapsed, question.rto));
    let prompt = if question.incident {
        "Type done when finished, no if it cannot be done, or skip or abort"
    } else {
        "Type done when finished, or no if it cannot be done"
    };
    loop {
        let answer = normalize(&conversation.read(prompt, false)?);
        // Only the word "done": a reflexive "yes" must not attest work nobody did.
        match answer.as_str() {
            "done" => {
                return Some(Reply::Yes {
                    by: operator.to_string(),
                    reason: None,
                });
            }
            "no" | "n" => return refusal(conversation, operator),
            _ => {}
        }
        if question.incident && matches!(answer.as_str(), "skip" | "s" | "abort" | "a") {
            if let Some(reply) = incident_answer(conversation, &answer, operator)? {
                return Some(reply);
            }
            continue;
        }
        conversation.say("  please type done or no");
    }
}

fn rerun(
    conversation: &mut impl Conversation,
    question: &Question,
    operator: &str,
) -> Option<Reply> {
    conversation.say("");
    conversation.heading(&format!(
        "{} was running when the run stopped; it may have partly happened.",
        question.step
    ));
    if !question.summary.trim().is_empty() {
        conversation.say(&format!("  will: {}", question.summary));
    }
    conversation.say(&elapsed_line(question.elapsed, question.rto));
    let prompt = format!("Run {} again? [yes/no]", question.step);
    loop {
        match normalize(&conversation.read(&prompt, false)?).as_str() {
            "yes" | "y" => {
                return Some(Reply::Yes {
                    by: operator.to_string(),
                    reason: None,
                });
            }
            "no" | "n" => return refusal(conversation, operator),
            _ => conversation.say("  please answer yes or no"),
        }
    }
}

/// A "no" goes into the report, where a reason is worth more than the word.
fn refusal(conversation: &mut impl Conversation, operator: &str) -> Option<Reply> {
    let reason = conversation.read("Reason", true)?;
    let reason = reason.trim();
    Some(Reply::No {
        by: operator.to_string(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
    })
}

pub(crate) fn confirm(
    conversation: &mut impl Conversation,
    confirmation: &Confirmation,
    operator: &str,
) -> Go {
    let Confirmation {
        step,
        summary,
        targets,
        elapsed,
        rto,
    } = confirmation;
    conversation.say("");
    if summary.trim().is_empty() {
        conversation.heading(&format!("Next: {step}"));
    } else {
        conversation.heading(&format!("Next: {step} — {summary}"));
    }
    say_targets(conversation, targets);
    conversation.say(&elapsed_line(*elapsed, *rto));
    let by = operator.to_string();
    loop {
        // Nobody left to ask is not consent: stop rather than carry on unsupervised.
        let Some(answer) = conversation.read("Proceed? [yes/skip/abort]", false) else {
            return Go::Abort {
                by,
                reason: Some("nobody left at the terminal".into()),
            };
        };
        let answer = normalize(&answer);
        if matches!(answer.as_str(), "yes" | "y") {
            return Go::Proceed;
        }
        match incident_answer(conversation, &answer, operator) {
            None => {
                return Go::Abort {
                    by,
                    reason: Some("nobody left at the terminal".into()),
                };
            }
            Some(Some(Reply::Skip { by })) => return Go::Skip { by },
            Some(Some(Reply::Abort { by, reason })) => return Go::Abort { by, reason },
            Some(_) if matches!(answer.as_str(), "abort" | "a") => {}
            Some(_) => conversation.say("  please answer yes, skip or abort"),
        }
    }
}

/// The end of an incident: the root cause (several lines) and the remediation items (one per
/// line), each ended by an empty line. Every answer may be empty — at 4am "we don't know yet"
/// is honest, and the report then says the section is still to be written. Whatever was typed
/// before the terminal went away is kept.
pub(crate) fn post_mortem(
    conversation: &mut impl Conversation,
    outcome: &str,
    operator: &str,
) -> Option<Notes> {
    conversation.say("");
    conversation.heading(&format!("Post-mortem notes: the run {outcome}"));
    conversation.say("  For the report: what caused the incident, then what must change.");
    conversation.say("  Several lines each; an empty line ends an answer (Enter alone skips it).");
    let mut notes = Notes {
        by: operator.to_string(),
        ..Notes::default()
    };
    let mut cause: Vec<String> = Vec::new();
    let mut gone = false;
    loop {
        // Numbered, so that each line's prompt differs from the one just answered.
        let prompt = match cause.len() {
            0 => "Root cause".to_owned(),
            n => format!("Root cause, line {}", n + 1),
        };
        let Some(line) = conversation.read(&prompt, true) else {
            gone = true;
            break;
        };
        if line.trim().is_empty() {
            break;
        }
        cause.push(line.trim_end().to_string());
    }
    notes.root_cause = cause.join("\n");
    // Nobody is left to ask for the remediation when the terminal went away mid-cause.
    if gone {
        return conclude(conversation, notes);
    }
    loop {
        let prompt = format!("Remediation item {}", notes.remediation.len() + 1);
        let Some(line) = conversation.read(&prompt, true) else {
            break;
        };
        let item = line.trim();
        // People type list markers out of habit; the report adds its own.
        let item = item
            .strip_prefix("- ")
            .or_else(|| item.strip_prefix("* "))
            .unwrap_or(item)
            .trim();
        if item.is_empty() {
            break;
        }
        notes.remediation.push(item.to_string());
    }
    conclude(conversation, notes)
}

/// Says what became of the notes: `None` when nothing was written.
fn conclude(conversation: &mut impl Conversation, notes: Notes) -> Option<Notes> {
    if notes.is_empty() {
        conversation.say("  nothing written: the report leaves both sections to be written");
        return None;
    }
    conversation.say("  recorded for the post-mortem");
    Some(notes)
}

/// "  writes `redis`: redis 127.0.0.1:6379 db 9": the real thing the step will change.
fn say_targets(conversation: &mut impl Conversation, targets: &[String]) {
    for target in targets {
        conversation.say(&format!("  writes {target}"));
    }
}

fn normalize(answer: &str) -> String {
    answer.trim().to_lowercase()
}

fn say_indented(conversation: &mut impl Conversation, text: &str) {
    for line in text.trim_end().lines() {
        if line.trim().is_empty() {
            conversation.say("");
        } else {
            conversation.say(&format!("  {line}"));
        }
    }
}

/// "  elapsed 4m05s of RTO 30m": the person deciding should know how much time is left.
pub(crate) fn elapsed_line(elapsed: Duration, rto: Option<Duration>) -> String {
    let mut line = format!("  elapsed {}", compact(elapsed));
    if let Some(rto) = rto {
        line.push_str(&format!(" of RTO {}", objective(rto)));
        if let Some(over) = Budget::new(elapsed, rto).over {
            line.push_str(&format!(" (over by {})", compact(over)));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Answers from a list; records everything said and asked.
    struct Script {
        answers: VecDeque<&'static str>,
        transcript: Vec<String>,
    }

    impl Script {
        fn new(answers: &[&'static str]) -> Script {
            Script {
                answers: answers.iter().copied().collect(),
                transcript: Vec::new(),
            }
        }

        fn prompts(&self) -> Vec<&str> {
            self.transcript
                .iter()
                .filter_map(|line| line.strip_prefix("? "))
                .collect()
        }
    }

    impl Conversation for Script {
        fn say(&mut self, text: &str) {
            self.transcript.push(text.to_string());
        }

        fn read(&mut self, prompt: &str, _allow_empty: bool) -> Option<String> {
            self.transcript.push(format!("? {prompt}"));
            self.answers.pop_front().map(str::to_string)
        }
    }

    fn question(ask: Ask) -> Question {
        Question {
            step: "promote".into(),
            ask,
            text: "Point the app at the restored database?".into(),
            summary: "rewrite DATABASE_URL in /etc/app.env".into(),
            targets: Vec::new(),
            approved_by: Vec::new(),
            approvers: 1,
            elapsed: Duration::from_secs(245),
            rto: Some(Duration::from_secs(1_800)),
            approved_here: false,
            allowed: Vec::new(),
            allowed_here: true,
            signed_elsewhere: false,
            incident: false,
            withdrawn: Withdrawn::default(),
        }
    }

    fn yes(by: &str) -> Reply {
        Reply::Yes {
            by: by.into(),
            reason: None,
        }
    }

    #[test]
    fn a_gate_shows_what_is_at_stake_and_takes_yes() {
        let mut script = Script::new(&["yes"]);
        let reply = ask(&mut script, &question(Ask::Gate), "alice");
        assert_eq!(reply, yes("alice"));
        assert_eq!(
            script.transcript,
            [
                "",
                "Approval needed: promote",
                "  Point the app at the restored database?",
                "  will: rewrite DATABASE_URL in /etc/app.env",
                "  elapsed 4m05s of RTO 30m",
                "? Approve promote? [yes/no]",
            ]
        );
    }

    #[test]
    fn a_gate_asks_again_until_it_understands() {
        let mut script = Script::new(&["maybe", " Y "]);
        assert_eq!(
            ask(&mut script, &question(Ask::Gate), "alice"),
            yes("alice")
        );
        assert!(
            script
                .transcript
                .contains(&"  please answer yes or no".to_string())
        );
        assert_eq!(script.prompts().len(), 2);
    }

    #[test]
    fn a_rejection_carries_its_reason() {
        let mut script = Script::new(&["no", "  standby is lagging "]);
        assert_eq!(
            ask(&mut script, &question(Ask::Gate), "alice"),
            Reply::No {
                by: "alice".into(),
                reason: Some("standby is lagging".into())
            }
        );
        assert_eq!(script.prompts(), ["Approve promote? [yes/no]", "Reason"]);

        let mut script = Script::new(&["n", ""]);
        assert_eq!(
            ask(&mut script, &question(Ask::Gate), "alice"),
            Reply::No {
                by: "alice".into(),
                reason: None
            }
        );
    }

    #[test]
    fn four_eyes_never_takes_a_second_name_from_the_same_account() {
        let mut question = question(Ask::Gate);
        question.approvers = 2;
        question.approved_by = vec!["alice (root@db-1)".into()];
        question.approved_here = true;
        // Yes again from this account is refused however often; the prompt waits (here, until
        // the script ends: nobody left, so the question stays open).
        let mut script = Script::new(&["yes", "y"]);
        assert_eq!(ask(&mut script, &question, "bob"), Reply::Unavailable);
        assert!(
            script
                .transcript
                .contains(&"  approved so far: alice (root@db-1)".to_string())
        );
        assert_eq!(
            script
                .transcript
                .iter()
                .filter(|line| **line == format!("  {}", question.not_here("bob", true).unwrap()))
                .count(),
            2
        );
        assert_eq!(
            script.prompts(),
            [
                "Approve promote? [yes/no]",
                "Approve promote? [yes/no]",
                "Approve promote? [yes/no]"
            ]
        );
    }

    #[test]
    fn only_the_people_allowed_decide() {
        let mut question = question(Ask::Gate);
        question.allowed = vec!["bob".into(), "carol".into()];
        question.allowed_here = false;
        let mut script = Script::new(&["yes", "no"]);
        assert_eq!(ask(&mut script, &question, "alice"), Reply::Unavailable);
        assert!(
            script
                .transcript
                .contains(&"  only these people may decide: bob, carol".to_string()),
            "{:?}",
            script.transcript
        );
        question.allowed_here = true;
        let mut script = Script::new(&["yes"]);
        assert_eq!(ask(&mut script, &question, "Carol"), yes("Carol"));
    }

    #[test]
    fn a_second_person_at_their_own_terminal_approves_as_themselves() {
        let mut question = question(Ask::Gate);
        question.approvers = 2;
        question.approved_by = vec!["alice".into()];
        let mut script = Script::new(&["yes"]);
        assert_eq!(ask(&mut script, &question, "bob"), yes("bob"));
    }

    #[test]
    fn a_manual_step_waits_for_done() {
        let mut question = question(Ask::Attest);
        question.step = "dns".into();
        question.text = "Point app.example.com at the standby.\nCheck with dig.".into();
        question.rto = None;
        let mut script = Script::new(&["yes", "done"]);
        assert_eq!(ask(&mut script, &question, "carol"), yes("carol"));
        assert_eq!(
            script.transcript,
            [
                "",
                "Manual step: dns",
                "  Point app.example.com at the standby.",
                "  Check with dig.",
                "  elapsed 4m05s",
                "? Type done when finished, or no if it cannot be done",
                "  please type done or no",
                "? Type done when finished, or no if it cannot be done",
            ]
        );
    }

    #[test]
    fn a_manual_step_that_cannot_be_done_says_why() {
        let mut script = Script::new(&["no", "no access"]);
        assert_eq!(
            ask(&mut script, &question(Ask::Attest), "carol"),
            Reply::No {
                by: "carol".into(),
                reason: Some("no access".into())
            }
        );
    }

    #[test]
    fn a_rerun_warns_that_the_step_may_have_partly_happened() {
        let mut script = Script::new(&["yes"]);
        assert_eq!(ask(&mut script, &question(Ask::Rerun), "dave"), yes("dave"));
        assert_eq!(
            script.transcript[1],
            "promote was running when the run stopped; it may have partly happened."
        );
        assert_eq!(script.prompts(), ["Run promote again? [yes/no]"]);
    }

    #[test]
    fn nobody_to_answer_is_unavailable() {
        for kind in [Ask::Gate, Ask::Attest, Ask::Rerun] {
            let mut script = Script::new(&[]);
            assert_eq!(
                ask(&mut script, &question(kind), "alice"),
                Reply::Unavailable
            );
        }
        let mut script = Script::new(&["no"]);
        assert_eq!(
            ask(&mut script, &question(Ask::Gate), "alice"),
            Reply::Unavailable
        );
    }

    #[test]
    fn post_mortem_notes_take_lines_until_an_empty_one() {
        let mut script = Script::new(&[
            "The primary's disk filled up ",
            "  because WAL archiving had stalled.",
            "",
            "- alert on archive lag",
            "* cap WAL size",
            "",
        ]);
        let notes = post_mortem(&mut script, "succeeded", "erin").expect("notes");
        assert_eq!(
            notes,
            Notes {
                root_cause: "The primary's disk filled up\n  because WAL archiving had stalled."
                    .into(),
                remediation: vec!["alert on archive lag".into(), "cap WAL size".into()],
                by: "erin".into(),
            }
        );
        assert_eq!(script.transcript[1], "Post-mortem notes: the run succeeded");
        assert_eq!(
            script.prompts(),
            [
                "Root cause",
                "Root cause, line 2",
                "Root cause, line 3",
                "Remediation item 1",
                "Remediation item 2",
                "Remediation item 3",
            ]
        );
    }

    #[test]
    fn post_mortem_notes_may_be_left_empty_or_cut_short() {
        let mut script = Script::new(&["", ""]);
        assert_eq!(post_mortem(&mut script, "failed", "erin"), None);
        assert_eq!(script.prompts(), ["Root cause", "Remediation item 1"]);

        let mut script = Script::new(&["", "fix the alert"]);
        let notes = post_mortem(&mut script, "failed", "erin").expect("notes");
        assert_eq!(notes.root_cause, "");
        assert_eq!(notes.remediation, ["fix the alert"]);

        // The terminal went away mid-answer: what was typed is kept.
        let mut script = Script::new(&["a bad deploy"]);
        let notes = post_mortem(&mut script, "failed", "erin").expect("notes");
        assert_eq!(notes.root_cause, "a bad deploy");
        assert!(notes.remediation.is_empty());
    }

    #[test]
    fn incident_mode_confirms_each_step() {
        let elapsed = Duration::from_secs(1_930);
        let rto = Some(Duration::from_secs(1_800));
        let erin = || "erin".to_string();
        let gone = Some("nobody left at the terminal".to_string());
        let cases = [
            (vec!["yes"], Go::Proceed),
            (vec!["what", "skip"], Go::Skip { by: erin() }),
            // Abort asks why; Enter alone takes it back.
            (
                vec!["A", "", "abort", "wrong region"],
                Go::Abort {
                    by: erin(),
                    reason: Some("wrong region".into()),
                },
            ),
            (
                vec![],
                Go::Abort {
                    by: erin(),
                    reason: gone.clone(),
                },
            ),
            (
                vec!["abort"],
                Go::Abort {
                    by: erin(),
                    reason: gone,
                },
            ),
        ];
        for (answers, expected) in cases {
            let mut script = Script::new(&answers);
            let go = confirm(
                &mut script,
                &Confirmation {
                    step: "flush".into(),
                    summary: "FLUSHDB on redis".into(),
                    targets: Vec::new(),
                    elapsed,
                    rto,
                },
                "erin",
            );
            assert_eq!(go, expected, "{answers:?}");
            assert_eq!(script.transcript[1], "Next: flush — FLUSHDB on redis");
            assert_eq!(
                script.transcript[2],
                "  elapsed 32m10s of RTO 30m (over by 2m10s)"
            );
            assert_eq!(script.prompts()[0], "Proceed? [yes/skip/abort]");
        }
    }

    #[test]
    fn an_incident_gate_is_the_steps_one_question() {
        let incident = Question {
            incident: true,
            ..question(Ask::Gate)
        };
        let mut script = Script::new(&["skip"]);
        assert_eq!(
            ask(&mut script, &incident, "erin"),
            Reply::Skip { by: "erin".into() }
        );
        assert_eq!(script.prompts(), ["Approve promote? [yes/no/skip/abort]"]);
        let mut script = Script::new(&["abort", "the standby is stale"]);
        assert_eq!(
            ask(&mut script, &incident, "erin"),
            Reply::Abort {
                by: "erin".into(),
                reason: Some("the standby is stale".into())
            }
        );
        // Outside an incident, skip is not an answer.
        let mut script = Script::new(&["skip", "yes"]);
        assert_eq!(ask(&mut script, &question(Ask::Gate), "erin"), yes("erin"));
    }
}
