//! What people do: approvals as sign-off lines (four eyes and who may decide, in words), a
//! `manual` step's instructions as a checklist, a `command` step's program as it is, a wait.

use std::fmt::Write as _;

use super::Section;
use super::shell::{Ctx, quote};
use crate::duration::Duration;
use crate::model::Step;
use crate::steps::approval::Approval;
use crate::steps::command::Command;
use crate::steps::manual::Manual;
use crate::steps::wait::Wait;

/// A decision before going on: the question, who may answer, and a line per person.
pub(super) fn gate(
    prompt: &str,
    approvers: u32,
    allowed: &[String],
    signed: bool,
    timeout: Option<Duration>,
) -> String {
    let mut out = String::from("**Approval before this step.** Ask, and go on only on a yes:\n\n");
    for line in prompt.trim().lines() {
        let _ = writeln!(out, "> {}", line.trim());
    }
    out.push('\n');
    let mut rules = Vec::new();
    if approvers > 1 {
        rules.push(format!(
            "{approvers} different people must say yes (four eyes): nobody signs twice"
        ));
    }
    if !allowed.is_empty() {
        rules.push(format!("only {} may decide", allowed.join(", ")));
    }
    if signed {
        rules.push("each decision is signed with the decider's SSH key in the playbook's `signers` (`ssh-keygen -Y sign`)".into());
    }
    if let Some(timeout) = timeout {
        rules.push(format!(
            "no answer within {timeout} is a no (a timeout never approves)"
        ));
    }
    if !rules.is_empty() {
        let _ = writeln!(out, "Rules: {}.\n", rules.join("; "));
    }
    for _ in 0..approvers.max(1) {
        out.push_str("Approved by: ____________________ at ____________ (UTC)\n\n");
    }
    out
}

pub(super) fn approval(approval: &Approval, ctx: &mut Ctx, s: &mut Section) {
    let prompt = ctx.prose(&approval.prompt);
    s.text(gate(
        &prompt,
        approval.approvers.unwrap_or(1),
        &approval.allowed,
        approval.signed,
        None,
    ));
    s.check("the sign-off lines above are filled in; a no stops the procedure here");
}

pub(super) fn manual(manual: &Manual, ctx: &mut Ctx, s: &mut Section) {
    let text = ctx.prose(&manual.instructions);
    s.text(format!(
        "Do it by hand, then sign:\n\n{}\n\nDone by: ____________________ at ____________ (UTC)",
        checklist(&text)
    ));
}

/// Instructions as a checklist: each paragraph or numbered item a box, its lines kept.
fn checklist(text: &str) -> String {
    let mut items: Vec<String> = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, items: &mut Vec<String>| {
        if !current.trim().is_empty() {
            items.push(std::mem::take(current));
        }
        current.clear();
    };
    for line in text.lines() {
        let trimmed = line.trim();
        let numbered = trimmed
            .split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if trimmed.is_empty() || numbered || trimmed.starts_with("- ") {
            flush(&mut current, &mut items);
        }
        if trimmed.is_empty() {
            continue;
        }
        let content = if numbered {
            trimmed
                .split_once(". ")
                .map(|(_, rest)| rest)
                .unwrap_or(trimmed)
        } else {
            trimmed.strip_prefix("- ").unwrap_or(trimmed)
        };
        if current.is_empty() {
            current.push_str(content);
        } else {
            current.push(' ');
            current.push_str(content);
        }
    }
    flush(&mut current, &mut items);
    items
        .iter()
        .map(|item| format!("- [ ] {item}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn command(step: &Step, command: &Command, ctx: &mut Ctx, s: &mut Section) {
    let _ = step;
    let words: Vec<String> = command
        .run
        .value
        .iter()
        .map(|arg| {
            if arg.contains("{{") || arg.contains("{%") {
                ctx.w(arg)
            } else {
                quote(arg)
            }
        })
        .collect();
    let mut prefix = String::new();
    if let Some(user) = &command.user {
        prefix = format!("runuser -u {} -- ", ctx.w(user));
    }
    let mut line = format!("{prefix}{}", words.join(" "));
    if let Some(database) = &command.database {
        ctx.uses(&["pg"]);
        line = format!("pg {} {line}", ctx.w(database));
    }
    if !command.env.is_empty() {
        let env: Vec<String> = command
            .env
            .iter()
            .map(|(name, value)| format!("{name}={}", ctx.w(value)))
            .collect();
        // Exported first: `pg` passes its environment on to the program.
        line = format!("( export {}; {line} )", env.join(" "));
    }
    if let Some(dir) = &command.workdir {
        line = format!("( cd {} && {line} )", ctx.w(dir));
    }
    let codes = command.success_codes.clone().unwrap_or_else(|| vec![0]);
    s.text(format!(
        "The program, as the playbook runs it{}{}.",
        if command.database.is_some() {
            " (its database connection in libpq's environment: `pg URL …`)"
        } else {
            ""
        },
        if codes == [0] {
            String::new()
        } else {
            format!(
                "; exit statuses {} count as success",
                codes
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
    if codes == [0] {
        s.sh(line);
    } else {
        ctx.uses(&["fail"]);
        let accepted = codes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("|");
        s.sh(format!(
            "status=0; {line} || status=$?\ncase $status in {accepted}) ;; *) fail \"exit $status\" ;; esac"
        ));
    }
    s.check("it exited with a success status; its output says what it did");
}

pub(super) fn wait(wait: &Wait, s: &mut Section) {
    s.text(format!("Wait {} before going on.", wait.duration));
    s.sh(format!("sleep {}", wait.duration.0.as_secs_f64()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_become_boxes() {
        let text = "Stop it first,\nthen look.\n\n1. One thing.\n2. Another\n   continued.\n";
        assert_eq!(
            checklist(text),
            "- [ ] Stop it first, then look.\n- [ ] One thing.\n- [ ] Another continued."
        );
    }

    #[test]
    fn four_eyes_is_two_lines() {
        let text = gate("Go?", 2, &["alice".into(), "bob".into()], false, None);
        assert_eq!(text.matches("Approved by:").count(), 2);
        assert!(text.contains("only alice, bob may decide"), "{text}");
    }
}
