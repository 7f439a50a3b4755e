//! Templates and `when:` conditions: every name they read must exist where they read it.

use std::collections::BTreeSet;

use super::graph::Upstream;
use super::steps::StepInfo;
use crate::diagnostic::Diagnostic;
use crate::diagnostic::Pos;
use crate::diagnostic::did_you_mean;
use crate::loader::node::Node;
use crate::template::{self, RUN_FIELDS};

/// Keys of a step that are not templates (ids, durations, flags) or not plain templates.
const NOT_TEMPLATES: &[&str] = &[
    "id",
    "kind",
    "needs",
    "when",
    "timeout",
    "retry",
    "clock",
    "live_only",
    "continue_on_failure",
    "description",
];

/// minijinja's own globals, usable in any template.
const BUILTINS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "lipsum",
    "cycler",
    "joiner",
];

pub(crate) struct Context<'a> {
    pub text: &'a str,
    pub vars: BTreeSet<&'a str>,
    pub secrets: BTreeSet<&'a str>,
    /// The names declared under `targets:` in both `drill:` and `live:`: what steps may read.
    pub targets: BTreeSet<&'a str>,
    /// Live targets without a drill counterpart: protected from a drill, never read.
    pub live_only_targets: BTreeSet<&'a str>,
    pub steps: &'a [StepInfo<'a>],
    /// `None` when the graph has a cycle: upstream questions have no answer then.
    pub ancestors: Option<&'a Upstream>,
}

/// Where a template string sits: the step reading it, or a variable or target (resolved
/// before any step runs).
#[derive(Clone, Copy)]
enum Reader {
    Step(usize),
    Vars,
}

pub(crate) fn check_steps(context: &Context, out: &mut Vec<Diagnostic>) {
    let env = template::environment();
    for (i, step) in context.steps.iter().enumerate() {
        let mut strings = Vec::new();
        for (key, value) in step.node.as_map().unwrap_or_default() {
            if !key.as_str().is_some_and(|k| NOT_TEMPLATES.contains(&k)) {
                value.strings(&mut strings);
            }
        }
        for node in strings {
            let Some(text) = node.as_str().filter(|t| template::is_template(t)) else {
                continue;
            };
            match template::references(&env, text) {
                Ok(paths) => check_paths(context, Reader::Step(i), node, &paths, out),
                Err(error) => out.push(syntax_error(node, &error)),
            }
        }
        if let Some(when) = &step.when {
            let node = step.node.get("when").unwrap_or(step.node);
            match template::expression_references(&env, &when.value) {
                Ok(paths) => check_paths(context, Reader::Step(i), node, &paths, out),
                Err(error) => out.push(syntax_error(node, &error)),
            }
        }
    }
}

/// The templates of `vars:` values, or of one `targets:` mode's values: resolved before any
/// step runs, from vars and secrets.
pub(crate) fn check_vars(context: &Context, vars: Option<&Node>, out: &mut Vec<Diagnostic>) {
    let env = template::environment();
    for (_, value) in vars.and_then(Node::as_map).unwrap_or_default() {
        let Some(text) = value.as_str().filter(|t| template::is_template(t)) else {
            continue;
        };
        match template::references(&env, text) {
            Ok(paths) => check_paths(context, Reader::Vars, value, &paths, out),
            Err(error) => out.push(syntax_error(value, &error)),
        }
    }
}

fn syntax_error(node: &Node, error: &minijinja::Error) -> Diagnostic {
    let detail = error
        .detail()
        .map_or_else(|| error.kind().to_string(), str::to_owned);
    Diagnostic::new(node.pos, node.len, format!("invalid template: {detail}"))
}

fn check_paths(
    context: &Context,
    reader: Reader,
    node: &Node,
    paths: &[String],
    out: &mut Vec<Diagnostic>,
) {
    for path in paths {
        if let Some((segment, message, label, help)) = check_path(context, reader, path) {
            let (pos, len) = locate(context.text, node, path, segment);
            let mut diagnostic = Diagnostic::new(pos, len, message).label(label);
            diagnostic.help = help;
            out.push(diagnostic);
        }
    }
}

/// What is wrong with one dotted path: the index of the offending segment, the message, a
/// caret label and a help line.
fn check_path(
    context: &Context,
    reader: Reader,
    path: &str,
) -> Option<(usize, String, Option<String>, Option<String>)> {
    let segments: Vec<&str> = path.split('.').collect();
    let root = segments[0];
    let second = segments.get(1).copied();
    match root {
        "vars" => {
            let name = second?;
            (!context.vars.contains(name)).then(|| {
                (1, format!("undeclared variable `vars.{name}`"), did_you_mean(name, context.vars.iter().copied()), Some("declare it under `vars:`".into()))
            })
        }
        "secrets" => {
            let name = second?;
            (!context.secrets.contains(name)).then(|| {
                (1, format!("undeclared secret `secrets.{name}`"), did_you_mean(name, context.secrets.iter().copied()), Some("add it to `secrets:`".into()))
            })
        }
        "target" => {
            let name = second?;
            if let Reader::Vars = reader {
                return Some((0, "variables and targets cannot read targets".into(), None, Some("they are resolved before targets are".into())));
            }
            if context.live_only_targets.contains(name) {
                return Some((1, format!("target `{name}` is declared only under `live:`"), None, Some("a live-only target is protected from drills, not read by steps: declare its drill value under `drill:` to read it".into())));
            }
            (!context.targets.contains(name)).then(|| {
                (1, format!("undeclared target `target.{name}`"), did_you_mean(name, context.targets.iter().copied()), Some("declare it under `targets:`, in both `drill:` and `live:`".into()))
            })
        }
        "run" => {
            let name = second?;
            (!RUN_FIELDS.contains(&name)).then(|| {
                (1, format!("`run.{name}` does not exist"), did_you_mean(name, RUN_FIELDS.iter().copied()), Some(format!("run has: {}", RUN_FIELDS.join(", "))))
            })
        }
        "steps" => check_step_path(context, reader, &segments),
        "now" => None,
        name if BUILTINS.contains(&name) => None,
        name => Some((
            0,
            format!("unknown variable `{name}`"),
            if RUN_FIELDS.contains(&name) {
                Some(format!("did you mean `run.{name}`?"))
            } else {
                did_you_mean(name, template::ROOTS.iter().copied())
            },
            Some("templates read vars.NAME, secrets.NAME, target.NAME, steps.ID.outputs.NAME, run.FIELD and now()".into()),
        )),
    }
}

fn check_step_path(
    context: &Context,
    reader: Reader,
    segments: &[&str],
) -> Option<(usize, String, Option<String>, Option<String>)> {
    let id = *segments.get(1)?;
    let Reader::Step(reader) = reader else {
        return Some((
            0,
            "variables cannot read step outputs".into(),
            None,
            Some("vars are resolved before any step runs".into()),
        ));
    };
    let reader_step = &context.steps[reader];
    let reader_id = reader_step.id().unwrap_or("?");
    let Some(target) = context.steps.iter().position(|s| s.id() == Some(id)) else {
        let ids = context.steps.iter().filter_map(StepInfo::id);
        return Some((
            1,
            format!("unknown step `{id}` in template"),
            did_you_mean(id, ids),
            None,
        ));
    };
    if target == reader {
        return Some((
            1,
            format!("step `{id}` cannot read its own outputs"),
            None,
            None,
        ));
    }
    let target_step = &context.steps[target];
    // Cleanup steps run after every main step, so they may read any of them.
    let upstream = (reader_step.cleanup && !target_step.cleanup)
        || context
            .ancestors
            .is_none_or(|a| a.is_upstream(target, reader));
    if !upstream {
        return Some((
            1,
            format!("step `{id}` is not upstream of `{reader_id}`"),
            None,
            Some(format!(
                "add `{id}` to the `needs` of `{reader_id}` so its outputs exist when `{reader_id}` runs"
            )),
        ));
    }
    match segments.get(2) {
        // Its status is known whenever it ran or was skipped, e.g. for a cleanup step's `when`.
        None | Some(&"status") => None,
        Some(&"outputs") => {
            let output = *segments.get(3)?;
            let kind = target_step.kind?;
            (!kind.outputs().contains(&output)).then(|| {
                (
                    3,
                    format!("step `{id}` ({kind}) has no output `{output}`"),
                    did_you_mean(output, kind.outputs().iter().copied()),
                    Some(format!(
                        "`{kind}` steps output: {}",
                        kind.outputs().join(", ")
                    )),
                )
            })
        }
        Some(other) => Some((
            2,
            format!("unknown field `steps.{id}.{other}`"),
            did_you_mean(other, ["outputs", "status"]),
            Some(format!(
                "write steps.{id}.outputs.NAME or steps.{id}.status"
            )),
        )),
    }
}

/// The position of `path`'s segment number `segment` in the source, searched for from the
/// node's start; the whole node when it cannot be found (e.g. `steps["x"]` syntax).
fn locate(text: &str, node: &Node, path: &str, segment: usize) -> (Pos, usize) {
    let segments: Vec<&str> = path.split('.').collect();
    let needle = segments[..=segment.min(segments.len() - 1)].join(".");
    match find(text, node, &needle) {
        Some(start) => {
            let word = segments[segment.min(segments.len() - 1)];
            let offset = start + needle.len() - word.len();
            (pos_at(text, offset), word.len())
        }
        None => (node.pos, node.len),
    }
}

/// The position of `path` (`target.primary`) in the source, underlined whole; the whole node
/// when it cannot be found.
pub(super) fn locate_whole(text: &str, node: &Node, path: &str) -> (Pos, usize) {
    match find(text, node, path) {
        Some(start) => (pos_at(text, start), path.len()),
        None => (node.pos, node.len),
    }
}

/// The offset of `needle` in the node's text (or after its start, for a node of no length).
fn find(text: &str, node: &Node, needle: &str) -> Option<usize> {
    let window_end = (node.pos.offset + node.len.max(needle.len())).min(text.len());
    text.get(node.pos.offset..window_end)
        .and_then(|window| window.find(needle))
        .or_else(|| {
            text.get(node.pos.offset..)
                .and_then(|rest| rest.find(needle))
                .filter(|_| node.len == 0)
        })
        .map(|relative| node.pos.offset + relative)
}

fn pos_at(text: &str, offset: usize) -> Pos {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line,
        column: before[line_start..].chars().count() + 1,
        offset,
    }
}
