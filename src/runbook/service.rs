//! `promote`, `flush` and `notify` by hand: `pg_promote()` through psql, the env file rewritten
//! beside itself and renamed, `redis-cli FLUSHDB` on the expected host, `curl` to the webhook
//! or API — secrets in the environment or a curl config read from a pipe, never in arguments.

use super::Section;
use super::shell::{Ctx, quote};
use crate::model::Step;
use crate::steps::flush::{Flush, FlushScope};
use crate::steps::notify::Notify;
use crate::steps::promote::{Promote, PromoteMethod};

pub(super) fn promote(step: &Step, promote: &Promote, ctx: &mut Ctx, s: &mut Section) {
    let _ = step;
    ctx.uses(&["fail"]);
    match promote.method {
        PromoteMethod::Standby => {
            ctx.uses(&["pg"]);
            let standby = ctx.w(promote.standby.as_deref().unwrap_or_default());
            let wait = promote.wait.map_or(60, |w| w.0.as_secs().max(1));
            s.text(format!(
                "`pg_promote()` on the standby (waiting up to {wait} s), unless it is a primary \
                 already; then it must be out of recovery."
            ));
            s.sh(format!(
                "if [ \"$(sql {standby} -c 'SELECT pg_is_in_recovery()')\" = t ]; then\n  \
                 [ \"$(sql {standby} -c 'SELECT pg_promote(true, {wait})')\" = t ] || fail \"the standby did not finish promoting within {wait} s\"\n\
                 else\n  echo \"already a primary: not promoted again\"\nfi\n\
                 [ \"$(sql {standby} -c 'SELECT pg_is_in_recovery()')\" = f ] || fail \"the standby is still in recovery\""
            ));
            s.check("`SELECT pg_is_in_recovery()` on the promoted server says `f`");
        }
        PromoteMethod::Repoint => {
            let variable = promote
                .variable
                .as_deref()
                .map(|v| ctx.prose(v))
                .unwrap_or_else(|| "DATABASE_URL".into());
            let url = ctx.w(promote.url.as_deref().unwrap_or_default());
            if let Some(file) = &promote.env_file {
                ctx.uses(&["set_env_var"]);
                let file = ctx.w(file);
                s.text(format!(
                    "`{variable}` in the application's env file becomes the new value: every line \
                     that sets it (or a line added), its quoting kept, the new file written beside the \
                     old one and renamed over it, the old one kept as `FILE.previous` (to roll back, \
                     rename it back). The value goes through the environment, never a command line."
                ));
                s.sh(format!(
                    "NEW_VALUE={url} set_env_var {file} {variable}\n\
                     echo \"lines setting {variable} now: $(grep -c -E '^[[:space:]]*(export[[:space:]]+)?{variable}[[:space:]]*=' {file})\""
                ));
                s.check(format!(
                    "{file} sets {variable} to the new value (the old file is {file}.previous); the application reads it (restart it or let it reload, as it needs)"
                ).replace('"', "`"));
            } else if let Some(endpoint) = &promote.endpoint {
                let endpoint = ctx.w(endpoint);
                s.text(format!(
                    "The new value sent to the application's secret endpoint: `PUT` of \
                     `{{\"name\": \"{variable}\", \"value\": …}}` as JSON; any 2xx answer is a yes."
                ));
                s.sh(format!(
                    "NEW_VALUE={url} jq -n --arg name {} '{{name: $name, value: $ENV.NEW_VALUE}}' |\n  \
                     curl -fsS -X PUT -H 'Content-Type: application/json' --data-binary @- -K <(printf 'url = \"%s\"\\n' {endpoint})",
                    quote(&variable)
                ));
                s.check("the endpoint answered 2xx, and the application uses the new value");
            } else if let Some(secret) = &promote.aws_secret {
                super::secrets::promote(step, secret, &url, ctx, s);
            }
        }
    }
}

pub(super) fn flush(step: &Step, flush: &Flush, ctx: &mut Ctx, s: &mut Section) {
    let id = &step.id;
    ctx.uses(&["rcli", "fail"]);
    let redis = ctx.w(&flush.redis);
    let mut sh = format!("{id}_redis={redis}\n");
    if let Some(host) = &flush.expect_host {
        let host = ctx.w(host);
        sh.push_str(&format!(
            "[ \"$(redis_host \"${id}_redis\" | tr '[:upper:]' '[:lower:]')\" = \"$(printf '%s' {host} | tr '[:upper:]' '[:lower:]')\" ] ||\n  \
             fail \"refusing to flush Redis at $(redis_host \"${id}_redis\"): this step expects host \"{host}\n"
        ));
    }
    let (count, command, what) = match (&flush.pattern, flush.scope) {
        (Some(pattern), _) => {
            let pattern = ctx.w(pattern);
            let batch = flush.batch.unwrap_or(1000);
            (
                "DBSIZE",
                format!(
                    "( redis_connect \"${id}_redis\"\n  redis-cli \"${{RCLI[@]}}\" --scan --pattern {pattern} | xargs -r -d '\\n' -n {batch} redis-cli \"${{RCLI[@]}}\" UNLINK >/dev/null )"
                ),
                format!(
                    "The keys matching `{}` in the URL's database are deleted (SCAN, then UNLINK {batch} at a time).",
                    ctx.prose(flush.pattern.as_deref().unwrap_or_default())
                ),
            )
        }
        (None, FlushScope::Db) => (
            "DBSIZE",
            format!("rcli \"${id}_redis\" FLUSHDB"),
            "`FLUSHDB`: every key of the URL's database goes (the others stay).".to_string(),
        ),
        (None, FlushScope::All) => (
            "INFO keyspace",
            format!("rcli \"${id}_redis\" FLUSHALL ASYNC"),
            "`FLUSHALL ASYNC`: every key of every database on the server goes.".to_string(),
        ),
    };
    s.text(format!(
        "{what}{} The key count before and after is the evidence.",
        if flush.expect_host.is_some() {
            " First the URL's host must be the expected one, so that a wrong URL never flushes another cache."
        } else {
            ""
        }
    ));
    sh.push_str(&format!(
        "echo \"keys before: $(rcli \"${id}_redis\" {count} | tr '\\r\\n' '  ')\"\n{command}\n\
         echo \"keys after: $(rcli \"${id}_redis\" {count} | tr '\\r\\n' '  ')\""
    ));
    s.sh(sh);
    s.check("the key count after is 0 (or only what the application wrote since)");
}

pub(super) fn notify(step: &Step, notify: &Notify, ctx: &mut Ctx, s: &mut Section) {
    let _ = step;
    let every = notify
        .every
        .map(|every| {
            let stop = ctx
                .playbook
                .clock_stop()
                .map(|s| format!(" until `{}` succeeds", s.id))
                .unwrap_or_default();
            format!(" Send it again every {every}{stop}, with what is true then.")
        })
        .unwrap_or_default();
    if let Some(webhook) = &notify.webhook {
        let webhook = ctx.w(webhook);
        let (message, exact) = ctx.word(notify.message.as_deref().unwrap_or_default());
        s.text(format!(
            "A message to the chat webhook (Slack-compatible: `{{\"text\": …}}`).{}{every}",
            if exact {
                ""
            } else {
                " Fill in the `<…>` parts first (drillbook knows them as the run goes: the time, the step, the projection)."
            }
        ));
        s.sh(format!(
            "MESSAGE={message} jq -n '{{text: $ENV.MESSAGE}}' |\n  \
             curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @- -K <(printf 'url = \"%s\"\\n' {webhook})"
        ));
    } else if let Some(url) = &notify.url {
        let url = ctx.w(url);
        let method = notify.method.clone().unwrap_or_else(|| "POST".into());
        let mut config = vec!["url = \"%s\"\\n".to_string()];
        let mut values = vec![url];
        for (name, value) in &notify.headers {
            config.push(format!("header = \"{name}: %s\"\\n"));
            values.push(ctx.w(value));
        }
        let body = notify
            .body
            .as_deref()
            .or(notify.message.as_deref())
            .unwrap_or_default();
        let (body, exact) = ctx.word(body);
        s.text(format!(
            "An HTTP `{method}` to the API (e.g. the status page), its headers and URL read by curl from \
             a pipe, not its command line (they hold tokens).{}{every}",
            if exact {
                ""
            } else {
                " Fill in the `<…>` parts of the body first (what drillbook renders during the run)."
            }
        ));
        s.sh(format!(
            "printf '%s' {body} |\n  curl -fsS -X {method} --data-binary @- -K <(printf '{}' {})",
            config.join(""),
            values.join(" ")
        ));
    }
    if let Some(file) = &notify.file {
        let file = ctx.w(file);
        let (message, exact) = ctx.word(notify.message.as_deref().unwrap_or_default());
        s.text(format!(
            "The message written to a file (replaced whole), e.g. the block for the release notes.{}",
            if exact {
                ""
            } else {
                " Fill in the `<…>` parts first: they are what the steps above printed."
            }
        ));
        s.sh(format!("printf '%s\\n' {message} > {file}\ncat {file}"));
        s.check("the file holds the message");
        return;
    }
    s.check("the message arrived (a 2xx answer; curl says nothing then)");
}
