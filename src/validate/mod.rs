//! Validation: the positioned YAML tree becomes a [`Playbook`], or every error at once,
//! sorted by position. No I/O beyond the loader's reading of the file.

mod arguments;
mod graph;
pub(crate) mod raw;
mod references;
mod steps;
mod targets;

use std::collections::BTreeMap;
use std::path::Path;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::loader::de::{Collector, DeError, fields_of, from_node};
use crate::loader::node::{Node, Value};
use crate::loader::{self, Source, Spanned};
use crate::model::{Objectives, Playbook};

pub use steps::is_identifier;

/// A playbook that did not validate: its text and everything wrong with it.
#[derive(Debug)]
pub struct Invalid {
    pub source: Source,
    pub diagnostics: Vec<Diagnostic>,
}

impl Invalid {
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for diagnostic in &self.diagnostics {
            out.push_str(&diagnostic.render(&self.source.name, &self.source.text, color));
            out.push('\n');
        }
        let count = self.diagnostics.len();
        out.push_str(&format!(
            "{}: {count} error{} in {}\n",
            if color {
                "\x1b[1;31merror\x1b[0m"
            } else {
                "error"
            },
            if count == 1 { "" } else { "s" },
            self.source.name
        ));
        out
    }
}

/// Reads and validates a playbook file.
pub fn load(path: &Path) -> Result<(Source, Playbook), Invalid> {
    let source = loader::read(path).map_err(|diagnostic| Invalid {
        source: Source {
            name: path.display().to_string(),
            text: String::new(),
        },
        diagnostics: vec![diagnostic],
    })?;
    match validate(&source.text) {
        Ok(playbook) => Ok((source, playbook)),
        Err(diagnostics) => Err(Invalid {
            source,
            diagnostics,
        }),
    }
}

impl From<DeError> for Diagnostic {
    fn from(error: DeError) -> Self {
        Diagnostic::new(error.pos, error.len, error.message).maybe_help(error.help)
    }
}

/// Validates playbook text.
pub fn validate(text: &str) -> Result<Playbook, Vec<Diagnostic>> {
    let root = loader::parse(text).map_err(|diagnostic| vec![diagnostic])?;
    let mut out = Vec::new();
    let playbook = validate_tree(text, &root, &mut out);
    out.sort_by(|a, b| a.pos.cmp(&b.pos).then_with(|| a.message.cmp(&b.message)));
    out.dedup();
    match playbook {
        Some(playbook) if out.is_empty() => Ok(playbook),
        _ => Err(out),
    }
}

fn validate_tree(text: &str, root: &Node, out: &mut Vec<Diagnostic>) -> Option<Playbook> {
    match &root.value {
        Value::Map(_) => {}
        Value::Null => {
            out.push(
                Diagnostic::whole_file("the playbook is empty")
                    .help("a playbook is a mapping with `version: 1`, `name` and `steps`"),
            );
            return None;
        }
        other => {
            out.push(
                Diagnostic::new(
                    root.pos,
                    root.len,
                    format!(
                        "expected a mapping at the top of the playbook, found {}",
                        other.describe()
                    ),
                )
                .help("a playbook is a mapping with `version: 1`, `name` and `steps`"),
            );
            return None;
        }
    }
    let top = read_top(root, out);
    let mut vars = BTreeMap::new();
    let mut secrets = Vec::new();
    let name = top
        .name
        .as_ref()
        .map(|n| n.value.clone())
        .unwrap_or_default();
    if let Some(version) = top.version.as_ref().filter(|v| v.value != 1) {
        out.push(
            Diagnostic::new(
                version.pos,
                version.len,
                format!("unsupported playbook version `{}`", version.value),
            )
            .help("this drillbook reads `version: 1`"),
        );
    }
    if let Some(raw_name) = top.name.as_ref().filter(|n| n.value.trim().is_empty()) {
        out.push(Diagnostic::new(
            raw_name.pos,
            raw_name.len.max(1),
            "the playbook's `name` is empty",
        ));
    }
    let objectives = top
        .objectives
        .as_ref()
        .map(|o| Objectives {
            rto: o.rto,
            rpo: o.rpo,
        })
        .unwrap_or_default();
    let every = top.schedule.as_ref().map(|schedule| {
        if schedule.every.value.as_std().is_zero() {
            out.push(
                Diagnostic::new(
                    schedule.every.pos,
                    schedule.every.len.max(1),
                    "`every` must be longer than 0s",
                )
                .help("how often the playbook must pass, e.g. `every: 92d`"),
            );
        }
        schedule.every.value
    });
    for (var, value) in top.vars.iter().flatten() {
        if !is_identifier(var) {
            let key = root.get("vars").and_then(|v| v.key(var)).unwrap_or(root);
            out.push(
                Diagnostic::new(
                    key.pos,
                    key.len,
                    format!("variable name `{var}` is not an identifier"),
                )
                .help("use letters, digits and underscores (templates read it as vars.NAME)"),
            );
        }
        vars.insert(var.clone(), value.value.clone());
    }
    for secret in top.secrets.iter().flatten() {
        if secrets.contains(&secret.value) {
            out.push(Diagnostic::new(
                secret.pos,
                secret.len,
                format!("secret `{}` is declared twice", secret.value),
            ));
        } else if !is_identifier(&secret.value) {
            out.push(
                Diagnostic::new(
                    secret.pos,
                    secret.len,
                    format!("secret name `{}` is not an identifier", secret.value),
                )
                .help("use letters, digits and underscores, e.g. DATABASE_URL"),
            );
        }
        secrets.push(secret.value.clone());
    }
    let secrets_manager = top.secrets_manager.as_ref().and_then(|raw| {
        let node = root.get("secrets_manager").unwrap_or(root);
        secrets_manager(raw, node, &secrets, out)
    });

    let mut signers = BTreeMap::new();
    for (name, key) in top.signers.iter().flatten() {
        if let Err(problem) = crate::signing::check_public_key(&key.value) {
            out.push(Diagnostic::new(
                key.pos,
                key.len.max(1),
                format!("the key of signer `{name}` is {problem}"),
            ));
        }
        signers.insert(name.clone(), key.value.clone());
    }

    let targets = targets::read(root, top.targets.as_ref(), out);

    let main = step_nodes(root, "steps", true, out);
    let cleanup = step_nodes(root, "cleanup", false, out);
    let steps = steps::read_steps(&main, &cleanup, out);
    let graph = graph::check(&steps, out);
    let context = references::Context {
        text,
        vars: vars.keys().map(String::as_str).collect(),
        secrets: secrets.iter().map(String::as_str).collect(),
        // Steps read only the targets both modes declare; a live-only one is protected, not
        // read.
        targets: targets.drill.keys().map(String::as_str).collect(),
        live_only_targets: targets
            .live
            .keys()
            .filter(|name| !targets.drill.contains_key(*name))
            .map(String::as_str)
            .collect(),
        steps: &steps,
        ancestors: graph.as_ref(),
    };
    references::check_steps(&context, out);
    references::check_vars(&context, root.get("vars"), out);
    for mode in ["drill", "live", "identity"] {
        let values = root.get("targets").and_then(|t| t.get(mode));
        references::check_vars(&context, values, out);
    }
    arguments::check(&context, root, out);

    let steps = steps
        .into_iter()
        .map(|step| step.model)
        .collect::<Option<Vec<_>>>()?;
    for step in &steps {
        let signed = step.approval.as_ref().is_some_and(|gate| gate.signed)
            || matches!(&step.params, crate::steps::StepConfig::Approval(a) if a.signed);
        if signed && signers.is_empty() {
            out.push(
                Diagnostic::new(root.pos, 1, format!("step `{}` takes signed decisions only, but the playbook has no `signers`", step.id))
                    .help("add `signers: { NAME: \"ssh-ed25519 AAAA…\" }` with the keys of the people who decide"),
            );
        }
    }
    Some(Playbook {
        version: top.version?.value,
        name,
        description: top.description,
        objectives,
        every,
        vars,
        secrets,
        secrets_manager,
        signers,
        targets,
        fail_fast: top.fail_fast.unwrap_or(true),
        steps,
    })
}

/// `secrets_manager:`: a prefix that makes secret ids, and ids of declared secrets.
fn secrets_manager(
    raw: &raw::SecretsManagerRaw,
    node: &Node,
    declared: &[String],
    out: &mut Vec<Diagnostic>,
) -> Option<crate::secrets::ManagerConfig> {
    use crate::secrets::SecretRef;
    let at = |spanned: &Spanned<String>| (spanned.pos, spanned.len.max(1));
    let before = out.len();
    if raw.prefix.is_none() && raw.ids.as_ref().is_none_or(BTreeMap::is_empty) {
        out.push(
            Diagnostic::new(
                node.pos,
                node.len.max(1),
                "`secrets_manager` names no secret",
            )
            .help("give `prefix:` (secrets read as <prefix><NAME>) or `ids:` (NAME: secret-id)"),
        );
    }
    if let Some(prefix) = &raw.prefix
        && let Err(problem) = SecretRef::parse(&format!("{}NAME", prefix.value)).and_then(|r| {
            r.field
                .map_or(Ok(()), |_| Err("`#` cannot be in a prefix".into()))
        })
    {
        let (pos, len) = at(prefix);
        out.push(Diagnostic::new(
            pos,
            len,
            format!("the `prefix` makes no secret id: {problem}"),
        ));
    }
    let mut ids = BTreeMap::new();
    for (name, id) in raw.ids.iter().flatten() {
        let (pos, len) = at(id);
        if !declared.contains(name) {
            let key = node
                .get("ids")
                .and_then(|ids| ids.key(name))
                .unwrap_or(node);
            out.push(
                Diagnostic::new(
                    key.pos,
                    key.len.max(1),
                    format!("`{name}` is not a declared secret"),
                )
                .help("list it under `secrets:` too"),
            );
        }
        match SecretRef::parse(&id.value) {
            Ok(reference) => {
                ids.insert(name.clone(), reference);
            }
            Err(problem) => out.push(Diagnostic::new(
                pos,
                len,
                format!("the secret id of `{name}`: {problem}"),
            )),
        }
    }
    (out.len() == before).then(|| crate::secrets::ManagerConfig {
        prefix: raw
            .prefix
            .as_ref()
            .map(|prefix| prefix.value.trim().to_string()),
        ids,
    })
}

/// The top-level keys, each read on its own so that an error in one does not hide the others.
#[derive(Default)]
struct Top {
    version: Option<Spanned<u32>>,
    name: Option<Spanned<String>>,
    description: Option<String>,
    objectives: Option<raw::ObjectivesRaw>,
    schedule: Option<raw::ScheduleRaw>,
    vars: Option<BTreeMap<String, Spanned<String>>>,
    secrets: Option<Vec<Spanned<String>>>,
    secrets_manager: Option<raw::SecretsManagerRaw>,
    signers: Option<BTreeMap<String, Spanned<String>>>,
    targets: Option<raw::TargetsRaw>,
    fail_fast: Option<bool>,
}

fn read_top(root: &Node, out: &mut Vec<Diagnostic>) -> Top {
    let fields = fields_of::<raw::PlaybookRaw>();
    for (key, _) in root.as_map().unwrap_or_default() {
        let name = key.as_str().unwrap_or_default();
        if !fields.contains(&name) {
            out.push(
                Diagnostic::new(key.pos, key.len, format!("unknown key `{name}`")).maybe_help(
                    did_you_mean(name, fields.iter().copied())
                        .or_else(|| Some(format!("expected one of: {}", fields.join(", ")))),
                ),
            );
        }
    }
    for required in ["version", "name", "steps"] {
        if root.get(required).is_none() {
            out.push(
                Diagnostic::new(root.pos, 1, format!("missing required key `{required}`"))
                    .help("a playbook is a mapping with `version: 1`, `name` and `steps`"),
            );
        }
    }
    fn field<T: for<'a> serde::Deserialize<'a>>(
        root: &Node,
        key: &str,
        out: &mut Vec<Diagnostic>,
    ) -> Option<T> {
        let node = root.get(key)?;
        let collector = Collector::default();
        let value = from_node::<T>(node, &collector, &[])
            .map_err(|error| out.push(error.into()))
            .ok();
        out.extend(collector.errors.take().into_iter().map(Diagnostic::from));
        value
    }
    Top {
        version: field(root, "version", out),
        name: field(root, "name", out),
        description: field(root, "description", out),
        objectives: root.get("objectives").and_then(|node| {
            // rto and rpo on their own: a bad one must not hide the other.
            if !matches!(node.value, Value::Map(_)) {
                return field(root, "objectives", out);
            }
            let known = fields_of::<raw::ObjectivesRaw>();
            for (key, _) in node.as_map().unwrap_or_default() {
                let name = key.as_str().unwrap_or_default();
                if !known.contains(&name) {
                    out.push(
                        Diagnostic::new(key.pos, key.len, format!("unknown objective `{name}`"))
                            .label(did_you_mean(name, known.iter().copied()))
                            .help("objectives are `rto` and `rpo`"),
                    );
                }
            }
            Some(raw::ObjectivesRaw {
                rto: field(node, "rto", out),
                rpo: field(node, "rpo", out),
            })
        }),
        schedule: field(root, "schedule", out),
        vars: field(root, "vars", out),
        secrets: field(root, "secrets", out),
        secrets_manager: field(root, "secrets_manager", out),
        signers: field(root, "signers", out),
        targets: field(root, "targets", out),
        fail_fast: field(root, "fail_fast", out),
    }
}

/// The step mappings under `key`, with the structural errors of the list itself.
fn step_nodes<'a>(
    root: &'a Node,
    key: &str,
    required: bool,
    out: &mut Vec<Diagnostic>,
) -> Vec<&'a Node> {
    let Some(list) = root.get(key) else {
        return Vec::new();
    };
    let key_node = root.key(key).unwrap_or(root);
    match &list.value {
        Value::Seq(items) if items.is_empty() && required => {
            out.push(
                Diagnostic::new(key_node.pos, key_node.len, "`steps` is empty; a playbook needs at least one step")
                    .help("add a step, e.g. `- { id: assess, kind: assess, store: \"{{ vars.store }}\" }`"),
            );
            Vec::new()
        }
        Value::Null if required => {
            out.push(Diagnostic::new(
                key_node.pos,
                key_node.len,
                "`steps` is empty; a playbook needs at least one step",
            ));
            Vec::new()
        }
        Value::Null => Vec::new(),
        Value::Seq(items) => items
            .iter()
            .filter(|item| {
                let is_map = matches!(item.value, Value::Map(_));
                if !is_map {
                    out.push(Diagnostic::new(
                        item.pos,
                        item.len.max(1),
                        format!(
                            "expected a step (a mapping with `id` and `kind`), found {}",
                            item.value.describe()
                        ),
                    ));
                }
                is_map
            })
            .collect(),
        other => {
            out.push(Diagnostic::new(
                list.pos,
                list.len.max(1),
                format!(
                    "`{key}` must be a list of steps, found {}",
                    other.describe()
                ),
            ));
            Vec::new()
        }
    }
}
