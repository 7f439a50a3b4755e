//! `notify`: tell people — a chat webhook or a status-page API.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// Posts `message` to a Slack-compatible `webhook`, or sends `body` (a JSON template) to an
/// API `url` (a status page). Retried on failure. With `every`, repeats while the run is live,
/// until the `clock: stop` step succeeds.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Slack-compatible webhook URL, usually from a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// The chat message (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// An HTTP API to call instead of a webhook (e.g. Statuspage.io's incidents endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// HTTP method for `url` (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP headers for `url` (templates; put tokens in secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// JSON body for `url` (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Repeat every this long while the run is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
}

pub const OUTPUTS: &[&str] = &["status", "sent"];
pub const IDEMPOTENT: bool = true;

impl Notify {
    pub fn summary(&self) -> String {
        match (&self.webhook, &self.url) {
            (_, Some(_)) => "call the status-page API".into(),
            _ => "post to the chat webhook".into(),
        }
    }
}

impl Notify {
    pub(crate) fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        use super::at_key;
        match (&self.webhook, &self.url) {
            (None, None) => out.push(at_key(
                node,
                "kind",
                "a notify step needs `webhook:` (chat) or `url:` (an HTTP API)",
            )),
            (Some(_), Some(_)) => out.push(at_key(
                node,
                "url",
                "a notify step takes `webhook:` or `url:`, not both",
            )),
            (Some(_), None) if self.message.is_none() => out.push(at_key(
                node,
                "webhook",
                "a webhook notification needs `message:`",
            )),
            (None, Some(_)) if self.body.is_none() && self.message.is_none() => out.push(at_key(
                node,
                "url",
                "an API notification needs `body:` (a JSON template) or `message:`",
            )),
            _ => {}
        }
        if self.webhook.is_some() {
            for (key, given) in [
                ("method", self.method.is_some()),
                ("headers", !self.headers.is_empty()),
                ("body", self.body.is_some()),
            ] {
                if given {
                    out.push(at_key(
                        node,
                        key,
                        format!(
                            "`{key}` belongs to an API call (`url:`); a webhook gets `message:`"
                        ),
                    ));
                }
            }
        }
    }
}
