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

/// The steps templates can read; in a dry run (`placeholders`), every output reads as a
/// placeholder.
#[derive(Debug, Default)]
struct Steps(RwLock<BTreeMap<String, StepView>>, bool);

/// What a dry run shows for a value a step will only produce when it runs: `<step.output>`,
/// and for a field of it (a status page's `response.id`), `<step.output.field>`.
#[derive(Debug)]
struct Placeholder(String);

impl Object for Placeholder {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from_object(Placeholder(format!("{}.{key}", self.0))))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

impl Object for Steps {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let steps = self.0.read().ok()?;
        let id = key.as_str()?;
        let view = steps.get(id)?;
        // A step that did not succeed has no outputs: reading one is an error, not "".
        let outputs = match view.status {
            Status::Succeeded if self.1 => Value::from_object(Placeholder(id.to_string())),
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
    /// Where the RTO clock is projected to stop (`run.eta`, `run.projected`, `run.over_rto`);
    /// `None` for a dry run.
    pub projection: Option<Arc<crate::projection::Projection>>,
}

pub(crate) struct Context {
    env: minijinja::Environment<'static>,
    vars: Value,
    secrets: Value,
    /// The run's mode's `targets:`, rendered (`target.NAME`).
    targets: Value,
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
            targets: Value::from(Serde(BTreeMap::<String, String>::new())),
            steps: Arc::new(Steps(RwLock::default(), run.dry_run)),
            run,
        }
    }

    /// The same context with `target.NAME` reading `targets`.
    pub(crate) fn with_targets(mut self, targets: &BTreeMap<String, String>) -> Context {
        self.targets = Value::from(Serde(targets));
        self
    }

    pub(crate) fn set_step(&self, id: &str, view: StepView) {
        if let Ok(mut steps) = self.steps.0.write() {
            steps.insert(id.to_string(), view);
        }
    }

    fn globals(&self, current_step: &str) -> Value {
        let clock_start = self.run.declared_at.unwrap_or(self.run.started_at);
        let now = crate::clock::now();
        let elapsed = now.duration_since(clock_start);
        let projection = self.run.projection.as_deref();
        let projected = projection.and_then(|p| p.projected(now));
        // Without a projection, the time elapsed is all that is known.
        let over_rto = match projection {
            Some(projection) => projection.over_rto(now),
            None => self.run.rto.is_some_and(|rto| elapsed > rto.signed()),
        };
        let eta = projection.and_then(|p| p.eta(now)).map_or_else(
            || "unknown".to_string(),
            |at| at.strftime("%H:%M UTC").to_string(),
        );
        let run = minijinja::context! {
            id => &self.run.id,
            mode => self.run.mode.name(),
            playbook => &self.run.playbook,
            started_at => self.run.started_at.to_string(),
            declared_at => clock_start.to_string(),
            elapsed => crate::format::format_duration(elapsed),
            rto => self.run.rto.map(|d| d.to_string()),
            rpo => self.run.rpo.map(|d| d.to_string()),
            current_step => current_step,
            eta => eta,
            projected => projected.map_or_else(|| "unknown".to_string(), crate::format::format_duration),
            over_rto => over_rto,
            status => "running",
            dry_run => self.run.dry_run,
        };
        minijinja::context! {
            vars => self.vars.clone(),
            secrets => self.secrets.clone(),
            target => self.targets.clone(),
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
                started_at: crate::clock::now(),
                declared_at: None,
                rto: None,
                rpo: None,
                dry_run: false,
                projection: None,
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
    fn run_fields_project_the_clock_stop_from_history() {
        use crate::fixtures::{Journal, planned};
        use crate::predict::History;
        let mut stop = planned("recover", "command");
        stop.clock_stop = true;
        // The one earlier run took an hour against a 30 minute objective.
        let mut past = Journal::start(vec![stop.clone()], Some("30m"), None, None);
        past.ok("recover", 0, 3_600).finish(3_600, 3);
        let past = past.state();
        let started_at = crate::clock::now();
        let rto = Duration::parse("30m").ok();
        let projection = Arc::new(crate::projection::Projection::new(
            crate::predict::PlanStep::of_plan(&[stop]),
            &History::from_runs(&[&past]),
            rto,
            started_at,
        ));
        let context = Context::new(
            &BTreeMap::new(),
            &BTreeMap::new(),
            RunFields {
                id: "r2".into(),
                mode: Mode::Drill,
                playbook: "p".into(),
                started_at,
                declared_at: None,
                rto,
                rpo: None,
                dry_run: false,
                projection: Some(projection),
            },
        );
        assert!(context.eval("run.over_rto", "notify").expect("eval"));
        let projected = context
            .render("{{ run.projected }}", "notify")
            .expect("render");
        assert!(
            projected.starts_with("1h00m") || projected.starts_with("59m"),
            "{projected}"
        );
        let eta = context.render("{{ run.eta }}", "notify").expect("render");
        let expected = (started_at + jiff::SignedDuration::from_hours(1))
            .strftime("%H:%M UTC")
            .to_string();
        assert_eq!(eta, expected);

        // Without history nothing is projected, and a young run is not over its RTO.
        let plain = context_with_rto();
        assert_eq!(
            plain
                .render("{{ run.eta }} {{ run.projected }}", "x")
                .expect("render"),
            "unknown unknown"
        );
        assert!(!plain.eval("run.over_rto", "x").expect("eval"));
    }

    fn context_with_rto() -> Context {
        let mut fields = context().run;
        fields.rto = Duration::parse("30m").ok();
        Context::new(&BTreeMap::new(), &BTreeMap::new(), fields)
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
