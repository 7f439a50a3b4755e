//! `drillbook runbook`: a playbook as a Markdown runbook a person follows by hand when
//! drillbook cannot run (its host is gone, its binary missing). The live procedure, each step
//! in plan order with its purpose, the commands it amounts to (```sh blocks that run in order
//! in one bash), what to check before going on, and approvals as sign-off lines.
//!
//! `shell.rs` turns templates into shell words, `helpers.rs` holds the shell functions defined
//! once at the top; each group of step kinds has its file: `database.rs` (assess, backup,
//! restore), `checks.rs` (smoke-test), `stores.rs` (verify, sync), `service.rs` (promote,
//! flush, notify), `people.rs` (approvals, manual steps, commands, waits).

mod checks;
mod database;
mod helpers;
mod people;
mod secrets;
mod service;
mod shell;
mod stores;

use std::fmt::Write as _;

use crate::model::{Playbook, Step};
use crate::plan::Plan;
use crate::steps::StepConfig;
use shell::{Condition, Ctx};

/// What one step amounts to by hand.
#[derive(Default)]
pub(super) struct Section {
    parts: Vec<Part>,
    /// "Before going on, check" items.
    checks: Vec<String>,
}

enum Part {
    Text(String),
    Sh(String),
}

impl Section {
    pub fn text(&mut self, text: impl Into<String>) {
        self.parts.push(Part::Text(text.into()));
    }

    pub fn sh(&mut self, commands: impl Into<String>) {
        self.parts.push(Part::Sh(commands.into()));
    }

    pub fn check(&mut self, item: impl Into<String>) {
        self.checks.push(item.into());
    }
}

/// The runbook of a playbook.
pub fn render(playbook: &Playbook) -> String {
    let plan = Plan::new(playbook.clone());
    let mut ctx = Ctx::new(playbook);
    let order: Vec<usize> = plan
        .order
        .iter()
        .copied()
        .chain(plan.cleanup_stages.iter().flatten().copied())
        .collect();
    // The steps first: they say which variables, secrets and helpers the top must set.
    let mut steps = String::new();
    let mut cleanup_heading = false;
    for (n, &index) in order.iter().enumerate() {
        let step = &playbook.steps[index];
        if step.cleanup && !cleanup_heading {
            cleanup_heading = true;
            steps.push_str(
                "\n## Cleanup\n\ndrillbook runs these at the end whatever happened before (after a failure too).\n",
            );
        }
        steps.push_str(&step_section(n + 1, step, &mut ctx));
    }

    let mut out = String::new();
    let _ = writeln!(out, "# Runbook: {}\n", playbook.name);
    let _ = writeln!(
        out,
        "<!-- Written by `drillbook runbook` from the playbook `{}`: regenerate it, do not edit it. -->\n",
        playbook.name
    );
    if let Some(description) = &playbook.description {
        let _ = writeln!(out, "{}\n", description.trim());
    }
    out.push_str(
        "This is the playbook's procedure for a person to follow by hand, for when drillbook cannot \
         run it (its host is gone, its binary missing). Run the ```sh blocks in order, in one bash \
         session, from the top: each uses what the blocks before it set. A line starting `STOP:` \
         means stop there and find out why, as drillbook would have.\n\n",
    );
    out.push_str(&objectives(playbook));
    // What the live commands use; the drill's values, shown beside, are not needed.
    let (vars, secrets) = (ctx.vars.clone(), ctx.secrets.clone());
    out.push_str(&live_and_drill(playbook, &mut ctx));
    (ctx.vars, ctx.secrets) = (vars, secrets);
    out.push_str(&needs(playbook, &ctx, &steps));
    out.push_str(&top(playbook, &ctx));
    out.push_str("\n## Steps\n");
    out.push_str(&steps);
    out
}

/// RTO and RPO, and which step stops the clock.
fn objectives(playbook: &Playbook) -> String {
    let mut out = String::from("## Objectives\n\n");
    let objectives = &playbook.objectives;
    if objectives.rto.is_none() && objectives.rpo.is_none() {
        out.push_str("None: this procedure recovers nothing by itself.\n\n");
        return out;
    }
    if let Some(rto) = objectives.rto {
        let stop = playbook
            .clock_stop()
            .map(|step| format!(" The clock stops when step `{}` succeeds.", step.id))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- **RTO {rto}**: from the moment the incident is declared to service restored.{stop} \
             Note the time now: ____________"
        );
    }
    if let Some(rpo) = objectives.rpo {
        let _ = writeln!(
            out,
            "- **RPO {rpo}**: the data recovered must be at most this old when the incident began \
             (the age of the backup restored, or of the last archived commit)."
        );
    }
    out.push('\n');
    out
}

/// The live targets this runbook acts on, and the drill's.
fn live_and_drill(playbook: &Playbook, ctx: &mut Ctx) -> String {
    let mut out = String::from("## Live, not a drill\n\n");
    out.push_str(
        "This runbook is the **live procedure** (an incident, drillbook's `--mode incident`): every \
         command acts on the live targets. Steps that run only in a drill are marked and have no \
         commands here.",
    );
    let targets = &playbook.targets;
    if targets.live.is_empty() {
        out.push_str(" The playbook declares no targets.\n\n");
        return out;
    }
    out.push_str(
        " To rehearse it by hand, give the live names the drill's values (e.g. the drill's \
         database URL as the live secret's value) — never the other way round.\n\n\
         | target | live (this runbook) | drill |\n| --- | --- | --- |\n",
    );
    for (name, live) in &targets.live {
        let drill = targets
            .drill
            .get(name)
            .map(|value| format!("`{}`", ctx.prose(value)))
            .unwrap_or_else(|| "— (never written in a drill)".into());
        let live = ctx.prose(live);
        let live = if live.is_empty() {
            "(empty)".into()
        } else {
            format!("`{live}`")
        };
        let _ = writeln!(out, "| {name} | {live} | {drill} |");
    }
    out.push('\n');
    out
}

/// Variables, secrets, programs.
fn needs(playbook: &Playbook, ctx: &Ctx, steps: &str) -> String {
    let mut out = String::from("## What it needs\n\n");
    if !ctx.vars.is_empty() {
        out.push_str(
            "**Variables** (set at the top from the playbook's defaults; set your own values there, \
             or export them before you start):\n\n",
        );
        for name in &ctx.vars {
            let value = playbook.vars.get(name).cloned().unwrap_or_default();
            let _ = writeln!(out, "- `{name}` = `{value}`");
        }
        out.push('\n');
    }
    if !ctx.secrets.is_empty() {
        out.push_str(
            "**Secrets** (export them yourself from where they are kept; never write them down):\n\n",
        );
        for name in &ctx.secrets {
            match playbook
                .secrets_manager
                .as_ref()
                .and_then(|manager| manager.reference(name))
            {
                Some(reference) => {
                    let _ = writeln!(
                        out,
                        "- `${name}` (read at the top from AWS Secrets Manager, `{reference}`, unless you export it)"
                    );
                }
                None => {
                    let _ = writeln!(out, "- `${name}`");
                }
            }
        }
        let unused: Vec<String> = playbook
            .secrets
            .iter()
            .filter(|s| !ctx.secrets.contains(*s))
            .map(|s| format!("`{s}`"))
            .collect();
        if !unused.is_empty() {
            let _ = writeln!(
                out,
                "\nNot needed here (a drill's, or no step uses them live): {}.",
                unused.join(", ")
            );
        }
        out.push('\n');
    }
    let programs = programs(&ctx.helpers, steps);
    let _ = writeln!(out, "**Programs**: {}.\n", programs.join(", "));
    out
}

/// The programs the commands run: those the helpers and the steps' blocks name.
fn programs(used: &std::collections::BTreeSet<&'static str>, steps: &str) -> Vec<&'static str> {
    let text = format!("{}\n{steps}", helpers::definitions(used).join("\n"));
    let mut programs = vec!["bash"];
    for (program, shown) in [
        ("psql", "psql"),
        ("pg_restore", "pg_restore"),
        ("pg_dump", "pg_dump"),
        ("pg_basebackup", "pg_basebackup"),
        ("pg_verifybackup", "pg_verifybackup"),
        ("pgbackrest", "pgbackrest"),
        ("jq", "jq"),
        ("zstd", "zstd"),
        ("sha256sum", "sha256sum"),
        ("tar", "tar"),
        ("redis-cli", "redis-cli"),
        ("curl", "curl"),
        ("rsync", "rsync (for directory mirrors)"),
        ("aws", "aws (the AWS CLI, for s3:// stores)"),
    ] {
        let named = text.match_indices(program).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + program.len()..].chars().next();
            let apart = |c: Option<char>| {
                c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            };
            apart(before) && apart(after)
        });
        if named {
            programs.push(shown);
        }
    }
    programs
}

/// The block every other block relies on: variables, secrets checked, helpers.
fn top(playbook: &Playbook, ctx: &Ctx) -> String {
    let mut sh = String::new();
    sh.push_str("# Variables: the playbook's defaults, unless already set.\n");
    for name in &ctx.vars {
        let value = playbook.vars.get(name).cloned().unwrap_or_default();
        let _ = writeln!(
            sh,
            "export {name}=\"${{{name}-{}}}\"",
            escape_default(&value)
        );
    }
    if !ctx.secrets.is_empty() {
        for name in &ctx.secrets {
            if let Some(read) = secrets::read(playbook, name) {
                sh.push_str(&read);
            }
        }
        sh.push_str("# Secrets: set by you (export NAME=…), checked here, never written down.\n");
        for name in &ctx.secrets {
            let _ = writeln!(sh, ": \"${{{name}:?export {name} first}}\"");
        }
    }
    sh.push_str("# Where downloads and notes go (kept until you remove it).\n");
    sh.push_str("RUNBOOK_DIR=\"${RUNBOOK_DIR:-$(mktemp -d)}\"; echo \"working in $RUNBOOK_DIR\"\n");
    if ctx.run_values.contains("RUN_ID") {
        sh.push_str("RUN_ID=\"${RUN_ID:-runbook-$(date -u +%Y%m%d-%H%M%S)}\"\n");
    }
    if ctx.run_values.contains("RUN_STARTED_AT") {
        sh.push_str("RUN_STARTED_AT=\"${RUN_STARTED_AT:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}\"\n");
    }
    for helper in helpers::definitions(&ctx.helpers) {
        sh.push('\n');
        sh.push_str(helper);
        sh.push('\n');
    }
    format!("## Before you start\n\n```sh\n{sh}```\n")
}

/// A default value inside `"${name-…}"`.
fn escape_default(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if matches!(c, '"' | '$' | '`' | '\\' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The variable a person sets to `yes` when a step whose condition they judge applies.
fn judged(id: &str) -> String {
    format!("{id}_applies")
}

/// One step: heading, purpose, gates, the commands, the checks.
fn step_section(n: usize, step: &Step, ctx: &mut Ctx) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n### {n}. `{}` ({})\n", step.id, step.kind);
    if let Some(description) = &step.description {
        let _ = writeln!(out, "{}\n", ctx.prose(description.trim()));
    }
    let mut notes = Vec::new();
    if !step.needs.is_empty() {
        notes.push(format!(
            "After {}.",
            step.needs
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if step.live_only {
        notes.push("Live only: a drill skips it.".into());
    }
    if step.clock_stop {
        notes.push(
            "**Service is restored when this step succeeds: note the time (the RTO).**".into(),
        );
    }
    if let Some(timeout) = step.timeout {
        notes.push(format!("drillbook gives it {timeout} at most."));
    }
    if step.retry.attempts > 1 {
        notes.push(format!(
            "On a transient failure (a network error, a server restarting) drillbook tries again, {} attempts in all, {} apart at first.",
            step.retry.attempts, step.retry.backoff
        ));
    }
    if step.continue_on_failure {
        notes.push("If it fails, note why and go on: the procedure does not depend on it.".into());
    }
    let condition = step.when.as_deref().map(|when| (when, ctx.condition(when)));
    match &condition {
        Some((when, Condition::Never)) => {
            ctx.skipped.insert(step.id.clone());
            let _ = writeln!(
                out,
                "**Not part of the live procedure**: it runs only when `{when}`. Skip it.\n"
            );
            return out;
        }
        Some((when, Condition::Judge)) => notes.push(format!(
            "**Only if** `{when}`: that depends on how the earlier steps went, so decide it \
             yourself; its commands run only after `{}=yes`.",
            judged(&step.id)
        )),
        Some((when, Condition::Test(_))) => notes.push(format!(
            "Only if `{when}`: its commands check that themselves."
        )),
        _ => {}
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "{}\n", notes.join(" "));
    }
    if let Some(gate) = &step.approval {
        out.push_str(&people::gate(
            &ctx.prose(&gate.prompt),
            gate.approvers,
            &gate.allowed,
            gate.signed,
            gate.timeout,
        ));
    }

    let mut section = Section::default();
    match &step.params {
        StepConfig::Assess(assess) => database::assess(step, assess, ctx, &mut section),
        StepConfig::Backup(backup) => database::backup(step, backup, ctx, &mut section),
        StepConfig::Restore(restore) => database::restore(step, restore, ctx, &mut section),
        StepConfig::SmokeTest(smoke) => checks::smoke_test(step, smoke, ctx, &mut section),
        StepConfig::Verify(verify) => stores::verify(step, verify, ctx, &mut section),
        StepConfig::Sync(sync) => stores::sync(step, sync, ctx, &mut section),
        StepConfig::Promote(promote) => service::promote(step, promote, ctx, &mut section),
        StepConfig::Flush(flush) => service::flush(step, flush, ctx, &mut section),
        StepConfig::Notify(notify) => service::notify(step, notify, ctx, &mut section),
        StepConfig::Approval(approval) => people::approval(approval, ctx, &mut section),
        StepConfig::Manual(manual) => people::manual(manual, ctx, &mut section),
        StepConfig::Command(command) => people::command(step, command, ctx, &mut section),
        StepConfig::Wait(wait) => people::wait(wait, &mut section),
        StepConfig::ConfigBackup(backup) => secrets::config_backup(step, backup, ctx, &mut section),
        StepConfig::ConfigRestore(restore) => {
            secrets::config_restore(step, restore, ctx, &mut section)
        }
    }
    let guard = match condition {
        Some((_, Condition::Test(test))) => Some(test),
        Some((_, Condition::Judge)) => Some(format!("[ \"${{{}:-no}}\" = yes ]", judged(&step.id))),
        _ => None,
    };
    for part in section.parts {
        match part {
            Part::Text(text) => {
                let _ = writeln!(out, "{}\n", text.trim_end());
            }
            Part::Sh(commands) => {
                let commands = commands.trim_end();
                match &guard {
                    Some(test) => {
                        let _ = writeln!(out, "```sh\nif {test}; then\n{commands}\nfi\n```\n");
                    }
                    None => {
                        let _ = writeln!(out, "```sh\n{commands}\n```\n");
                    }
                }
            }
        }
    }
    if !section.checks.is_empty() {
        out.push_str("Before going on, check:\n\n");
        for item in &section.checks {
            let _ = writeln!(out, "- [ ] {item}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_playbook_renders_with_its_steps_in_plan_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
        for entry in std::fs::read_dir(dir).expect("playbooks/") {
            let path = entry.expect("entry").path();
            let Ok((_, playbook)) = crate::validate::load(&path) else {
                panic!("{} is invalid", path.display());
            };
            let text = render(&playbook);
            let plan = Plan::new(playbook.clone());
            let mut at = 0;
            for &i in plan.order.iter() {
                let heading = format!("`{}` (", playbook.steps[i].id);
                let found = text[at..].find(&heading).unwrap_or_else(|| {
                    panic!(
                        "{}: step {} out of order",
                        path.display(),
                        playbook.steps[i].id
                    )
                });
                at += found;
            }
            assert!(
                !text.contains("{{"),
                "{}: a template left as written",
                path.display()
            );
        }
    }
}
