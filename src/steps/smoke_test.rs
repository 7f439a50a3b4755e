//! `smoke-test`: prove a restored database (and the service on it) works.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::loader::Spanned;

/// Runs every check and records each measured value as evidence. Any failed check fails the
/// step, which blocks everything downstream (promote never runs after a failed smoke test).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmokeTest {
    /// PostgreSQL URL for SQL checks, e.g. `{{ steps.restore.outputs.target }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Store and backup key whose manifest gives the expected row counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The checks, each exactly one of: `sql`, `row_counts`, `large_objects`, `sequences`,
    /// `http`, `command`.
    pub checks: Spanned<Vec<Spanned<Check>>>,
}

/// One check. Exactly one of `sql`, `row_counts`, `large_objects`, `sequences`, `http`,
/// `command` is given.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// A name for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A query; its first column of the first row is compared with `expect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Expected value: `"42"`, a comparison (`">= 100"`, `"< 5"`), or `non-empty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Every table's row count equals the backup manifest's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<bool>,
    /// The large-object count equals the backup manifest's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_objects: Option<bool>,
    /// No sequence is behind the maximum id of the column it feeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequences: Option<bool>,
    /// A URL to GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Expected HTTP status (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Text the HTTP body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// Slowest acceptable HTTP response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<Duration>,
    /// A program and its arguments (no shell); exit status 0 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

impl Check {
    /// The kinds of check this entry asks for (exactly one is valid).
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.sql.is_some() {
            kinds.push("sql");
        }
        if self.row_counts == Some(true) {
            kinds.push("row_counts");
        }
        if self.large_objects == Some(true) {
            kinds.push("large_objects");
        }
        if self.sequences == Some(true) {
            kinds.push("sequences");
        }
        if self.http.is_some() {
            kinds.push("http");
        }
        if self.command.is_some() {
            kinds.push("command");
        }
        kinds
    }
}

pub const OUTPUTS: &[&str] = &["passed", "failed", "checks"];
pub const IDEMPOTENT: bool = true;

impl SmokeTest {
    pub fn summary(&self) -> String {
        format!("{} smoke check(s)", self.checks.value.len())
    }
}

impl SmokeTest {
    pub(crate) fn check(&self, out: &mut Vec<crate::diagnostic::Diagnostic>) {
        use crate::diagnostic::Diagnostic;
        if self.checks.value.is_empty() {
            out.push(
                Diagnostic::new(
                    self.checks.pos,
                    self.checks.len,
                    "a smoke-test needs at least one check",
                )
                .help("add e.g. `- sql: SELECT count(*) FROM users` with `expect: \">= 1\"`"),
            );
        }
        for check in &self.checks.value {
            let kinds = check.value.kinds();
            match kinds.len() {
                1 => {}
                0 => out.push(
                    Diagnostic::new(check.pos, 1, "a check must say what to check").help(
                        "give one of: sql, row_counts, large_objects, sequences, http, command",
                    ),
                ),
                _ => out.push(
                    Diagnostic::new(
                        check.pos,
                        1,
                        format!(
                            "a check can do one thing, this one has {}",
                            kinds.join(" and ")
                        ),
                    )
                    .help("split it into one check per kind"),
                ),
            }
            for (flag, value) in [
                ("row_counts", check.value.row_counts),
                ("large_objects", check.value.large_objects),
                ("sequences", check.value.sequences),
            ] {
                if value == Some(false) {
                    out.push(
                        Diagnostic::new(check.pos, 1, format!("`{flag}: false` checks nothing"))
                            .help(format!("write `{flag}: true`, or leave the check out")),
                    );
                }
            }
            let needs_database = check.value.sql.is_some()
                || kinds
                    .iter()
                    .any(|k| ["row_counts", "large_objects", "sequences"].contains(k));
            if needs_database && self.database.is_none() {
                out.push(
                    Diagnostic::new(check.pos, 1, format!("a `{}` check needs the step's `database:`", kinds.first().copied().unwrap_or("sql")))
                        .help("give the smoke-test a `database:` URL, e.g. `{{ steps.restore.outputs.target }}`"),
                );
            }
            let needs_manifest = kinds
                .iter()
                .any(|k| ["row_counts", "large_objects"].contains(k));
            if needs_manifest && (self.store.is_none() || self.backup.is_none()) {
                out.push(
                    Diagnostic::new(check.pos, 1, format!("a `{}` check compares with the backup's manifest: the step needs `store:` and `backup:`", kinds.first().copied().unwrap_or("row_counts"))),
                );
            }
            if check.value.expect.is_some() && check.value.sql.is_none() {
                out.push(Diagnostic::new(
                    check.pos,
                    1,
                    "`expect` belongs to an `sql` check",
                ));
            }
            if (check.value.status.is_some()
                || check.value.contains.is_some()
                || check.value.max_latency.is_some())
                && check.value.http.is_none()
            {
                out.push(Diagnostic::new(
                    check.pos,
                    1,
                    "`status`, `contains` and `max_latency` belong to an `http` check",
                ));
            }
        }
    }
}
