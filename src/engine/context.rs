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
use crate::secrets::Masker;
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

/// The values a template reads, in one of three flavours. `Real` is what steps act on.
/// `Shown` has each secret as `***`: what the journal, prompts and reports show of a rendered
/// text, so a secret is hidden where a template puts it however short it is. `Canary` has each
/// secret replaced by a stand-in of the same length: rendering a text both ways tells which
/// part of it came from a secret (through `upper`, `b64encode`, slicing, `~`…), and that part
/// is masked from then on wherever it appears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    Real,
    Shown,
    Canary,
}

const FLAVOURS: [Flavour; 3] = [Flavour::Real, Flavour::Shown, Flavour::Canary];

/// `vars`, `secrets` and `target` in one flavour.
#[derive(Default)]
struct Values {
    vars: Value,
    secrets: Value,
    targets: Value,
}

pub(crate) struct Context {
    env: minijinja::Environment<'static>,
    /// Indexed by [`Flavour`].
    values: [Values; 3],
    has_secrets: bool,
    /// The variables as shown: secrets as `***`, masked.
    shown_vars: BTreeMap<String, String>,
    masker: Masker,
    steps: Arc<Steps>,
    run: RunFields,
}

impl Context {
    /// A context reading `secrets`, with no variables or targets yet. Values derived from a
    /// secret as templates are rendered are added to `masker`.
    pub(crate) fn new(
        secrets: &BTreeMap<String, String>,
        masker: Masker,
        run: RunFields,
    ) -> Context {
        let flavoured = |flavour: Flavour| -> BTreeMap<String, String> {
            secrets
                .iter()
                .map(|(name, value)| {
                    let value = match flavour {
                        Flavour::Real => value.clone(),
                        Flavour::Shown => crate::secrets::MASK.to_string(),
                        Flavour::Canary => canary(value),
                    };
                    (name.clone(), value)
                })
                .collect()
        };
        let values = FLAVOURS.map(|flavour| Values {
            secrets: Value::from(Serde(flavoured(flavour))),
            ..Values::default()
        });
        Context {
            env: template::environment(),
            values,
            has_secrets: !secrets.is_empty(),
            shown_vars: BTreeMap::new(),
            masker,
            steps: Arc::new(Steps(RwLock::default(), run.dry_run)),
            run,
        }
    }

    /// Renders `vars` (templates reading secrets and `run`) in every flavour, for
    /// `vars.NAME`. Returns the real values; `Err` names the variable that does not render.
    pub(crate) fn set_vars(
        &mut self,
        vars: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        let rendered = self
            .render_map(vars)
            .map_err(|(name, e)| format!("variable `{name}`: {e}"))?;
        for (flavour, values) in FLAVOURS.iter().zip(rendered.iter()) {
            self.values[*flavour as usize].vars = Value::from(Serde(values));
        }
        self.shown_vars = rendered[Flavour::Shown as usize]
            .iter()
            .map(|(name, value)| (name.clone(), self.masker.mask(value)))
            .collect();
        Ok(rendered[Flavour::Real as usize].clone())
    }

    /// Renders the run's mode's `targets:` in every flavour, for `target.NAME`. Returns the
    /// real values.
    pub(crate) fn set_targets(
        &mut self,
        targets: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        let rendered = self
            .render_map(targets)
            .map_err(|(name, e)| format!("target `{name}`: {e}"))?;
        for (flavour, values) in FLAVOURS.iter().zip(rendered.iter()) {
            self.values[*flavour as usize].targets = Value::from(Serde(values));
        }
        Ok(rendered[Flavour::Real as usize].clone())
    }

    /// What masks secrets, and the values derived from them, in free text.
    pub(crate) fn masker(&self) -> &Masker {
        &self.masker
    }

    /// The variables as the journal keeps them: secrets shown as `***`.
    pub(crate) fn shown_vars(&self) -> &BTreeMap<String, String> {
        &self.shown_vars
    }

    /// Each entry of `map` rendered in each flavour.
    fn render_map(
        &self,
        map: &BTreeMap<String, String>,
    ) -> Result<[BTreeMap<String, String>; 3], (String, String)> {
        let mut out: [BTreeMap<String, String>; 3] = Default::default();
        for (name, text) in map {
            let [real, shown, canary] = self
                .render_flavours(text, "")
                .map_err(|e| (name.clone(), e))?;
            out[Flavour::Real as usize].insert(name.clone(), real);
            out[Flavour::Shown as usize].insert(name.clone(), shown);
            out[Flavour::Canary as usize].insert(name.clone(), canary);
        }
        Ok(out)
    }

    pub(crate) fn set_step(&self, id: &str, view: StepView) {
        if let Ok(mut steps) = self.steps.0.write() {
            steps.insert(id.to_string(), view);
        }
    }

    /// `run.*`: the same for every flavour of one render.
    fn run_value(&self, current_step: &str) -> Value {
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
        minijinja::context! {
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
        }
    }

    fn globals(&self, run: &Value, flavour: Flavour) -> Value {
        let values = &self.values[flavour as usize];
        minijinja::context! {
            vars => values.vars.clone(),
            secrets => values.secrets.clone(),
            target => values.targets.clone(),
            steps => Value::from_dyn_object(self.steps.clone()),
            run => run.clone(),
        }
    }

    /// Renders one template string with the real values; plain strings come back as they
    /// are. Whatever part of the result came from a secret is masked from now on.
    pub(crate) fn render(&self, text: &str, current_step: &str) -> Result<String, String> {
        self.render_flavours(text, current_step)
            .map(|[real, ..]| real)
    }

    /// Renders one template string as people may see it: secrets as `***`, and anything else
    /// the masker knows masked too.
    pub(crate) fn render_shown(&self, text: &str, current_step: &str) -> Result<String, String> {
        self.render_flavours(text, current_step)
            .map(|[_, shown, _]| self.masker.mask(&shown))
    }

    /// Renders `text` in the three flavours at once (one `run.*`, so the clock reads the same
    /// in each), and teaches the masker the part of the real text a secret became.
    fn render_flavours(&self, text: &str, current_step: &str) -> Result<[String; 3], String> {
        if !template::is_template(text) {
            return Ok([text.to_string(), text.to_string(), text.to_string()]);
        }
        let run = self.run_value(current_step);
        let render = |flavour: Flavour| {
            self.env
                .render_str(text, self.globals(&run, flavour))
                .map_err(|error| self.explain(text, &error, false))
        };
        let real = render(Flavour::Real)?;
        if !self.has_secrets {
            return Ok([real.clone(), real.clone(), real]);
        }
        let shown = render(Flavour::Shown)?;
        let canary = render(Flavour::Canary)?;
        if let Some(derived) = derived_part(&real, &canary)
            && derived.len() >= crate::secrets::SHORTEST_MASKED
        {
            self.masker.add(derived);
        }
        Ok([real, shown, canary])
    }

    /// Evaluates a `when:` expression.
    pub(crate) fn eval(&self, expression: &str, current_step: &str) -> Result<bool, String> {
        let compiled = self
            .env
            .compile_expression(expression)
            .map_err(|error| self.explain(expression, &error, true))?;
        compiled
            .eval(self.globals(&self.run_value(current_step), Flavour::Real))
            .map(|value| value.is_true())
            .map_err(|error| self.explain(expression, &error, true))
    }

    /// Renders every template string inside a JSON value (a step's parameters) as people may
    /// see it: the journal's rendered parameters, a dry run.
    pub(crate) fn render_value_shown(
        &self,
        value: &mut serde_json::Value,
        current_step: &str,
    ) -> Result<(), String> {
        match value {
            serde_json::Value::String(text) => *text = self.render_shown(text, current_step)?,
            serde_json::Value::Array(items) => {
                for item in items {
                    self.render_value_shown(item, current_step)?;
                }
            }
            serde_json::Value::Object(map) => {
                for item in map.values_mut() {
                    self.render_value_shown(item, current_step)?;
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

/// A stand-in for a secret: as long as it, and different in every character, so that any
/// transformation of the secret renders differently while its length (and so a `length`)
/// renders the same.
fn canary(secret: &str) -> String {
    secret
        .chars()
        .map(|c| if c == 'Q' { 'Z' } else { 'Q' })
        .collect()
}

/// The part of `real` that differs from `canary` (between their common prefix and suffix):
/// what secrets became in a rendered text. `None` when nothing did.
fn derived_part<'a>(real: &'a str, canary: &str) -> Option<&'a str> {
    if real == canary {
        return None;
    }
    let prefix = real
        .char_indices()
        .zip(canary.chars())
        .find(|((_, a), b)| a != b)
        .map_or(real.len().min(canary.len()), |((at, _), _)| at);
    let rest_real = &real[prefix..];
    let rest_canary = canary.get(prefix..).unwrap_or("");
    let suffix: usize = rest_real
        .chars()
        .rev()
        .zip(rest_canary.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    let part = &rest_real[..rest_real.len() - suffix];
    (!part.is_empty()).then_some(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> RunFields {
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
        }
    }

    fn context() -> Context {
        let mut context = Context::new(
            &BTreeMap::from([("TOKEN".to_string(), "s3cr3t".to_string())]),
            Masker::default(),
            fields(),
        );
        context
            .set_vars(&BTreeMap::from([(
                "store".to_string(),
                "/backups".to_string(),
            )]))
            .expect("vars");
        context
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
            Masker::default(),
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
        let mut fields = fields();
        fields.rto = Duration::parse("30m").ok();
        Context::new(&BTreeMap::new(), Masker::default(), fields)
    }

    /// Whatever a template makes of a secret is masked from then on, and shown as `***` where
    /// the template put it; a secret's length, which says little, is left alone.
    #[test]
    fn what_a_template_derives_from_a_secret_is_masked() {
        let secret = "CANARY-7f3a9c-secret";
        let masker = Masker::new([secret]).expect("masker");
        let mut context = Context::new(
            &BTreeMap::from([("TOKEN".to_string(), secret.to_string())]),
            masker.clone(),
            fields(),
        );
        context
            .set_vars(&BTreeMap::from([(
                "wrapped".to_string(),
                "x-{{ secrets.TOKEN }}-y".to_string(),
            )]))
            .expect("vars");
        let cases = [
            ("{{ secrets.TOKEN | upper }}", "CANARY-7F3A9C-SECRET"),
            ("{{ secrets.TOKEN | reverse }}", "terces-c9a3f7-YRANAC"),
            (
                "{{ secrets.TOKEN | b64encode }}",
                "Q0FOQVJZLTdmM2E5Yy1zZWNyZXQ=",
            ),
            (
                "{{ secrets.TOKEN | replace('-', '_') }}",
                "CANARY_7f3a9c_secret",
            ),
            (
                "{{ (secrets.TOKEN ~ ' &/') | urlencode }}",
                "CANARY-7f3a9c-secret%20%26/",
            ),
            ("{{ secrets.TOKEN[2:12] }}", "NARY-7f3a9"),
            (
                "a{{ 'b' ~ secrets.TOKEN ~ 'c' }}d",
                "abCANARY-7f3a9c-secretcd",
            ),
            ("{{ vars.wrapped | lower }}", "x-canary-7f3a9c-secret-y"),
        ];
        for (template, rendered) in cases {
            assert_eq!(context.render(template, "s").expect("render"), rendered);
            let shown = context.render_shown(template, "s").expect("render");
            assert!(!shown.contains(rendered), "{template} shown as {shown}");
            // Only what differs with the secret is masked: base64's padding, which says no
            // more than the length, may stay.
            let said = masker.mask(&format!("program said {rendered}."));
            assert!(
                said.contains("***") && !said.contains(rendered) && !said.contains(secret),
                "{template}: {said}"
            );
        }
        assert_eq!(
            context
                .render("{{ secrets.TOKEN | length }}", "s")
                .expect("render"),
            "20"
        );
        assert_eq!(masker.mask("20 rows"), "20 rows");
        assert_eq!(
            context
                .render_shown("postgres://u:{{ secrets.TOKEN }}@h/db", "s")
                .expect("render"),
            "postgres://u:***@h/db"
        );
    }

    /// A secret too short to mask in free text (`1`) is still shown as `***` where a template
    /// puts it, and a number elsewhere in the text stays as it is.
    #[test]
    fn a_short_secret_is_shown_masked_where_a_template_puts_it() {
        let context = Context::new(
            &BTreeMap::from([("PIN".to_string(), "1".to_string())]),
            Masker::default(),
            fields(),
        );
        assert_eq!(
            context
                .render_shown("run 1 of pin {{ secrets.PIN }}", "s")
                .expect("render"),
            "run 1 of pin ***"
        );
        assert_eq!(
            context
                .render("pin {{ secrets.PIN }}", "s")
                .expect("render"),
            "pin 1"
        );
    }

    #[test]
    fn the_derived_part_lies_between_what_both_renderings_share() {
        assert_eq!(derived_part("abXYZcd", "abQQQcd"), Some("XYZ"));
        assert_eq!(derived_part("same", "same"), None);
        assert_eq!(derived_part("é-XY-é", "é-QQ-é"), Some("XY"));
        assert_eq!(derived_part("abc", "abcQQQ"), None);
        assert_eq!(canary("aQz"), "QZQ");
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
