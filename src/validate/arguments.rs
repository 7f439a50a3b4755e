//! No secret on any program's arguments: every user of the host can read them (`ps`,
//! `/proc/PID/cmdline`). A template in a parameter that becomes arguments (each kind declares
//! its own: `command`'s `run`, a smoke test's `command` checks, `backup`'s `pg_dump_args`) may
//! not read a secret: directly, or through a variable or a target whose value reads one, in
//! either mode. Step outputs are not secrets by declaration, so they may be read there.

use std::collections::{BTreeMap, BTreeSet};

use super::references::{Context, locate_whole};
use crate::diagnostic::Diagnostic;
use crate::loader::node::{Node, Value};
use crate::steps::Arguments;
use crate::template;

pub(crate) fn check(context: &Context, root: &Node, out: &mut Vec<Diagnostic>) {
    let carriers = Carriers::of(root, &context.secrets);
    for step in context.steps {
        for arguments in step.kind.map_or(&[][..], |kind| kind.arguments()) {
            for list in parameter(step.node, arguments.path) {
                check_list(context, &carriers, arguments, list, out);
            }
        }
    }
}

/// The nodes at `path` under a step's mapping: `key`, or `list.key` for `key` in each item.
fn parameter<'a>(node: &'a Node, path: &str) -> Vec<&'a Node> {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let Some(found) = node.get(first) else {
        return Vec::new();
    };
    match (rest, &found.value) {
        (None, _) => vec![found],
        (Some(rest), Value::Seq(items)) => items
            .iter()
            .flat_map(|item| parameter(item, rest))
            .collect(),
        (Some(rest), _) => parameter(found, rest),
    }
}

fn check_list(
    context: &Context,
    carriers: &Carriers,
    arguments: &Arguments,
    list: &Node,
    out: &mut Vec<Diagnostic>,
) {
    let env = template::environment();
    let program = match arguments.program {
        Some(program) => program,
        None => match &list.value {
            Value::Seq(items) => items
                .first()
                .and_then(Node::as_str)
                .unwrap_or("the program"),
            _ => "the program",
        },
    };
    let mut strings = Vec::new();
    list.strings(&mut strings);
    for node in strings {
        let Some(text) = node.as_str().filter(|t| template::is_template(t)) else {
            continue;
        };
        // A template that does not compile is reported by the reference checks.
        let Ok(paths) = template::references(&env, text) else {
            continue;
        };
        for path in paths {
            let Some((through, secrets)) = carriers.secrets_read(&path) else {
                continue;
            };
            let (pos, len) = locate_whole(context.text, node, &through);
            let route = if through.starts_with("secrets") {
                String::new()
            } else {
                format!(" (through `{through}`)")
            };
            out.push(
                Diagnostic::new(
                    pos,
                    len,
                    format!(
                        "{}{route} would be on the command line of `{program}`",
                        named(&secrets)
                    ),
                )
                .help(format!(
                    "every user of the host can read a program's arguments (`ps`); {}",
                    arguments.instead
                )),
            );
        }
    }
}

/// "secret `A`", "secrets `A` and `B`".
fn named(secrets: &BTreeSet<String>) -> String {
    let names: Vec<String> = secrets.iter().map(|name| format!("`{name}`")).collect();
    match names.as_slice() {
        [one] => format!("secret {one}"),
        [rest @ .., last] => format!("secrets {} and {last}", rest.join(", ")),
        [] => "a secret".into(),
    }
}

/// The variables and targets whose values read a secret, each with the secrets it carries.
#[derive(Default)]
struct Carriers {
    /// The declared secrets: what a template reading `secrets` whole reads.
    secrets: BTreeSet<String>,
    vars: BTreeMap<String, BTreeSet<String>>,
    targets: BTreeMap<String, BTreeSet<String>>,
}

impl Carriers {
    fn of(root: &Node, secrets: &BTreeSet<&str>) -> Carriers {
        let env = template::environment();
        let reads = |value: &Node| -> Vec<String> {
            value
                .as_str()
                .filter(|text| template::is_template(text))
                .and_then(|text| template::references(&env, text).ok())
                .unwrap_or_default()
        };
        let entries = |node: Option<&Node>| -> Vec<(String, Vec<String>)> {
            node.and_then(Node::as_map)
                .unwrap_or_default()
                .iter()
                .filter_map(|(key, value)| Some((key.as_str()?.to_owned(), reads(value))))
                .collect()
        };
        let mut carriers = Carriers {
            secrets: secrets.iter().map(|name| name.to_string()).collect(),
            ..Carriers::default()
        };
        // A variable may read another: carried secrets spread until nothing changes.
        let vars = entries(root.get("vars"));
        loop {
            let mut changed = false;
            for (name, paths) in &vars {
                let found = carriers.carried(paths);
                let known = carriers.vars.entry(name.clone()).or_default();
                let before = known.len();
                known.extend(found);
                changed |= known.len() != before;
            }
            if !changed {
                break;
            }
        }
        carriers.vars.retain(|_, secrets| !secrets.is_empty());
        let targets = root.get("targets");
        for mode in ["drill", "live"] {
            for (name, paths) in entries(targets.and_then(|t| t.get(mode))) {
                let found = carriers.carried(&paths);
                if !found.is_empty() {
                    carriers.targets.entry(name).or_default().extend(found);
                }
            }
        }
        carriers
    }

    /// The secrets a template's paths read, directly or through what carries one.
    fn carried(&self, paths: &[String]) -> BTreeSet<String> {
        paths
            .iter()
            .filter_map(|path| self.secrets_read(path))
            .flat_map(|(_, secrets)| secrets)
            .collect()
    }

    /// What one dotted path reads of the secrets: the path up to the name (`target.primary`,
    /// `secrets.TOKEN`) and the secrets. A bare root (`secrets`, `vars`, `target`: the whole
    /// object, or an index computed at run time) reads everything under it.
    fn secrets_read(&self, path: &str) -> Option<(String, BTreeSet<String>)> {
        let mut segments = path.split('.');
        let root = segments.next()?;
        let name = segments.next();
        let through = |carriers: &BTreeMap<String, BTreeSet<String>>| {
            let secrets: BTreeSet<String> = match name {
                Some(name) => carriers.get(name)?.clone(),
                None => carriers.values().flatten().cloned().collect(),
            };
            let shown = name.map_or(root.to_owned(), |name| format!("{root}.{name}"));
            (!secrets.is_empty()).then_some((shown, secrets))
        };
        match root {
            "secrets" => Some(match name {
                Some(name) => (format!("secrets.{name}"), BTreeSet::from([name.to_owned()])),
                None => ("secrets".to_owned(), self.secrets.clone()),
            }),
            "vars" => through(&self.vars),
            "target" => through(&self.targets),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The messages of validating a playbook of `steps`, with a variable, a target and a
    /// secret or two around them.
    fn messages(steps: &str) -> Vec<String> {
        let text = format!(
            r#"version: 1
name: t
vars:
  host: db.internal
  url: "postgres://app:{{{{ secrets.PASSWORD }}}}@{{{{ vars.host }}}}/app"
  via: "{{{{ vars.url }}}}"
secrets: [PASSWORD, LIVE_URL]
targets:
  drill: {{ db: "postgres://app@{{{{ vars.host }}}}/app", bucket: s3://drill }}
  live: {{ db: "{{{{ secrets.LIVE_URL }}}}", bucket: s3://live }}
steps:
{steps}"#
        );
        match crate::validate::validate(&text) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics.into_iter().map(|d| d.message).collect(),
        }
    }

    #[test]
    fn step_outputs_env_database_and_plain_values_may_be_arguments() {
        let allowed = messages(
            r#"  - id: first
    kind: command
    run: [echo, "{{ vars.host }}", "{{ target.bucket }}", "{{ run.id }}"]
  - id: second
    kind: command
    database: "{{ target.db }}"
    env: { PGPASSWORD: "{{ secrets.PASSWORD }}", URL: "{{ vars.via }}" }
    workdir: /tmp
    run: [psql, "--command=SELECT '{{ steps.first.outputs.stdout }}'"]
    when: vars.via != ""
  - id: smoke
    kind: smoke-test
    checks:
      - command: [check, "{{ steps.second.outputs.exit_code }}"]
        env: { URL: "{{ target.db }}" }
"#,
        );
        assert_eq!(allowed, Vec::<String>::new());
    }

    #[test]
    fn a_secret_is_followed_through_variables_and_either_mode_of_a_target() {
        let refused = messages(
            r#"  - id: direct
    kind: command
    run: [echo, "{{ secrets.PASSWORD | upper }}"]
  - id: chained
    kind: command
    run: [echo, "{{ vars.via }}"]
  - id: live_only_secret
    kind: command
    run: [echo, "{{ target.db }}"]
  - id: whole
    kind: command
    run: [echo, "{{ target | tojson }}", "{{ vars | tojson }}"]
"#,
        );
        assert_eq!(
            refused,
            [
                "secret `PASSWORD` would be on the command line of `echo`",
                "secret `PASSWORD` (through `vars.via`) would be on the command line of `echo`",
                "secret `LIVE_URL` (through `target.db`) would be on the command line of `echo`",
                "secret `LIVE_URL` (through `target`) would be on the command line of `echo`",
                "secret `PASSWORD` (through `vars`) would be on the command line of `echo`",
            ]
        );
    }

    #[test]
    fn an_env_outside_a_command_check_is_refused() {
        let refused = messages(
            r#"  - id: smoke
    kind: smoke-test
    checks:
      - http: http://127.0.0.1/health
        env: { TOKEN: "{{ secrets.PASSWORD }}" }
"#,
        );
        assert_eq!(refused, ["`env` belongs to a `command` check"]);
    }
}
