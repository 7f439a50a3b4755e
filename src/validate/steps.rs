//! Reading each step: its common keys, its kind's parameters, and the rules between them.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::raw::{Clock, CommonRaw};
use crate::diagnostic::Diagnostic;
use crate::diagnostic::did_you_mean;
use crate::loader::Spanned;
use crate::loader::de::{Collector, fields_of, from_node};
use crate::loader::node::{Node, Value};
use crate::model::{Gate, Retry, Step};
use crate::steps::{Kind, StepConfig, at_key};

/// What validation knows of one step, even when parts of it are wrong.
pub(crate) struct StepInfo<'a> {
    pub node: &'a Node,
    pub id: Option<Spanned<String>>,
    pub kind: Option<Kind>,
    pub cleanup: bool,
    /// Explicit `needs`, or the step listed before (positioned at this step).
    pub needs: Vec<Spanned<String>>,
    pub when: Option<Spanned<String>>,
    pub clock_stop: bool,
    pub model: Option<Step>,
}

impl StepInfo<'_> {
    pub fn id(&self) -> Option<&str> {
        self.id.as_ref().map(|id| id.value.as_str())
    }
}

/// Letters, digits and underscores, not starting with a digit: what `steps.ID` can read.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn common_fields() -> &'static [&'static str] {
    fields_of::<CommonRaw>()
}

/// Every parameter of every kind: what an unknown-kind step may contain without a second
/// error per key.
fn all_parameters() -> &'static [&'static str] {
    static ALL: OnceLock<Vec<&'static str>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<&'static str> = Kind::ALL
            .iter()
            .flat_map(|kind| kind.parameters().iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    })
}

pub(crate) fn read_steps<'a>(
    main: &[&'a Node],
    cleanup: &[&'a Node],
    out: &mut Vec<Diagnostic>,
) -> Vec<StepInfo<'a>> {
    let mut steps: Vec<StepInfo<'a>> = Vec::with_capacity(main.len() + cleanup.len());
    for (list, is_cleanup) in [(main, false), (cleanup, true)] {
        let mut previous: Option<String> = None;
        for node in list {
            let step = read_step(node, is_cleanup, previous.as_deref(), out);
            if let Some(id) = step.id() {
                previous = Some(id.to_owned());
            }
            steps.push(step);
        }
    }
    check_ids(&steps, out);
    check_clock(&steps, out);
    steps
}

fn read_step<'a>(
    node: &'a Node,
    cleanup: bool,
    previous: Option<&str>,
    out: &mut Vec<Diagnostic>,
) -> StepInfo<'a> {
    let kind = read_kind(node, out);
    let collector = Collector::default();
    let allowed = kind.map_or_else(all_parameters, Kind::parameters);
    let common = match from_node::<CommonRaw>(node, &collector, allowed) {
        Ok(common) => Some(common),
        Err(error) => {
            out.push(error.into());
            None
        }
    };
    out.extend(collector.errors.take().into_iter().map(Diagnostic::from));
    let id = common.as_ref().map(|c| c.id.clone()).or_else(|| {
        let id = node.get("id")?;
        Some(Spanned::new(id.as_str()?.to_owned(), id.pos, id.len))
    });

    let config = kind.and_then(|kind| {
        if kind == Kind::Command && matches!(node.get("run").map(|n| &n.value), Some(Value::Str(_)))
        {
            let run = node.get("run").unwrap_or(node);
            let words: Vec<String> = run
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .map(|w| format!("{w:?}"))
                .collect();
            out.push(
                Diagnostic::new(
                    run.pos,
                    run.len,
                    "`run` takes an argument list, not a shell string",
                )
                .help(format!(
                    "write `run: [{}]` (no shell: a template value cannot inject a command)",
                    words.join(", ")
                )),
            );
            return None;
        }
        // Unknown keys were reported by the common read; the parameters' read ignores them.
        let quiet = Collector::default();
        match StepConfig::read(kind, node, &quiet, common_fields()) {
            Ok(config) => {
                config.check(node, out);
                Some(config)
            }
            Err(error) => {
                let mut diagnostic = Diagnostic::from(error);
                if let Some(field) = diagnostic.message.strip_prefix("missing required key ") {
                    let name = id
                        .as_ref()
                        .map_or("this step".to_owned(), |id| format!("step `{}`", id.value));
                    diagnostic.message = format!("{name} is missing {field}");
                    diagnostic.help = Some(format!(
                        "`{kind}` steps need: {}",
                        required_keys(kind).join(", ")
                    ));
                }
                out.push(diagnostic);
                None
            }
        }
    });

    let needs = match common.as_ref().and_then(|c| c.needs.clone()) {
        Some(needs) => needs,
        None => previous
            .map(|previous| vec![Spanned::new(previous.to_owned(), node.pos, 0)])
            .unwrap_or_default(),
    };
    let when = common.as_ref().and_then(|c| c.when.clone());
    let clock_stop = common
        .as_ref()
        .is_some_and(|c| c.clock.as_ref().is_some_and(|c| c.value == Clock::Stop));
    let model = build(common.as_ref(), config, &needs, cleanup, node, out);
    StepInfo {
        node,
        id,
        kind,
        cleanup,
        needs,
        when,
        clock_stop,
        model,
    }
}

fn read_kind(node: &Node, out: &mut Vec<Diagnostic>) -> Option<Kind> {
    let kind_node = node.get("kind")?;
    let name = kind_node.as_str()?;
    let kind = Kind::parse(name);
    if kind.is_none() {
        let names: Vec<&str> = Kind::ALL.iter().map(|kind| kind.name()).collect();
        out.push(
            Diagnostic::new(
                kind_node.pos,
                kind_node.len,
                format!("unknown step kind `{name}`"),
            )
            .label(did_you_mean(name, names.iter().copied()))
            .help(format!("kinds: {}", names.join(", "))),
        );
    }
    kind
}

/// The keys a kind cannot do without, in declaration order.
fn required_keys(kind: Kind) -> Vec<&'static str> {
    static REQUIRED: OnceLock<HashMap<Kind, Vec<&'static str>>> = OnceLock::new();
    REQUIRED
        .get_or_init(|| {
            Kind::ALL
                .iter()
                .copied()
                .map(|kind| {
                    let mut generator = schemars::SchemaGenerator::default();
                    let schema = kind.parameter_schema(&mut generator);
                    let required = schema
                        .get("required")
                        .and_then(|r| r.as_array())
                        .map(|names| {
                            kind.parameters()
                                .iter()
                                .copied()
                                .filter(|field| names.iter().any(|n| n == field))
                                .collect()
                        })
                        .unwrap_or_default();
                    (kind, required)
                })
                .collect()
        })
        .get(&kind)
        .cloned()
        .unwrap_or_default()
}

fn build(
    common: Option<&CommonRaw>,
    config: Option<StepConfig>,
    needs: &[Spanned<String>],
    cleanup: bool,
    node: &Node,
    out: &mut Vec<Diagnostic>,
) -> Option<Step> {
    let common = common?;
    let retry = match &common.retry {
        Some(raw) => {
            if raw.attempts.value == 0 {
                out.push(
                    Diagnostic::new(
                        raw.attempts.pos,
                        raw.attempts.len,
                        "`attempts` must be at least 1",
                    )
                    .help("attempts counts the first try: `attempts: 3` retries twice"),
                );
            }
            let default = Retry::default();
            Retry {
                attempts: raw.attempts.value.max(1),
                backoff: raw.backoff.unwrap_or(default.backoff),
                max_backoff: raw.max_backoff,
            }
        }
        // A chat message lost to a blip would leave people uninformed mid-incident.
        None if config
            .as_ref()
            .is_some_and(|c| c.kind() == crate::steps::Kind::Notify) =>
        {
            Retry {
                attempts: 3,
                backoff: crate::duration::Duration(std::time::Duration::from_secs(2)),
                max_backoff: None,
            }
        }
        None => Retry::default(),
    };
    let approval = common.approval.as_ref().map(|gate| {
        if let Some(approvers) = gate.approvers.as_ref().filter(|a| a.value == 0) {
            out.push(Diagnostic::new(
                approvers.pos,
                approvers.len,
                "`approvers` must be at least 1",
            ));
        }
        let approvers = gate.approvers.as_ref().map_or(1, |a| a.value.max(1));
        if let Some(problem) = crate::steps::approval::allowed_problem(&gate.allowed, approvers) {
            out.push(at_key(node, "approval", problem));
        }
        Gate {
            prompt: gate.prompt.clone(),
            approvers,
            allowed: gate.allowed.clone(),
            signed: gate.signed,
            timeout: gate.timeout,
        }
    });
    if let Some(timeout) = common.timeout.filter(|t| t.0.is_zero()) {
        out.push(at_key(
            node,
            "timeout",
            format!("`timeout: {timeout}` would end the step before it starts"),
        ));
    }
    if cleanup && common.clock.is_some() {
        out.push(at_key(
            node,
            "clock",
            "a cleanup step cannot stop the RTO clock; recovery is over before cleanup starts",
        ));
    }
    let config = config?;
    Some(Step {
        id: common.id.value.clone(),
        kind: config.kind(),
        description: common.description.clone(),
        needs: needs.iter().map(|need| need.value.clone()).collect(),
        when: common.when.as_ref().map(|w| w.value.clone()),
        timeout: common.timeout,
        retry,
        approval,
        live_only: common
            .live_only
            .unwrap_or_else(|| config.kind().live_only_by_default()),
        clock_stop: common
            .clock
            .as_ref()
            .is_some_and(|c| c.value == Clock::Stop),
        continue_on_failure: common.continue_on_failure.unwrap_or(false),
        cleanup,
        params: config,
        line: node.pos.line,
    })
}

fn check_ids(steps: &[StepInfo], out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for step in steps {
        let Some(id) = &step.id else { continue };
        if !is_identifier(&id.value) {
            let fixed: String = id
                .value
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            out.push(
                Diagnostic::new(id.pos, id.len, format!("step id `{}` is not an identifier", id.value))
                    .help(format!("use letters, digits and underscores, e.g. `{fixed}` (templates read it as steps.{fixed})")),
            );
        }
        match seen.get(id.value.as_str()) {
            Some(first_line) => out.push(
                Diagnostic::new(id.pos, id.len, format!("duplicate step id `{}`", id.value))
                    .label(Some(format!("first defined on line {first_line}"))),
            ),
            None => {
                seen.insert(&id.value, id.pos.line);
            }
        }
    }
}

fn check_clock(steps: &[StepInfo], out: &mut Vec<Diagnostic>) {
    let mut first: Option<(&str, usize)> = None;
    for step in steps {
        if !step.clock_stop || step.cleanup {
            continue;
        }
        let id = step.id().unwrap_or("?");
        match first {
            None => first = Some((id, step.node.pos.line)),
            Some((first_id, line)) => out.push(
                at_key(step.node, "clock", format!("only one step can stop the RTO clock; `{first_id}` (line {line}) already does"))
                    .help("mark the step after which service is restored, e.g. the smoke test after promote"),
            ),
        }
    }
}
