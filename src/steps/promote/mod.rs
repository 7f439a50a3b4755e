//! `promote`: make the recovered database the one the application uses.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

mod env_file;
use env_file::rewrite_env_file;

/// `standby`: `pg_promote()` on a streaming standby, then check it left recovery.
/// `repoint`: rewrite `DATABASE_URL` (atomically, previous file kept) in the application's env
/// file, send it to an HTTP secret endpoint, or write it as a new version of a secret in AWS
/// Secrets Manager (the previous version kept). Live-only unless the step says otherwise.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    pub method: PromoteMethod,
    /// `standby`: PostgreSQL URL of the standby to promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<String>,
    /// `standby`: how long pg_promote may take (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Duration>,
    /// `repoint`: the new connection URL, e.g. `{{ secrets.RESTORE_URL }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `repoint`: the application's env file to rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
    /// `repoint`: an HTTP endpoint that accepts the new value (PUT, JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `repoint`: a secret in AWS Secrets Manager (its name or ARN; `#field` for a field of a
    /// JSON secret) that gets the new value as a new version; the previous version stays
    /// retrievable as `AWSPREVIOUS`, and the evidence names both and the rollback command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret: Option<String>,
    /// `repoint`: the variable to rewrite (default `DATABASE_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromoteMethod {
    Standby,
    Repoint,
}

impl super::StepKind for Promote {
    const NAME: &'static str = "promote";
    const OUTPUTS: &'static [&'static str] = &["previous", "current"];
    /// Safe to run again after a crash: `standby` asks the server first and does not promote a
    /// primary again ("already a primary"), and `repoint` writes a value, so writing it twice
    /// leaves the same file (or secret). A drill killed right after the promote resumes on its own.
    const IDEMPOTENT: bool = true;
    const LIVE_ONLY_BY_DEFAULT: bool = true;

    fn access(&self) -> Vec<crate::steps::Access<'_>> {
        use crate::steps::{Access, Need};
        self.aws_secret
            .iter()
            .map(|secret| Access::of("aws_secret", secret, &[Need::WriteSecret]))
            .collect()
    }

    fn summary(&self) -> String {
        match self.method {
            PromoteMethod::Standby => "promote the standby".into(),
            PromoteMethod::Repoint => {
                let variable = self.variable.as_deref().unwrap_or("DATABASE_URL");
                match (&self.env_file, &self.endpoint, &self.aws_secret) {
                    (Some(file), _, _) => format!("set {variable} in {file}"),
                    (None, Some(endpoint), _) => format!("send {variable} to {endpoint}"),
                    (None, None, Some(secret)) => {
                        format!("write a new version of secret {secret}")
                    }
                    (None, None, None) => format!("repoint the application's {variable}"),
                }
            }
        }
    }

    /// Promoting a standby changes its whole server; repointing writes the env file or the
    /// endpoint (the new URL is what is written, not where).
    fn writes(&self) -> Vec<crate::steps::Write<'_>> {
        use crate::steps::Write;
        use crate::target::Expect;
        let mut writes = Vec::new();
        if let Some(standby) = &self.standby {
            writes.push(Write::of("standby", standby, Expect::Postgres).server());
        }
        if let Some(file) = &self.env_file {
            writes.push(Write::of("env_file", file, Expect::File));
        }
        if let Some(endpoint) = &self.endpoint {
            writes.push(Write::of("endpoint", endpoint, Expect::Http));
        }
        if let Some(secret) = &self.aws_secret {
            writes.push(Write::of("aws_secret", secret, Expect::AwsSecret));
        }
        writes
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        use super::at_key;
        match self.method {
            PromoteMethod::Standby if self.standby.is_none() => {
                out.push(at_key(
                    node,
                    "method",
                    "`method: standby` needs `standby:`, the standby's PostgreSQL URL",
                ));
            }
            PromoteMethod::Repoint => {
                if self.url.is_none() {
                    out.push(at_key(
                        node,
                        "method",
                        "`method: repoint` needs `url:`, the new DATABASE_URL",
                    ));
                }
                let given = [&self.env_file, &self.endpoint, &self.aws_secret]
                    .iter()
                    .filter(|value| value.is_some())
                    .count();
                if given != 1 {
                    out.push(at_key(
                        node,
                        "method",
                        "`method: repoint` needs exactly one of `env_file:`, `endpoint:` or `aws_secret:`",
                    ));
                }
                if self.aws_secret.is_some() && self.variable.is_some() {
                    out.push(at_key(
                        node,
                        "variable",
                        "`variable` does nothing with `aws_secret:` (the secret holds the value; name a field of a JSON secret with `#field`)",
                    ));
                }
            }
            PromoteMethod::Standby => {}
        }
        let foreign: &[(&str, bool)] = match self.method {
            PromoteMethod::Standby => &[
                ("url", self.url.is_some()),
                ("env_file", self.env_file.is_some()),
                ("endpoint", self.endpoint.is_some()),
                ("aws_secret", self.aws_secret.is_some()),
                ("variable", self.variable.is_some()),
            ],
            PromoteMethod::Repoint => &[
                ("standby", self.standby.is_some()),
                ("wait", self.wait.is_some()),
            ],
        };
        for (key, given) in foreign {
            if *given {
                let method = match self.method {
                    PromoteMethod::Standby => "standby",
                    PromoteMethod::Repoint => "repoint",
                };
                out.push(at_key(
                    node,
                    key,
                    format!("`{key}` does nothing with `method: {method}`"),
                ));
            }
        }
    }

    async fn run(&self, ctx: &super::StepContext<'_>) -> Result<super::Done, super::StepFailure> {
        use super::StepFailure;
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let required = |value: &Option<String>, key: &str| match value {
            Some(value) => render(value),
            None => Err(StepFailure::new(format!("`{key}` is missing"))),
        };
        match self.method {
            PromoteMethod::Standby => {
                let wait = self.wait.map_or(DEFAULT_WAIT, |wait| wait.0);
                promote_standby(ctx, &required(&self.standby, "standby")?, wait).await
            }
            PromoteMethod::Repoint => {
                let variable = match &self.variable {
                    Some(variable) => render(variable)?,
                    None => "DATABASE_URL".into(),
                };
                let url = required(&self.url, "url")?;
                let repoint = Repoint::new(variable, url)?;
                match (&self.env_file, &self.endpoint, &self.aws_secret) {
                    (Some(file), _, _) => repoint.env_file(&render(file)?).await,
                    (None, Some(endpoint), _) => repoint.endpoint(ctx, &render(endpoint)?).await,
                    (None, None, Some(secret)) => repoint.aws_secret(ctx, &render(secret)?).await,
                    (None, None, None) => Err(StepFailure::new(
                        "`method: repoint` needs `env_file:`, `endpoint:` or `aws_secret:`",
                    )),
                }
            }
        }
    }
}

/// How long connecting to the standby may take.
const CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long `pg_promote` may take unless the step says `wait:`.
const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `pg_promote()` on the standby, unless it is a primary already: a resumed run, or a second
/// attempt after the first promoted it and then lost the connection, must not fail (or
/// promote anything else) because the work is done.
async fn promote_standby(
    ctx: &super::StepContext<'_>,
    url: &str,
    wait: std::time::Duration,
) -> Result<super::Done, super::StepFailure> {
    use super::StepFailure;
    use crate::connect::postgres::Target;
    let target = Target::parse(url).map_err(StepFailure::of)?;
    let client = tokio::select! {
        client = target.connect(CONNECT_LIMIT) => client.map_err(StepFailure::of)?,
        _ = ctx.cancel.cancelled() => return Err(StepFailure::cancelled()),
    };
    let in_recovery = async || -> Result<bool, StepFailure> {
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(|e| StepFailure::of(target.error(&e)))?;
        Ok(row.get(0))
    };

    let mut done = super::Done::default();
    if !in_recovery().await? {
        done.outputs.insert("previous".into(), "primary".into());
        done.outputs.insert("current".into(), "primary".into());
        done.evidence.push(format!(
            "{target} is already a primary (not promoted again)"
        ));
        return Ok(done);
    }
    if ctx.cancel.is_cancelled() {
        return Err(StepFailure::cancelled());
    }
    // Once asked, the server promotes whatever happens to this connection, so the call is
    // not abandoned on Ctrl-C: its answer is what the report needs. `wait` bounds it.
    let seconds = i32::try_from(wait.as_secs().max(1)).unwrap_or(i32::MAX);
    let row = client
        .query_one("SELECT pg_promote(true, $1)", &[&seconds])
        .await
        .map_err(|e| StepFailure::of(target.error(&e)))?;
    let promoted: bool = row.get(0);
    if !promoted {
        return Err(StepFailure::new(format!(
            "{target} did not finish promoting within {seconds} s (pg_promote returned false)"
        )));
    }
    if in_recovery().await? {
        return Err(StepFailure::new(format!(
            "{target} is still in recovery after pg_promote"
        )));
    }
    done.outputs.insert("previous".into(), "standby".into());
    done.outputs.insert("current".into(), "primary".into());
    done.evidence
        .push(format!("promoted {target}: standby -> primary"));
    Ok(done)
}

/// The new URL as messages may show it (password masked), if it is one the application can
/// use: a PostgreSQL URL or conninfo string is parsed as libpq would; another (`s3://bucket/prefix` for a storage
/// switch, `redis://…`) must at least be a URL.
fn shown_new_url(url: &str) -> Result<String, String> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if matches!(scheme, None | Some("postgres" | "postgresql")) {
        return crate::connect::postgres::Target::parse(url)
            .map(|target| target.shown_url())
            .map_err(|e| e.to_string());
    }
    let mut parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    Ok(parsed.to_string())
}

/// A new value for the application's connection variable.
struct Repoint {
    variable: String,
    url: String,
    /// The new URL with its password masked, for outputs and evidence.
    shown: String,
}

impl Repoint {
    fn new(variable: String, url: String) -> Result<Repoint, super::StepFailure> {
        use super::StepFailure;
        let variable = variable.trim().to_string();
        let is_name = variable
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && variable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_name {
            return Err(StepFailure::new(format!(
                "`variable` must be a name of letters, digits and underscores, not `{variable}`"
            )));
        }
        let url = url.trim().to_string();
        // A line break in the value would write extra lines, i.e. other variables, into the
        // env file. Say so without quoting the value: it holds a password.
        if url.contains(['\n', '\r']) {
            return Err(StepFailure::new("the new `url` contains a line break"));
        }
        // The application is about to use this URL: a value that does not even parse would
        // take it down, so refuse it before touching anything.
        let shown = shown_new_url(&url)
            .map_err(|e| StepFailure::new(format!("the new `url` is refused: {e}")))?;
        Ok(Repoint {
            variable,
            url,
            shown,
        })
    }

    /// Rewrites the variable's line in the env file: the new content goes to a temporary file
    /// beside it, the old file is kept as `<file>.previous`, then a rename swaps them, so the
    /// application reads either the old file or the new one, never half of one.
    async fn env_file(self, file: &str) -> Result<super::Done, super::StepFailure> {
        let path = std::path::PathBuf::from(file);
        let variable = self.variable.clone();
        let url = self.url.clone();
        let written = tokio::task::spawn_blocking(move || rewrite_env_file(&path, &variable, &url))
            .await
            .map_err(|e| super::StepFailure::new(format!("the env file rewrite stopped: {e}")))?
            .map_err(super::StepFailure::new)?;

        let previous = match &written.previous {
            None => "(not set)".to_string(),
            Some(value) => shown_url(value),
        };
        let mut done = super::Done::default();
        done.evidence.push(format!(
            "{} in {}: {previous} -> {}{}",
            self.variable,
            written.path.display(),
            self.shown,
            if written.previous.is_none() {
                " (line added)"
            } else {
                ""
            }
        ));
        done.evidence.push(format!(
            "previous file kept as {}",
            written.backup.display()
        ));
        done.evidence.extend(written.notes);
        done.outputs.insert("previous".into(), previous.into());
        done.outputs.insert("current".into(), self.shown.into());
        Ok(done)
    }

    /// Writes the new value as a new version of a secret in AWS Secrets Manager. The version
    /// it replaces stays retrievable (`AWSPREVIOUS`), named in the evidence with the command
    /// that makes it current again.
    async fn aws_secret(
        self,
        ctx: &super::StepContext<'_>,
        secret: &str,
    ) -> Result<super::Done, super::StepFailure> {
        use super::StepFailure;
        let reference = crate::secrets::SecretRef::parse(secret)
            .map_err(|problem| StepFailure::new(format!("`aws_secret`: {problem}")))?;
        let written = tokio::select! {
            written = crate::connect::secrets_manager::put(&reference, &self.url) => written,
            _ = ctx.cancel.cancelled() => return Err(StepFailure::cancelled()),
        };
        // The service's answer names the secret and the action, never the value; mask anyway.
        let written = written.map_err(|message| {
            StepFailure::new(format!(
                "could not write {} to secret {reference}: {}",
                self.variable,
                ctx.masker.mask(&message).replace(&self.url, "***")
            ))
        })?;
        let version = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unknown)".into());
        let previous_shown = written
            .previous_value
            .as_deref()
            .map_or_else(|| "(not set)".to_string(), shown_url);
        let mut done = super::Done::default();
        if written.changed {
            done.evidence.push(format!(
                "secret {reference}: {previous_shown} -> {}; version {} is now AWSCURRENT",
                self.shown,
                version(&written.current)
            ));
            if let Some(previous) = &written.previous {
                done.evidence.push(format!(
                    "the previous version {previous} is kept as AWSPREVIOUS; rollback: aws secretsmanager update-secret-version-stage --secret-id {} --version-stage AWSCURRENT --move-to-version-id {previous} --remove-from-version-id {}",
                    reference.id,
                    version(&written.current)
                ));
            }
        } else {
            done.evidence.push(format!(
                "secret {reference} already held {} (version {}): nothing written",
                self.shown,
                version(&written.current)
            ));
        }
        done.outputs
            .insert("previous".into(), previous_shown.into());
        done.outputs.insert("current".into(), self.shown.into());
        Ok(done)
    }

    /// PUTs `{"name": variable, "value": url}` to the application's secret endpoint.
    async fn endpoint(
        self,
        ctx: &super::StepContext<'_>,
        endpoint: &str,
    ) -> Result<super::Done, super::StepFailure> {
        use super::StepFailure;
        // The endpoint URL may carry credentials (user:password@, a token in the query):
        // messages name its scheme, host and port only.
        let shown_endpoint = reqwest::Url::parse(endpoint)
            .map(|u| {
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or(""))
            })
            .map_err(|_| StepFailure::new("`endpoint` is not a valid URL"))?;
        let request = ctx.http.put(endpoint).json(&serde_json::json!({
            "name": self.variable,
            "value": self.url,
        }));
        let response = tokio::select! {
            response = request.send() => response,
            _ = ctx.cancel.cancelled() => return Err(StepFailure::cancelled()),
        };
        let response = response.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            StepFailure::new(format!(
                "could not send {} to {shown_endpoint}: {what}",
                self.variable
            ))
        })?;
        let status = response.status();
        if !status.is_success() {
            let file = super::output_file(ctx, "response").await?;
            let body =
                super::capture::body(response, file, ctx.masker, super::capture::ERRORS, None)
                    .await
                    .map(|body| body.text)
                    .unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            // A receiver may echo what it was sent: the new URL, password included.
            let body = ctx.masker.mask(body.trim()).replace(&self.url, "***");
            return Err(StepFailure {
                // A 4xx (refused credentials, a bad request) answers the same next time.
                permanent: crate::connect::permanent_http_status(status.as_u16()),
                ..StepFailure::new(format!(
                    "{shown_endpoint} answered HTTP {status} to the new {}: {body}",
                    self.variable
                ))
            });
        }
        let mut done = super::Done::default();
        done.evidence.push(format!(
            "{} set to {} through {shown_endpoint}: HTTP {status}",
            self.variable, self.shown
        ));
        // The endpoint does not say what it held before.
        done.outputs.insert("previous".into(), "(unknown)".into());
        done.outputs.insert("current".into(), self.shown.into());
        Ok(done)
    }
}

/// A connection URL with its password masked; `(unparsable)` when it is not one.
fn shown_url(value: &str) -> String {
    if value.trim().is_empty() {
        return "(empty)".into();
    }
    shown_new_url(value).unwrap_or_else(|_| "(unparsable)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_values_are_shown_without_passwords() {
        assert_eq!(
            shown_url("postgres://old:oldpw@a/b"),
            "postgres://old:***@a:5432/b"
        );
        assert_eq!(shown_url("not a url at all"), "(unparsable)");
        assert_eq!(shown_url(""), "(empty)");
    }
}
