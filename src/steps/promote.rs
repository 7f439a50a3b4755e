//! `promote`: make the recovered database the one the application uses.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// `standby`: `pg_promote()` on a streaming standby, then check it left recovery.
/// `repoint`: rewrite `DATABASE_URL` (atomically, previous file kept) in the application's env
/// file, or send it to an HTTP secret endpoint. Live-only unless the step says otherwise.
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

pub const OUTPUTS: &[&str] = &["previous", "current"];
/// Promoting twice is not something to do without asking.
pub const IDEMPOTENT: bool = false;

impl Promote {
    pub fn summary(&self) -> String {
        match self.method {
            PromoteMethod::Standby => "promote the standby".into(),
            PromoteMethod::Repoint => "repoint the application's DATABASE_URL".into(),
        }
    }
}

impl Promote {
    pub(crate) fn check(
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
                if self.env_file.is_none() == self.endpoint.is_none() {
                    out.push(at_key(
                        node,
                        "method",
                        "`method: repoint` needs exactly one of `env_file:` or `endpoint:`",
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
}
