//! `smoke-test` by hand: each check as the queries, `curl` or program it amounts to, compared
//! the way drillbook compares.

use super::Section;
use super::shell::{Ctx, quote};
use crate::model::Step;
use crate::steps::smoke_test::SmokeTest;

pub(super) fn smoke_test(step: &Step, smoke: &SmokeTest, ctx: &mut Ctx, s: &mut Section) {
    let id = &step.id;
    s.text(
        "Every check below; any that fails fails the step, and nothing after it runs (the \
         application is never pointed at a copy that failed its smoke test).",
    );
    let mut setup = Vec::new();
    if let Some(database) = &smoke.database {
        ctx.uses(&["pg", "fail"]);
        setup.push(format!("{id}_url={}", ctx.w(database)));
    }
    let manifest = smoke
        .checks
        .value
        .iter()
        .any(|c| c.value.row_counts == Some(true) || c.value.large_objects == Some(true));
    if let (true, Some(store), Some(backup)) = (manifest, &smoke.store, &smoke.backup) {
        ctx.uses(&["fetch"]);
        setup.push(format!(
            "{id}_manifest=\"$RUNBOOK_DIR/{id}.manifest.json\"\nfetch {} {} \"${id}_manifest\"",
            ctx.w(store),
            ctx.w(&format!("{backup}.manifest.json"))
        ));
    }
    if !setup.is_empty() {
        s.sh(setup.join("\n"));
    }
    for (n, check) in smoke.checks.value.iter().enumerate() {
        let check = &check.value;
        let name = check
            .name
            .clone()
            .unwrap_or_else(|| format!("check {}", n + 1));
        let name_word = quote(&name);
        if let Some(sql) = &check.sql {
            let (query, _) = ctx.word(sql);
            match &check.expect {
                Some(expect) => {
                    ctx.uses(&["meets"]);
                    let (word, _) = ctx.word(expect);
                    let shown = ctx.prose(expect);
                    s.text(format!(
                        "**{name}**: the query's first value, which must be `{shown}`."
                    ));
                    s.sh(format!(
                        "value=$(sql \"${id}_url\" -c {query} | head -n 1)\n\
                         meets \"$value\" {word} || fail {name_word}\": $value, expected \"{}\n\
                         echo {name_word}\": $value\"",
                        quote(&shown)
                    ));
                }
                None => {
                    s.text(format!("**{name}**: the query must run."));
                    s.sh(format!("sql \"${id}_url\" -c {query} | head -n 1"));
                }
            }
        } else if check.row_counts == Some(true) {
            ctx.uses(&["rows_match"]);
            s.text(format!(
                "**{name}**: every table in the backup's manifest, counted in the restored database, \
                 holds exactly the rows the manifest recorded (counted in the dump's own snapshot)."
            ));
            s.sh(format!(
                "rows_match \"${id}_url\" \"$(pg_database \"${id}_url\")\" \"${id}_manifest\""
            ));
        } else if check.large_objects == Some(true) {
            ctx.uses(&["rows_match"]);
            s.text(format!(
                "**{name}**: as many large objects as the manifest recorded."
            ));
            s.sh(format!(
                "objects_match \"${id}_url\" \"$(pg_database \"${id}_url\")\" \"${id}_manifest\""
            ));
        } else if check.sequences == Some(true) {
            ctx.uses(&["sequences_ok"]);
            s.text(format!(
                "**{name}**: no sequence would hand out an id the column it feeds already holds \
                 (its next value is above the column's maximum)."
            ));
            s.sh(format!(
                "sequences_ok \"${id}_url\" && echo {name_word}\": none behind\""
            ));
        } else if let Some(url) = &check.http {
            ctx.uses(&["fail"]);
            let url = ctx.w(url);
            let status = check.status.unwrap_or(200);
            let mut sh = format!(
                "read -r code seconds < <(curl -sS -o \"$RUNBOOK_DIR/{id}.{n}.body\" -w '%{{http_code}} %{{time_total}}\\n' {url})\n\
                 [ \"$code\" = {status} ] || fail {name_word}\": HTTP $code (expected {status})\"\n"
            );
            let mut wording = format!(
                "**{name}**: `GET {}` answers HTTP {status}",
                ctx.prose(check.http.as_deref().unwrap_or_default())
            );
            if let Some(contains) = &check.contains {
                let (text, exact) = ctx.word(contains);
                sh.push_str(&format!(
                    "grep -qF -- {text} \"$RUNBOOK_DIR/{id}.{n}.body\" || fail {name_word}\": the body lacks the text\"\n"
                ));
                wording.push_str(&format!(
                    ", its body containing `{}`{}",
                    ctx.prose(contains),
                    if exact {
                        ""
                    } else {
                        " (fill in the `<…>` part: drillbook renders it)"
                    }
                ));
            }
            if let Some(latency) = check.max_latency {
                sh.push_str(&format!(
                    "awk -v t=\"$seconds\" 'BEGIN {{ exit !(t <= {}) }}' || fail {name_word}\": ${{seconds}}s, slower than {latency}\"\n",
                    latency.0.as_secs_f64()
                ));
                wording.push_str(&format!(", within {latency}"));
            }
            s.text(wording + ".");
            s.sh(sh);
        } else if let Some(argv) = &check.command {
            let words: Vec<String> = argv.iter().map(|a| ctx.w(a)).collect();
            let env: Vec<String> = check
                .env
                .iter()
                .map(|(k, v)| format!("{k}={}", ctx.w(v)))
                .collect();
            s.text(format!("**{name}**: the program must exit 0."));
            let prefix = if env.is_empty() {
                String::new()
            } else {
                format!("{} ", env.join(" "))
            };
            s.sh(format!("{prefix}{} || fail {name_word}", words.join(" ")));
        }
        s.check(format!("{name}: passed"));
    }
}
