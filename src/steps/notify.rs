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

impl Notify {
    /// Sends the message once. The runner retries (notify steps default to 3 attempts).
    pub(crate) async fn run(
        &self,
        ctx: &super::StepContext<'_>,
    ) -> Result<super::Done, super::StepFailure> {
        use super::StepFailure;
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let request = match (&self.webhook, &self.url) {
            (Some(webhook), _) => {
                let message = render(self.message.as_deref().unwrap_or_default())?;
                ctx.http
                    .post(render(webhook)?)
                    .json(&serde_json::json!({ "text": message }))
            }
            (None, Some(url)) => {
                let method = self.method.as_deref().unwrap_or("POST");
                let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| StepFailure::new(format!("`{method}` is not an HTTP method")))?;
                let mut request = ctx.http.request(method, render(url)?);
                for (name, value) in &self.headers {
                    request = request.header(name, render(value)?);
                }
                let body = match (&self.body, &self.message) {
                    (Some(body), _) => {
                        let body = render(body)?;
                        serde_json::from_str::<serde_json::Value>(&body).map_err(|e| {
                            StepFailure::new(format!("`body` did not render to JSON: {e}"))
                        })?
                    }
                    (None, message) => serde_json::json!({
                        "text": render(message.as_deref().unwrap_or_default())?
                    }),
                };
                request.json(&body)
            }
            (None, None) => return Err(StepFailure::new("nothing to notify")),
        };
        let response = tokio::select! {
            response = request.send() => response,
            _ = ctx.cancel.cancelled() => return Err(StepFailure::cancelled()),
        };
        // reqwest errors can quote the URL, and a webhook URL is a secret: say only what failed.
        let response = response.map_err(|e| {
            StepFailure::new(format!(
                "could not send the notification: {}",
                describe_http_error(&e)
            ))
        })?;
        let status = response.status();
        let sent = jiff::Timestamp::now().to_string();
        let mut done = super::Done::default();
        done.outputs.insert("status".into(), status.as_u16().into());
        done.outputs.insert("sent".into(), sent.into());
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            let mut failure = StepFailure::new(format!(
                "the receiver answered HTTP {status}: {}",
                ctx.masker.mask(body.trim())
            ));
            failure.outputs = done.outputs;
            return Err(failure);
        }
        done.evidence.push(format!("delivered: HTTP {status}"));
        Ok(done)
    }
}

fn describe_http_error(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_builder() {
        "the URL is not valid"
    } else if error.is_redirect() {
        "too many redirects"
    } else {
        "request failed"
    }
}
