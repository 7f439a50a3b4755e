//! Templates in playbook strings (minijinja): `{{ vars.X }}`, `{{ secrets.X }}`,
//! `{{ steps.ID.outputs.X }}`, `{{ run.id }}`, `{{ now() }}`, `{{ now() | date("%Y-%m-%d") }}`.

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

/// What `run.X` offers to templates.
pub const RUN_FIELDS: &[&str] = &[
    "id",
    "mode",
    "playbook",
    "started_at",
    "declared_at",
    "elapsed",
    "rto",
    "rpo",
    "current_step",
    "eta",
    "projected",
    "over_rto",
    "status",
    "dry_run",
];

/// The roots a template may start from.
pub const ROOTS: &[&str] = &["vars", "secrets", "target", "steps", "run", "now"];

/// The environment every playbook template is compiled and rendered in. Undefined values are
/// errors: a recovery step must never run with an empty string where a URL was meant.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_recursion_limit(64);
    env.add_function("now", now);
    env.add_filter("date", date);
    env.add_filter("b64encode", b64encode);
    env
}

pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// `text` with each `{{ … }}` replaced by what `known` says of its expression, or else by a
/// named placeholder, `‹steps.assess.outputs.backup›`: for plans and prompts, which show what
/// they can before a run has the values. Text outside the braces is kept as it is; an
/// unclosed `{{` stays as written.
pub fn placeholders(text: &str, known: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        let expression = rest[open + 2..open + 2 + close]
            .trim()
            .trim_matches('-')
            .trim();
        match known(expression) {
            Some(value) => out.push_str(&value),
            None => {
                out.push('‹');
                out.push_str(expression);
                out.push('›');
            }
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    out
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Formats an RFC 3339 timestamp with strftime directives (default `%Y-%m-%d %H:%M:%S UTC`).
fn date(value: String, format: Option<String>) -> Result<String, Error> {
    let timestamp: jiff::Timestamp = value.parse().map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("`{value}` is not an RFC 3339 timestamp: {e}"),
        )
    })?;
    let format = format.unwrap_or_else(|| "%Y-%m-%d %H:%M:%S UTC".into());
    Ok(timestamp.strftime(&format).to_string())
}

/// Standard base64 (with padding), e.g. for an HTTP Basic `Authorization` header.
fn b64encode(value: String) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(value)
}

/// The dotted variable paths a template reads (`steps.assess.outputs.backup`), or the
/// template's syntax error.
pub(crate) fn references(env: &Environment, source: &str) -> Result<Vec<String>, Error> {
    let template = env.template_from_str(source)?;
    let mut paths: Vec<String> = template.undeclared_variables(true).into_iter().collect();
    paths.sort();
    Ok(paths)
}

/// The same for a `when:` expression.
pub(crate) fn expression_references(env: &Environment, source: &str) -> Result<Vec<String>, Error> {
    let expression = env.compile_expression(source)?;
    let mut paths: Vec<String> = expression.undeclared_variables(true).into_iter().collect();
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_references() {
        let env = environment();
        let refs = references(
            &env,
            "{{ steps.assess.outputs.backup }} in {{ vars.store }}",
        )
        .unwrap();
        assert_eq!(refs, ["steps.assess.outputs.backup", "vars.store"]);
        let refs = expression_references(&env, "run.mode == 'incident'").unwrap();
        assert_eq!(refs, ["run.mode"]);
    }

    #[test]
    fn dates_format() {
        let env = environment();
        let text = env
            .render_str("{{ '2026-11-24T10:00:00Z' | date('%Y-%m-%d') }}", ())
            .unwrap();
        assert_eq!(text, "2026-11-24");
        assert!(env.render_str("{{ now() }}", ()).unwrap().ends_with('Z'));
    }

    #[test]
    fn undefined_is_an_error() {
        let env = environment();
        assert!(env.render_str("{{ vars.missing }}", ()).is_err());
    }

    #[test]
    fn placeholders_name_what_is_not_known_yet() {
        let known = |expression: &str| (expression == "vars.store").then(|| "s3://backups".into());
        assert_eq!(
            placeholders(
                "restore {{ steps.assess.outputs.backup }} from {{vars.store}} into {{ secrets.URL | trim }}",
                known
            ),
            "restore ‹steps.assess.outputs.backup› from s3://backups into ‹secrets.URL | trim›"
        );
        assert_eq!(placeholders("no templates", known), "no templates");
        assert_eq!(
            placeholders("cut {{ vars.store", known),
            "cut {{ vars.store"
        );
    }
}
