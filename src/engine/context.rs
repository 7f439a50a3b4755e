//! What templates see at run time: `vars`, `secrets`, `steps.ID.outputs.X` / `steps.ID.status`,
//! `run.*` and `now()`. Step results are read through a shared, lazily consulted map, so a
//! render costs the same with 10 steps done or 1,000.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use minijinja::Value;
use minijinja::value::{Enumerator, Object, Serde};
use serde::Serialize;

use crate::duration::Duration;
use crate::event::{Mode, Status};
use crate::template;

/// A finished step as templates see it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StepView {
    pub status: Status,
    pub outputs: BTreeMap<String, serde_json::Value>,
    /// Why it was skipped, for messages about its undefined outputs.
    #[serde(skip)]
    pub skipped_reason: Option<String>,
}

#[derive(Debug, Default)]
struct Steps(RwLock<BTreeMap<String, StepView>>);

impl Object for Steps {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let steps = self.0.read().ok()?;
        let view = steps.get(key.as_str()?)?;
        // A step that did not succeed has no outputs: reading one is an error, not "".
        let outputs = match view.status {
            Status::Succeeded => Value::from(Serde(&view.outputs)),
            _ => Value::from(Serde(BTreeMap::<String, String>::new())),
        };
        Some(minijinja::context! { status => view.status.name(), outputs => outputs })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }
}

pub(crate) struct RunFields {
    pub id: String,
    pub mode: Mode,
    pub playbook: String,
    pub started_at: Timestamp,
    pub declared_at: Option<Timestamp>,
    pub rto: Option<Duration>,
    pub rpo: Option<Duration>,
    pub dry_run: bool,
}

pub(crate) struct Context {
    env: minijinja::Environment<'static>,
    vars: Value,
    secrets: Value,
    steps: Arc<Steps>,
    run: RunFields,
}

impl Context {
    pub(crate) fn new(
        vars: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, String>,
        run: RunFields,
    ) -> Context {
        Context {
            env: template::environment(),
            vars: Value::from(Serde(vars)),
            secrets: Value::from(Serde(secrets)),
            steps: Arc::new(Steps::default()),
            run,
        }
    }

    pub(crate) fn set_step(&self, id: &str, view: StepView) {
        if let Ok(mut steps) = self.steps.0.write() {
            steps.insert(id.to_string(), view);
        }
    }

    fn globals(&self, current_step: &str) -> Value {
        let clock_start = self.run.declared_at.unwrap_or(self.run.started_at);
        let elapsed = Timestamp::now().duration_since(clock_start);
        let run = minijinja::context! {
            id => &self.run.id,
            mode => match self.run.mode { Mode::Drill => "drill", Mode::Incident => "incident" },
            playbook => &self.run.playbook,
            started_at => self.run.started_at.to_string(),
            declared_at => clock_start.to_string(),
            elapsed => crate::report::format_duration(elapsed),
            rto => self.run.rto.map(|d| d.to_string()),
            rpo => self.run.rpo.map(|d| d.to_string()),
            current_step => current_step,
            eta => "unknown",
            status => "running",
            dry_run => self.run.dry_run,
        };
        minijinja::context! {
            vars => self.vars.clone(),
            secrets => self.secrets.clone(),
            steps => Value::from_dyn_object(self.steps.clone()),
            run => run,
        }
    }

    /// Renders one template string; plain strings come back as they are.
    pub(crate) fn render(&self, text: &str, current_step: &str) -> Result<String, String> {
        if !template::is_template(text) {
            return Ok(text.to_string());
        }
        self.env
            .render_str(text, self.globals(current_step))
            .map_err(|error| self.explain(text, &error, false))
    }

    /// Evaluates a `when:` expression.
    pub(crate) fn eval(&self, expression: &str, current_step: &str) -> Result<bool, String> {
        let compiled = self
            .env
            .compile_expression(expression)
            .map_err(|error| self.explain(expression, &error, true))?;
        compiled
            .eval(self.globals(current_step))
            .map(|value| value.is_true())
            .map_err(|error| self.explain(expression, &error, true))
    }

    /// Renders every template string inside a JSON value (a step's parameters).
    pub(crate) fn render_value(
        &self,
        value: &mut serde_json::Value,
        current_step: &str,
    ) -> Result<(), String> {
        match value {
            serde_json::Value::String(text) => *text = self.render(text, current_step)?,
            serde_json::Value::Array(items) => {
                for item in items {
                    self.render_value(item, current_step)?;
                }
            }
            serde_json::Value::Object(map) => {
                for item in map.values_mut() {
                    self.render_value(item, current_step)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A template error, with the likely reason when it reads a step that has no outputs.
    fn explain(&self, source: &str, error: &minijinja::Error, expression: bool) -> String {
        let detail = error
            .detail()
            .map_or_else(|| error.kind().to_string(), str::to_owned);
        let paths = if expression {
            template::expression_references(&self.env, source)
        } else {
            template::references(&self.env, source)
        }
        .unwrap_or_default();
        let steps = self.steps.0.read().ok();
        for path in &paths {
            let mut segments = path.split('.');
            if segments.next() != Some("steps") {
                continue;
            }
            let Some(id) = segments.next() else { continue };
            let view = steps.as_ref().and_then(|steps| steps.get(id).cloned());
            match view {
                Some(view) if view.status == Status::Succeeded => {}
                Some(view) => {
                    let why = view
                        .skipped_reason
                        .map(|reason| format!(" ({reason})"))
                        .unwrap_or_default();
                    return format!("`{path}` has no value: step `{id}` {}{why}", view.status);
                }
                None => return format!("`{path}` has no value: step `{id}` has not run"),
            }
        }
        format!("template `{source}`: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context::new(
            &BTreeMap::from([("store".to_string(), "/backups".to_string())]),
            &BTreeMap::from([("TOKEN".to_string(), "s3cr3t".to_string())]),
            RunFields {
                id: "r1".into(),
                mode: Mode::Drill,
                playbook: "p".into(),
                started_at: Timestamp::now(),
                declared_at: None,
                rto: None,
                rpo: None,
                dry_run: false,
            },
        )
    }

    #[test]
    fn renders_vars_secrets_outputs_and_run_fields() {
        let context = context();
        context.set_step(
            "assess",
            StepView {
                status: Status::Succeeded,
                outputs: BTreeMap::from([("backup".to_string(), "b/1.dump".into())]),
                skipped_reason: None,
            },
        );
        let text = context
            .render(
                "{{ vars.store }}/{{ steps.assess.outputs.backup }} {{ secrets.TOKEN }} {{ run.mode }} {{ run.current_step }}",
                "restore",
            )
            .expect("render");
        assert_eq!(text, "/backups/b/1.dump s3cr3t drill restore");
        assert!(
            context
                .eval("steps.assess.status == 'succeeded'", "x")
                .expect("eval")
        );
        assert!(!context.eval("run.mode == 'incident'", "x").expect("eval"));
    }

    #[test]
    fn a_skipped_step_has_no_outputs_and_says_why() {
        let context = context();
        context.set_step(
            "promote",
            StepView {
                status: Status::Skipped,
                outputs: BTreeMap::new(),
                skipped_reason: Some("live-only".into()),
            },
        );
        let error = context
            .render("{{ steps.promote.outputs.url }}", "smoke")
            .expect_err("undefined");
        assert_eq!(
            error,
            "`steps.promote.outputs.url` has no value: step `promote` skipped (live-only)"
        );
    }
}
