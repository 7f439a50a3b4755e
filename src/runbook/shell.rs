//! A playbook's templates as shell: `{{ vars.store }}` is `${store}` (set at the top of the
//! runbook from the playbook's defaults), `{{ secrets.RESTORE_URL }}` is `$RESTORE_URL` (set by
//! the person, never written down), `{{ target.restore }}` is the live target's own template,
//! `{{ steps.assess.outputs.backup }}` is `${assess_backup}` when an earlier step's commands set
//! it. What has no shell form (`run.eta`, a filter) stays a named placeholder, `<run.eta>`, and
//! the text that holds one is marked inexact.

use std::collections::BTreeSet;

use crate::model::Playbook;

/// What the rendering knows while it goes through the steps in order.
pub(super) struct Ctx<'a> {
    pub playbook: &'a Playbook,
    /// Step outputs earlier steps' commands set, as `(step, output)`: `${step_output}`.
    pub outputs: BTreeSet<(String, String)>,
    /// The helpers (shell functions) the commands use, defined once at the top.
    pub helpers: BTreeSet<&'static str>,
    /// `RUN_ID`, `RUN_STARTED_AT`: set at the top when a command uses them.
    pub run_values: BTreeSet<&'static str>,
    /// Secrets the commands use.
    pub secrets: BTreeSet<String>,
    /// Variables the commands use.
    pub vars: BTreeSet<String>,
    /// Steps an incident skips (`when:` false in an incident): their status is `skipped`.
    pub skipped: BTreeSet<String>,
}

/// One `{{ … }}` in shell.
enum Expansion {
    /// `${name}` (a variable set earlier).
    Var(String),
    /// Text known before anything runs (`run.mode` is `incident`).
    Text(String),
}

impl<'a> Ctx<'a> {
    pub fn new(playbook: &'a Playbook) -> Ctx<'a> {
        Ctx {
            playbook,
            outputs: BTreeSet::new(),
            helpers: BTreeSet::new(),
            run_values: BTreeSet::new(),
            secrets: BTreeSet::new(),
            vars: BTreeSet::new(),
            skipped: BTreeSet::new(),
        }
    }

    /// Marks helpers as used.
    pub fn uses(&mut self, helpers: &[&'static str]) {
        self.helpers.extend(helpers.iter().copied());
    }

    /// The shell variable holding a step's output, recorded as set from here on.
    pub fn sets(&mut self, step: &str, output: &str) -> String {
        self.outputs.insert((step.to_string(), output.to_string()));
        output_var(step, output)
    }

    fn expand(&mut self, expression: &str, depth: usize) -> Option<Vec<Piece>> {
        let path: Vec<&str> = expression.split('.').collect();
        let simple = path.iter().all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !simple {
            return None;
        }
        let one = |expansion| Some(vec![Piece::Expansion(expansion)]);
        match path.as_slice() {
            ["vars", name] if self.playbook.vars.contains_key(*name) => {
                self.vars.insert(name.to_string());
                one(Expansion::Var(name.to_string()))
            }
            ["secrets", name] if self.playbook.secrets.iter().any(|s| s == name) => {
                self.secrets.insert(name.to_string());
                one(Expansion::Var(name.to_string()))
            }
            ["target", name] if depth < 8 => {
                let live = self.playbook.targets.live.get(*name)?.clone();
                Some(self.pieces(&live, depth + 1))
            }
            ["steps", step, "outputs", output]
                if self
                    .outputs
                    .contains(&(step.to_string(), output.to_string())) =>
            {
                one(Expansion::Var(output_var(step, output)))
            }
            ["steps", step, "status"] if self.skipped.contains(*step) => {
                one(Expansion::Text("skipped".into()))
            }
            ["run", "mode"] => one(Expansion::Text("incident".into())),
            ["run", "playbook"] => one(Expansion::Text(self.playbook.name.clone())),
            ["run", "rto"] => one(Expansion::Text(
                self.playbook
                    .objectives
                    .rto
                    .map(|rto| rto.to_string())
                    .unwrap_or_default(),
            )),
            ["run", "id"] => {
                self.run_values.insert("RUN_ID");
                one(Expansion::Var("RUN_ID".into()))
            }
            ["run", "started_at"] => {
                self.run_values.insert("RUN_STARTED_AT");
                one(Expansion::Var("RUN_STARTED_AT".into()))
            }
            _ => None,
        }
    }

    /// A template cut into literal text and expansions; what has no shell form is
    /// `Piece::Unknown`.
    fn pieces(&mut self, template: &str, depth: usize) -> Vec<Piece> {
        let mut out = Vec::new();
        for part in split(template) {
            match part {
                Part::Text(text) => out.push(Piece::Text(text.to_string())),
                Part::Expression(expression) => match self.expand(expression, depth) {
                    Some(pieces) => out.extend(pieces),
                    None => out.push(Piece::Unknown(expression.to_string())),
                },
            }
        }
        out
    }

    /// The template as one double-quoted shell word, and whether it is exact (no placeholder).
    pub fn word(&mut self, template: &str) -> (String, bool) {
        let pieces = self.pieces(template, 0);
        let exact = !pieces.iter().any(|p| matches!(p, Piece::Unknown(_)));
        let mut out = String::from("\"");
        for (i, piece) in pieces.iter().enumerate() {
            match piece {
                Piece::Text(text) => out.push_str(&escape_double(text)),
                Piece::Unknown(expression) => {
                    out.push_str(&escape_double(&format!("<{expression}>")))
                }
                Piece::Expansion(Expansion::Text(text)) => out.push_str(&escape_double(text)),
                Piece::Expansion(Expansion::Var(name)) => {
                    let next = match pieces.get(i + 1) {
                        Some(Piece::Text(text)) => text.chars().next(),
                        _ => None,
                    };
                    out.push_str(&reference(name, next));
                }
            }
        }
        out.push('"');
        (out, exact)
    }

    /// The template as a shell word, placeholders and all (see [`Ctx::word`]).
    pub fn w(&mut self, template: &str) -> String {
        self.word(template).0
    }

    /// The template for people to read: `${store}` for a variable, `<run.eta>` for what has
    /// no value before the run.
    pub fn prose(&mut self, template: &str) -> String {
        let pieces = self.pieces(template, 0);
        let mut out = String::new();
        for (i, piece) in pieces.iter().enumerate() {
            match piece {
                Piece::Text(text) | Piece::Expansion(Expansion::Text(text)) => out.push_str(text),
                Piece::Unknown(expression) => out.push_str(&format!("<{expression}>")),
                Piece::Expansion(Expansion::Var(name)) => {
                    let next = match pieces.get(i + 1) {
                        Some(Piece::Text(text)) => text.chars().next(),
                        _ => None,
                    };
                    out.push_str(&reference(name, next));
                }
            }
        }
        out
    }

    /// A `when:` condition in shell: always true or false in an incident, a test the shell
    /// can make, or one a person judges.
    pub fn condition(&mut self, when: &str) -> Condition {
        let mut any_of = Vec::new();
        for alternative in when.split(" or ") {
            let mut all_of = Vec::new();
            for atom in alternative.split(" and ") {
                all_of.push(self.atom(atom.trim()));
            }
            any_of.push(combine(all_of, true));
        }
        combine(any_of, false)
    }

    fn atom(&mut self, atom: &str) -> Condition {
        let Some((left, op, right)) = ["==", "!="].iter().find_map(|op| {
            atom.split_once(op)
                .map(|(left, right)| (left.trim(), *op, right.trim()))
        }) else {
            return Condition::Judge;
        };
        let mut side = |text: &str| -> Option<Side> {
            if let Some(literal) = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .or_else(|| text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
            {
                return Some(Side::Text(literal.to_string()));
            }
            let pieces = self.expand(text, 0)?;
            match pieces.as_slice() {
                [Piece::Expansion(Expansion::Text(text))] => Some(Side::Text(text.clone())),
                _ => {
                    let (word, exact) = self.word(&format!("{{{{ {text} }}}}"));
                    exact.then_some(Side::Shell(word))
                }
            }
        };
        let (Some(left), Some(right)) = (side(left), side(right)) else {
            return Condition::Judge;
        };
        let equal = op == "==";
        match (left, right) {
            (Side::Text(a), Side::Text(b)) => {
                if (a == b) == equal {
                    Condition::Always
                } else {
                    Condition::Never
                }
            }
            (Side::Shell(a), Side::Text(b)) | (Side::Text(b), Side::Shell(a)) => Condition::Test(
                format!("[ {a} {} {} ]", if equal { "=" } else { "!=" }, quote(&b)),
            ),
            (Side::Shell(a), Side::Shell(b)) => {
                Condition::Test(format!("[ {a} {} {b} ]", if equal { "=" } else { "!=" }))
            }
        }
    }
}

enum Side {
    Text(String),
    Shell(String),
}

/// What a `when:` amounts to in an incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Condition {
    Always,
    Never,
    /// A shell test (`[ "${wal_store}" != '' ]`).
    Test(String),
    /// Depends on how earlier steps went: a person decides.
    Judge,
}

fn combine(parts: Vec<Condition>, all: bool) -> Condition {
    let (absorbing, neutral) = if all {
        (Condition::Never, Condition::Always)
    } else {
        (Condition::Always, Condition::Never)
    };
    if parts.contains(&absorbing) {
        return absorbing;
    }
    if parts.contains(&Condition::Judge) {
        return Condition::Judge;
    }
    let tests: Vec<String> = parts
        .into_iter()
        .filter_map(|part| match part {
            Condition::Test(test) => Some(test),
            _ => None,
        })
        .collect();
    match tests.len() {
        0 => neutral,
        1 => Condition::Test(tests.into_iter().next().unwrap_or_default()),
        _ => Condition::Test(format!(
            "{{ {}; }}",
            tests.join(if all { " && " } else { " || " })
        )),
    }
}

enum Piece {
    Text(String),
    Expansion(Expansion),
    Unknown(String),
}

enum Part<'t> {
    Text(&'t str),
    Expression(&'t str),
}

/// Literal text and `{{ expression }}`s, in order; `{% … %}` blocks count as expressions (they
/// have no shell form).
fn split(template: &str) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    let mut rest = template;
    loop {
        let open = [rest.find("{{"), rest.find("{%")]
            .into_iter()
            .flatten()
            .min();
        let Some(open) = open else {
            break;
        };
        let closing = if rest[open..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        let Some(close) = rest[open + 2..].find(closing) else {
            break;
        };
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let inner = rest[open + 2..open + 2 + close]
            .trim()
            .trim_matches('-')
            .trim();
        parts.push(Part::Expression(inner));
        rest = &rest[open + 2 + close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    parts
}

/// `${assess_backup}`: the variable a step's output is kept in.
pub(super) fn output_var(step: &str, output: &str) -> String {
    format!("{step}_{output}")
}

/// `$NAME`, or `${name}` where the next character would join the name.
fn reference(name: &str, next: Option<char>) -> String {
    let joins = next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !joins {
        format!("${name}")
    } else {
        format!("${{{name}}}")
    }
}

fn escape_double(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '$' | '`' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A single-quoted shell word.
pub(super) fn quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playbook() -> Playbook {
        let text = r#"
version: 1
name: t
vars: { store: "s3://b/p", wal_store: "" }
secrets: [RESTORE_URL, DRILL_RESTORE_URL]
targets:
  live: { restore: "{{ secrets.RESTORE_URL }}", wal: "{{ vars.wal_store }}", host: "postgres://{{ vars.store }}:5432/app" }
  drill: { restore: "{{ secrets.DRILL_RESTORE_URL }}", wal: "", host: "x" }
steps:
  - id: a
    kind: wait
    duration: 0s
"#;
        match crate::validate::validate(text) {
            Ok(playbook) => playbook,
            Err(_) => panic!("the test playbook is invalid"),
        }
    }

    #[test]
    fn templates_become_shell_words() {
        let playbook = playbook();
        let mut ctx = Ctx::new(&playbook);
        assert_eq!(
            ctx.word("{{ target.restore }}"),
            ("\"$RESTORE_URL\"".into(), true)
        );
        assert_eq!(ctx.w("{{ vars.store }}/x"), "\"${store}/x\"");
        assert_eq!(
            ctx.w("{{ target.host }}"),
            "\"postgres://${store}:5432/app\""
        );
        assert_eq!(
            ctx.word("a $b {{ run.eta }}"),
            ("\"a \\$b <run.eta>\"".into(), false)
        );
        assert_eq!(
            ctx.w("{{ steps.a.outputs.key }}"),
            "\"<steps.a.outputs.key>\""
        );
        let key = ctx.sets("a", "key");
        assert_eq!(key, "a_key");
        assert_eq!(ctx.w("{{ steps.a.outputs.key }}"), "\"${a_key}\"");
        assert_eq!(ctx.prose("mode {{ run.mode }}"), "mode incident");
        assert!(ctx.secrets.contains("RESTORE_URL"));
    }

    #[test]
    fn conditions_are_decided_tested_or_left_to_people() {
        let playbook = playbook();
        let mut ctx = Ctx::new(&playbook);
        assert_eq!(
            ctx.condition("target.wal != \"\""),
            Condition::Test("[ \"${wal_store}\" != '' ]".into())
        );
        assert_eq!(ctx.condition("run.mode == \"drill\""), Condition::Never);
        assert_eq!(
            ctx.condition("run.mode == \"drill\" and steps.a.status == \"succeeded\""),
            Condition::Never
        );
        assert_eq!(ctx.condition("run.mode != \"drill\""), Condition::Always);
        assert_eq!(
            ctx.condition("steps.a.status != \"succeeded\""),
            Condition::Judge
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("plain-word"), "plain-word");
    }
}
