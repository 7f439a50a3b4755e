//! The checks that read from outside: an HTTP GET and a program. What they read goes through
//! bounded capture (`steps::capture`): a huge body or output costs no memory.

use std::collections::BTreeMap;

use super::{Check, Verdict};
use crate::steps::{StepContext, capture};

pub(super) async fn http(
    check: &Check,
    url: &str,
    index: usize,
    ctx: &StepContext<'_>,
) -> Result<Verdict, String> {
    let started = std::time::Instant::now();
    let response = ctx
        .http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET failed: {}", e.without_url()))?;
    let status = response.status().as_u16();
    let wanted_text = match &check.contains {
        Some(text) => Some((ctx.render)(text)?),
        None => None,
    };
    let path = capture::file(
        ctx.run_dir,
        ctx.id,
        ctx.attempt,
        &format!("check{}.body", index + 1),
    )
    .await?;
    // The body is searched as it streams by and kept bounded: a huge answer costs no memory.
    let body = capture::body(
        response,
        path,
        ctx.masker,
        capture::OUTPUT,
        wanted_text.as_deref(),
    )
    .await?;
    let latency = started.elapsed();
    let mut problems = Vec::new();
    let wanted = check.status.unwrap_or(200);
    if status != wanted {
        problems.push(format!("status {status}, expected {wanted}"));
    }
    let mut found = String::new();
    if let Some(text) = &wanted_text {
        let shown = ctx.masker.mask(text);
        if body.found {
            found = format!(", the body contains `{shown}`");
        } else {
            problems.push(format!("the body does not contain `{shown}`"));
        }
    }
    if let Some(limit) = check.max_latency
        && latency > limit.0
    {
        problems.push(format!("{} ms, slower than {limit}", latency.as_millis()));
    }
    let measured = format!(
        "status {status} in {} ms{found} ({})",
        latency.as_millis(),
        body.evidence("body")
    );
    Ok(if problems.is_empty() {
        Verdict::new(true, measured)
    } else {
        Verdict::new(false, format!("{measured}: {}", problems.join(", ")))
    })
}

pub(super) async fn command(
    argv: &[String],
    env: &BTreeMap<String, String>,
    index: usize,
    ctx: &StepContext<'_>,
) -> Result<Verdict, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("`command` is empty".into());
    };
    let mut command = tokio::process::Command::new(program);
    for (name, value) in env {
        command.env(name, (ctx.render)(value)?);
    }
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = crate::connect::child::spawn(&mut command)
        .map_err(|e| format!("cannot start `{}`: {e}", ctx.masker.mask(program)))?;
    let file = async |stream: &str| {
        let name = format!("check{}.{stream}", index + 1);
        capture::file(ctx.run_dir, ctx.id, ctx.attempt, &name).await
    };
    let stdout = capture::pipe(
        child.stdout.take(),
        file("stdout").await?,
        ctx.masker,
        capture::OUTPUT,
    );
    let stderr = capture::pipe(
        child.stderr.take(),
        file("stderr").await?,
        ctx.masker,
        capture::ERRORS,
    );
    let (status, stdout, stderr) = tokio::join!(child.wait(), stdout, stderr);
    let status =
        status.map_err(|e| format!("waiting for `{}` failed: {e}", ctx.masker.mask(program)))?;
    let (stdout, stderr) = (stdout?, stderr?);
    let last = stdout
        .text
        .lines()
        .chain(stderr.text.lines())
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("");
    let last: String = last.trim().chars().take(500).collect();
    // The captures are masked already; the status and line are masked again for the
    // parts that came from elsewhere.
    Ok(Verdict::new(
        status.success(),
        ctx.masker.mask(&format!(
            "{status} ({last}; {}; {})",
            stdout.evidence("stdout"),
            stderr.evidence("stderr")
        )),
    ))
}
