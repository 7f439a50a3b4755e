//! `smoke-test`: prove a restored database (and the service on it) works.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::loader::Spanned;

mod probes;

use super::{Done, StepContext, StepFailure};
use crate::connect::postgres::{self, Target};
use crate::connect::store::Store;
use crate::manifest::{self, Manifest};

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
    /// Environment variables for the `command` (templates): where secrets go, never into
    /// its arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
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

impl super::StepKind for SmokeTest {
    const NAME: &'static str = "smoke-test";
    const OUTPUTS: &'static [&'static str] = &["passed", "failed", "checks"];
    const IDEMPOTENT: bool = true;
    const ARGUMENTS: &'static [super::Arguments] = &[super::Arguments {
        path: "checks.command",
        program: None,
        instead: "pass it in the check's `env:` instead",
    }];

    /// The backup's manifest, read from `store`.
    fn access(&self) -> Vec<crate::steps::Access<'_>> {
        use crate::steps::{Access, Need};
        self.store
            .iter()
            .map(|store| Access::of("store", store, &[Need::Read]))
            .collect()
    }

    fn summary(&self) -> String {
        format!("{} smoke check(s)", self.checks.value.len())
    }

    fn check(
        &self,
        _node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
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
            if !check.value.env.is_empty() && check.value.command.is_none() {
                out.push(Diagnostic::new(
                    check.pos,
                    1,
                    "`env` belongs to a `command` check",
                ));
            }
        }
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let database = match &self.database {
            Some(url) => {
                let target = Target::parse(&render(url)?).map_err(StepFailure::of)?;
                let client = target
                    .connect(CONNECT_TIMEOUT)
                    .await
                    .map_err(StepFailure::of)?;
                Some((target, client))
            }
            None => None,
        };
        let manifest = match (&self.store, &self.backup) {
            (Some(store), Some(backup)) if self.needs_manifest() => {
                let store = Store::open(&render(store)?)
                    .await
                    .map_err(StepFailure::of)?;
                let key = manifest::manifest_key(&render(backup)?);
                let bytes = store.get_bytes(&key).await.map_err(StepFailure::of)?;
                Some(Manifest::parse(&bytes).map_err(StepFailure::new)?)
            }
            _ => None,
        };

        let mut done = Done::default();
        let mut results = Vec::new();
        let (mut passed, mut failed) = (0u64, 0u64);
        for (index, check) in self.checks.value.iter().enumerate() {
            if ctx.cancel.is_cancelled() {
                return Err(StepFailure::cancelled());
            }
            let check = &check.value;
            let name = check
                .name
                .clone()
                .unwrap_or_else(|| format!("check {} ({})", index + 1, check.kinds().join("")));
            let verdict = match self
                .check_one(index, check, database.as_ref(), manifest.as_ref(), ctx)
                .await
            {
                Ok(verdict) => verdict,
                Err(error) => Verdict::new(false, error),
            };
            if verdict.passed {
                passed += 1;
            } else {
                failed += 1;
            }
            done.evidence.push(format!(
                "{} {name}: {}",
                if verdict.passed { "passed" } else { "FAILED" },
                verdict.measured
            ));
            results.push(serde_json::json!({
                "name": name,
                "passed": verdict.passed,
                "measured": verdict.measured,
            }));
        }
        done.outputs.insert("passed".into(), passed.into());
        done.outputs.insert("failed".into(), failed.into());
        done.outputs.insert("checks".into(), results.into());
        if failed > 0 {
            return Err(StepFailure {
                message: format!("{failed} of {} smoke check(s) failed", passed + failed),
                evidence: done.evidence,
                outputs: done.outputs,
                cancelled: false,
                permanent: false,
            });
        }
        Ok(done)
    }
}

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// One check's verdict and what was measured, for the evidence.
struct Verdict {
    passed: bool,
    measured: String,
}

impl Verdict {
    fn new(passed: bool, measured: impl Into<String>) -> Verdict {
        Verdict {
            passed,
            measured: measured.into(),
        }
    }
}

impl SmokeTest {
    fn needs_manifest(&self) -> bool {
        self.checks
            .value
            .iter()
            .any(|c| c.value.row_counts == Some(true) || c.value.large_objects == Some(true))
    }

    async fn check_one(
        &self,
        index: usize,
        check: &Check,
        database: Option<&(Target, tokio_postgres::Client)>,
        manifest: Option<&Manifest>,
        ctx: &StepContext<'_>,
    ) -> Result<Verdict, String> {
        let render = |text: &str| (ctx.render)(text);
        let db = || database.ok_or_else(|| "this check needs the step's `database:`".to_string());
        let from_manifest =
            || manifest.ok_or_else(|| "this check needs the backup's manifest".to_string());
        if let Some(sql) = &check.sql {
            let (target, client) = db()?;
            let value = first_value(target, client, &render(sql)?).await?;
            return Ok(match &check.expect {
                Some(expect) => {
                    let expect = render(expect)?;
                    Verdict::new(
                        expectation_met(&value, &expect)?,
                        format!(
                            "{} (expected {expect})",
                            value.as_deref().unwrap_or("no row")
                        ),
                    )
                }
                None => Verdict::new(true, value.unwrap_or_else(|| "no row".into())),
            });
        }
        if check.row_counts == Some(true) {
            let (target, client) = db()?;
            return row_counts(target, client, from_manifest()?).await;
        }
        if check.large_objects == Some(true) {
            let (target, client) = db()?;
            let found = first_value(
                target,
                client,
                "SELECT count(*) FROM pg_largeobject_metadata",
            )
            .await?
            .unwrap_or_default();
            let expected = from_manifest()?.large_objects.to_string();
            return Ok(Verdict::new(
                found == expected,
                format!("{found} large objects, {expected} in the backup"),
            ));
        }
        if check.sequences == Some(true) {
            let (target, client) = db()?;
            return sequences(target, client).await;
        }
        if let Some(url) = &check.http {
            return probes::http(check, &render(url)?, index, ctx).await;
        }
        if let Some(argv) = &check.command {
            let argv = argv
                .iter()
                .map(|a| render(a))
                .collect::<Result<Vec<_>, _>>()?;
            return probes::command(&argv, &check.env, index, ctx).await;
        }
        Err("nothing to check".into())
    }
}

/// The first column of the first row, as text (NULL is the empty string).
async fn first_value(
    target: &Target,
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Option<String>, String> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| target.error(&e).to_string())?;
    Ok(messages.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => {
            Some(row.get(0).unwrap_or_default().to_string())
        }
        _ => None,
    }))
}

/// `42`, `>= 100`, `< 5`, `!= 0`, or `non-empty`. Numbers compare as numbers.
fn expectation_met(value: &Option<String>, expect: &str) -> Result<bool, String> {
    let expect = expect.trim();
    if expect == "non-empty" {
        return Ok(value.as_deref().is_some_and(|v| !v.is_empty()));
    }
    let Some(value) = value else {
        return Ok(false);
    };
    for op in [">=", "<=", "!=", "==", ">", "<", "="] {
        if let Some(wanted) = expect.strip_prefix(op) {
            let wanted = wanted.trim();
            let (Ok(have), Ok(want)) = (value.trim().parse::<f64>(), wanted.parse::<f64>()) else {
                return match op {
                    "=" | "==" => Ok(value == wanted),
                    "!=" => Ok(value != wanted),
                    _ => Err(format!(
                        "`{expect}` compares numbers, and the query returned `{value}`"
                    )),
                };
            };
            return Ok(match op {
                ">=" => have >= want,
                "<=" => have <= want,
                ">" => have > want,
                "<" => have < want,
                "!=" => have != want,
                _ => have == want,
            });
        }
    }
    Ok(match (value.trim().parse::<f64>(), expect.parse::<f64>()) {
        (Ok(have), Ok(want)) => have == want,
        _ => value == expect,
    })
}

/// Every table in the manifest holds exactly the rows it held in the backup's snapshot.
async fn row_counts(
    target: &Target,
    client: &tokio_postgres::Client,
    manifest: &Manifest,
) -> Result<Verdict, String> {
    let mut wrong = Vec::new();
    let mut rows = 0u64;
    for table in &manifest.tables {
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            postgres::quote_ident(&table.schema),
            postgres::quote_ident(&table.table)
        );
        match client.query_one(&sql, &[]).await {
            Ok(row) => {
                let found = row.get::<_, i64>(0).max(0) as u64;
                rows += found;
                if found != table.rows {
                    wrong.push(format!(
                        "{}.{}: {found} rows, {} in the backup",
                        table.schema, table.table, table.rows
                    ));
                }
            }
            Err(e) => wrong.push(format!(
                "{}.{}: {}",
                table.schema,
                table.table,
                target.error(&e)
            )),
        }
    }
    Ok(if wrong.is_empty() {
        Verdict::new(
            true,
            format!(
                "{} tables, {rows} rows, each as in the backup",
                manifest.tables.len()
            ),
        )
    } else {
        Verdict::new(false, wrong.join("; "))
    })
}

/// No sequence would hand out an id its column already holds.
async fn sequences(target: &Target, client: &tokio_postgres::Client) -> Result<Verdict, String> {
    let owned = client
        .query(
            "SELECT s.seqrelid::regclass::text, a.attrelid::regclass::text, a.attname
               FROM pg_sequence s
               JOIN pg_depend d ON d.objid = s.seqrelid AND d.classid = 'pg_class'::regclass
                               AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
               JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| target.error(&e).to_string())?;
    let mut behind = Vec::new();
    for row in &owned {
        let (sequence, table, column): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let sql = format!(
            "SELECT s.last_value, s.is_called, (SELECT max({})::bigint FROM {table}) FROM {sequence} s",
            postgres::quote_ident(&column)
        );
        let values = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| target.error(&e).to_string())?;
        let (last, called, max): (i64, bool, Option<i64>) =
            (values.get(0), values.get(1), values.get(2));
        // The next value is last+1 once called, last itself before.
        let next = if called { last + 1 } else { last };
        if let Some(max) = max
            && next <= max
        {
            behind.push(format!(
                "{sequence} would next give {next}, {table}.{column} already holds {max}"
            ));
        }
    }
    Ok(if behind.is_empty() {
        Verdict::new(true, format!("{} sequence(s), none behind", owned.len()))
    } else {
        Verdict::new(false, behind.join("; "))
    })
}
