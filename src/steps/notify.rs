//! `notify`: tell people — a chat webhook, a status-page API, or a file (release notes).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// Posts `message` to a Slack-compatible `webhook`, sends `body` (a JSON template) to an
/// API `url` (a status page), or writes `message` to a `file` (release notes to paste).
/// Retried on failure. With `every`, repeats while the run is live,
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
    /// A file to write `message` to instead (replaced whole; secrets masked), e.g. the
    /// Markdown block for release notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Repeat every this long while the run is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
}

impl Notify {
    /// `method`, `headers` and `body` belong to an API call (`url:`): refused on `what`.
    fn no_api_keys(
        &self,
        node: &crate::loader::node::Node,
        what: &str,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        for (key, given) in [
            ("method", self.method.is_some()),
            ("headers", !self.headers.is_empty()),
            ("body", self.body.is_some()),
        ] {
            if given {
                out.push(super::at_key(
                    node,
                    key,
                    format!("`{key}` belongs to an API call (`url:`); {what} gets `message:`"),
                ));
            }
        }
    }
}

impl super::StepKind for Notify {
    const NAME: &'static str = "notify";
    const OUTPUTS: &'static [&'static str] = &["status", "sent", "to", "message", "response"];
    const IDEMPOTENT: bool = true;
    const SENDS_MESSAGES: bool = true;

    fn summary(&self) -> String {
        match (&self.webhook, &self.url, &self.file) {
            (_, Some(_), _) => "call the status-page API".into(),
            (None, None, Some(file)) => format!("write the message to {file}"),
            _ => "post to the chat webhook".into(),
        }
    }

    /// A message posted is a write to the service that receives it (a status page).
    fn writes(&self) -> Vec<crate::steps::Write<'_>> {
        use crate::steps::Write;
        use crate::target::Expect;
        let webhook = self
            .webhook
            .iter()
            .map(|url| Write::of("webhook", url, Expect::Http));
        let api = self
            .url
            .iter()
            .map(|url| Write::of("url", url, Expect::Http));
        let file = self
            .file
            .iter()
            .map(|path| Write::of("file", path, Expect::File));
        webhook.chain(api).chain(file).collect()
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        use super::at_key;
        if let Some(_file) = &self.file {
            if self.webhook.is_some() || self.url.is_some() {
                out.push(at_key(
                    node,
                    "file",
                    "a notify step takes one of `webhook:`, `url:` or `file:`",
                ));
            } else if self.message.is_none() {
                out.push(at_key(node, "file", "writing to a file needs `message:`"));
            }
            self.no_api_keys(node, "a file", out);
            return;
        }
        match (&self.webhook, &self.url) {
            (None, None) => out.push(at_key(
                node,
                "kind",
                "a notify step needs `webhook:` (chat), `url:` (an HTTP API) or `file:`",
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
            self.no_api_keys(node, "a webhook", out);
        }
    }

    /// Sends the message once. The runner retries (notify steps default to 3 attempts).
    ///
    /// What was sent, and where to, goes into the outputs (`to`, `message`) whether or not the
    /// receiver accepted it: people were (or were not) told something, and the post-mortem's
    /// communication log is built from exactly that.
    async fn run(&self, ctx: &super::StepContext<'_>) -> Result<super::Done, super::StepFailure> {
        use super::StepFailure;
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        if let (None, None, Some(file)) = (&self.webhook, &self.url, &self.file) {
            let message = ctx
                .masker
                .mask(&render(self.message.as_deref().unwrap_or_default())?);
            let path = std::path::PathBuf::from(render(file)?);
            write_file(&path, &message)
                .await
                .map_err(|e| StepFailure::new(format!("{}: {e}", path.display())))?;
            let mut outputs = BTreeMap::new();
            outputs.insert("to".to_string(), format!("file {}", path.display()).into());
            outputs.insert("message".to_string(), kept(&message, ctx.masker).into());
            outputs.insert("sent".into(), jiff::Timestamp::now().to_string().into());
            return Ok(super::Done {
                outputs,
                evidence: vec![format!(
                    "wrote {} line(s) to {}",
                    message.lines().count(),
                    path.display()
                )],
            });
        }
        let (request, to, message) = match (&self.webhook, &self.url) {
            (Some(webhook), _) => {
                let message = render(self.message.as_deref().unwrap_or_default())?;
                let webhook = render(webhook)?;
                let to = webhook_target(&webhook);
                let request = ctx
                    .http
                    .post(webhook)
                    .json(&serde_json::json!({ "text": message }));
                (request, to, message)
            }
            (None, Some(url)) => {
                let method = self.method.as_deref().unwrap_or("POST");
                let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| StepFailure::new(format!("`{method}` is not an HTTP method")))?;
                let url = render(url)?;
                let to = format!("{method} {}", api_target(&url, ctx.masker));
                let mut request = ctx.http.request(method, url);
                for (name, value) in &self.headers {
                    request = request.header(name, render(value)?);
                }
                let (body, sent) = match (&self.body, &self.message) {
                    (Some(body), _) => {
                        let body = render(body)?;
                        let value =
                            serde_json::from_str::<serde_json::Value>(&body).map_err(|e| {
                                StepFailure::new(format!("`body` did not render to JSON: {e}"))
                            })?;
                        (value, body)
                    }
                    (None, message) => {
                        let text = render(message.as_deref().unwrap_or_default())?;
                        (serde_json::json!({ "text": text }), text)
                    }
                };
                (request.json(&body), to, sent)
            }
            (None, None) => return Err(StepFailure::new("nothing to notify")),
        };
        let mut outputs = BTreeMap::new();
        outputs.insert("to".to_string(), to.into());
        outputs.insert("message".to_string(), kept(&message, ctx.masker).into());
        let response = tokio::select! {
            response = request.send() => response,
            _ = ctx.cancel.cancelled() => return Err(StepFailure::cancelled()),
        };
        // reqwest errors can quote the URL, and a webhook URL is a secret: say only what failed.
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                let mut failure = StepFailure::new(format!(
                    "could not send the notification: {}",
                    describe_http_error(&error)
                ));
                failure.outputs = outputs;
                return Err(failure);
            }
        };
        let status = response.status();
        outputs.insert("status".into(), status.as_u16().into());
        outputs.insert("sent".into(), jiff::Timestamp::now().to_string().into());
        // Whatever the receiver answers, only a bounded head and tail of it is kept.
        let file = super::output_file(ctx, "response").await?;
        let body = super::capture::body(response, file, ctx.masker, super::capture::OUTPUT, None)
            .await
            .map_err(|error| StepFailure {
                outputs: outputs.clone(),
                ..StepFailure::new(error)
            })?;
        if !status.is_success() {
            let body: String = body.text.chars().take(200).collect();
            let mut failure = StepFailure::new(format!(
                "the receiver answered HTTP {status}: {}",
                body.trim()
            ));
            // A 4xx (a revoked webhook, a bad payload) answers the same next time.
            failure.permanent = crate::connect::permanent_http_status(status.as_u16());
            failure.outputs = outputs;
            return Err(failure);
        }
        // What the API answered, for later steps: a status page returns the incident it
        // opened, whose id the update that resolves it needs
        // (`{{ steps.open.outputs.response.id }}`). JSON when it is JSON, else the text
        // (masked as it was captured).
        let parsed = (body.size <= 16 * 1024 && body.omitted == 0)
            .then(|| serde_json::from_str::<serde_json::Value>(&body.text).ok())
            .flatten();
        let answer = match parsed {
            Some(mut json) => {
                ctx.masker.mask_json(&mut json);
                json
            }
            None => kept(&body.text, ctx.masker).into(),
        };
        outputs.insert("response".into(), answer);
        Ok(super::Done {
            outputs,
            evidence: vec![format!("delivered: HTTP {status}")],
        })
    }
}

/// `text` into `path` whole: a temporary file beside it, renamed over it.
async fn write_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".partial-{}", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    let written = async {
        tokio::fs::write(&temporary, text).await?;
        tokio::fs::rename(&temporary, path).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&temporary).await;
    }
    written
}

/// How much of a message the journal keeps: enough to read what people were told, without a
/// large status-page body bloating every record (and every repeat).
const KEPT_CHARS: usize = 2_000;

/// The message as the journal keeps it: masked first, then cut, so that a cut can never leave
/// half a secret that the masker would no longer recognise.
fn kept(message: &str, masker: &crate::secrets::Masker) -> String {
    let masked = masker.mask(message);
    match masked.char_indices().nth(KEPT_CHARS) {
        Some((end, _)) => format!("{}…", &masked[..end]),
        None => masked,
    }
}

/// "webhook hooks.slack.com": a webhook URL is a credential (whoever has it can post), so only
/// its host is named.
fn webhook_target(url: &str) -> String {
    match reqwest::Url::parse(url).ok().as_ref().and_then(authority) {
        Some(host) => format!("webhook {host}"),
        None => "webhook".into(),
    }
}

/// "status.example.com/api/v1/incidents": host and path, never the user, password, query or
/// fragment (where tokens travel). A secret inside the path is masked; when the URL as a whole
/// is a secret, only its host is named.
fn api_target(url: &str, masker: &crate::secrets::Masker) -> String {
    if let Ok(masked) = reqwest::Url::parse(&masker.mask(url))
        && let Some(host) = authority(&masked)
    {
        let path = masked.path();
        return format!("{host}{}", if path == "/" { "" } else { path });
    }
    reqwest::Url::parse(url)
        .ok()
        .as_ref()
        .and_then(authority)
        .unwrap_or_else(|| "the API".into())
}

/// Host and, when not the scheme's default, port.
fn authority(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Masker;

    #[test]
    fn a_webhook_is_named_by_its_host_only() {
        assert_eq!(
            webhook_target("https://hooks.slack.com/services/T000/B000/abcdef"),
            "webhook hooks.slack.com"
        );
        assert_eq!(
            webhook_target("http://127.0.0.1:8080/hooks/x"),
            "webhook 127.0.0.1:8080"
        );
        assert_eq!(webhook_target("not a url"), "webhook");
    }

    #[test]
    fn an_api_is_named_by_host_and_path_without_credentials_or_query() {
        let none = Masker::default();
        assert_eq!(
            api_target(
                "https://bot:pw@status.example.com/api/v1/incidents?token=t#x",
                &none
            ),
            "status.example.com/api/v1/incidents"
        );
        assert_eq!(
            api_target("https://status.example.com/", &none),
            "status.example.com"
        );
        let page = Masker::new(["page-7f3a"]).expect("masker");
        assert_eq!(
            api_target("https://api.example.com/pages/page-7f3a/incidents", &page),
            "api.example.com/pages/***/incidents"
        );
        // The whole URL is a secret: its host is all that is named.
        let whole = Masker::new(["https://api.example.com/t/abc"]).expect("masker");
        assert_eq!(
            api_target("https://api.example.com/t/abc", &whole),
            "api.example.com"
        );
    }

    #[test]
    fn a_kept_message_is_masked_before_it_is_cut() {
        let secret = "s3cr3t-value";
        let masker = Masker::new([secret]).expect("masker");
        // The secret straddles the cut: cut first, and its first half would survive.
        let message = format!("{}{secret} and more", "x".repeat(KEPT_CHARS - 4));
        let cut = kept(&message, &masker);
        assert!(!cut.contains("s3cr"), "{cut}");
        assert!(cut.ends_with('…'), "{cut}");
        assert_eq!(cut.chars().count(), KEPT_CHARS + 1);
        assert_eq!(kept(&"é".repeat(10), &masker), "é".repeat(10));
    }
}
