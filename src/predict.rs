//! Predicting a run's RTO from the runs of the same playbook before it.
//!
//! Each step's past durations give a median and a 90th percentile; the RTO clock waits for the
//! heaviest chain of steps leading to the `clock: stop` step, so the prediction is that chain,
//! weighed once with medians and once with 90th percentiles. Only active time counts: the
//! engine asks humans (gates, manual attestations, incident confirmations) before a step's
//! attempt starts, so attempts never contain human waiting, and a drill where the approver was
//! at lunch does not make the next prediction slower.
//!
//! Backups, restores and syncs take time in proportion to the data they move: their past
//! durations are rescaled from each run's rate (bytes per second) to the newest known size, so
//! a database that doubled predicts a restore that takes twice as long.

use std::collections::BTreeMap;
use std::fmt;

use jiff::SignedDuration;

use crate::duration::Duration;
use crate::event::{PlannedStep, Status};
use crate::format::format_duration;
use crate::state::{RunState, StepState};
use crate::steps::Kind;

/// Only the newest runs count: they describe the systems as they are now.
pub(crate) const MAX_RUNS: usize = 20;

/// A hair of weight per step, so that among chains of equal time the one with more steps wins
/// and the critical path ends at the clock-stop step even when its own time is unknown.
const TIE_BREAK: f64 = 1e-9;

/// One step of the plan to predict, from a playbook file or from a run's recorded plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlanStep {
    pub id: String,
    pub kind: Option<Kind>,
    pub needs: Vec<String>,
    pub cleanup: bool,
    pub clock_stop: bool,
}

impl PlanStep {
    /// A step of a run's recorded plan, with the kind the journal's fold parsed.
    pub(crate) fn from_planned(step: &PlannedStep, kind: Option<Kind>) -> PlanStep {
        PlanStep {
            id: step.id.clone(),
            kind,
            needs: step.needs.clone(),
            cleanup: step.cleanup,
            clock_stop: step.clock_stop,
        }
    }

    /// The plan a run recorded.
    pub(crate) fn of_run(run: &RunState) -> Vec<PlanStep> {
        run.plan
            .iter()
            .map(|step| PlanStep::from_planned(step, run.step(&step.id).and_then(|s| s.kind)))
            .collect()
    }

    /// A hand-made plan, for tests: kinds parsed from their names.
    #[cfg(test)]
    pub(crate) fn of_plan(plan: &[PlannedStep]) -> Vec<PlanStep> {
        plan.iter()
            .map(|step| PlanStep::from_planned(step, Kind::parse(&step.kind)))
            .collect()
    }

    pub(crate) fn from_model(step: &crate::model::Step) -> PlanStep {
        PlanStep {
            id: step.id.clone(),
            kind: Some(step.kind),
            needs: step.needs.clone(),
            cleanup: step.cleanup,
            clock_stop: step.clock_stop,
        }
    }
}

/// What one past run says about one step.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    /// Active time: the sum of the attempts of a step that succeeded.
    seconds: f64,
    /// The bytes it moved, when its outputs say so.
    bytes: Option<u64>,
}

/// The past durations of every step, whatever plan they will be used for.
#[derive(Clone, Debug, Default)]
pub struct History {
    runs: usize,
    /// Oldest run first.
    samples: BTreeMap<String, Vec<Sample>>,
}

impl History {
    /// `runs` oldest first, as [`crate::history::runs_of`] gives them; the newest
    /// [`MAX_RUNS`] are kept.
    pub(crate) fn from_runs(runs: &[&RunState]) -> History {
        let recent = &runs[runs.len().saturating_sub(MAX_RUNS)..];
        let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        for run in recent {
            for step in &run.steps {
                if let Some(sample) = sample(run, step) {
                    samples.entry(step.id.clone()).or_default().push(sample);
                }
            }
        }
        History {
            runs: recent.len(),
            samples,
        }
    }

    pub(crate) fn runs(&self) -> usize {
        self.runs
    }

    /// The median and 90th percentile of a step's past durations, rescaled to the newest size
    /// for the kinds whose time follows the data; `None` when the step never succeeded before.
    pub(crate) fn estimate(&self, step: &PlanStep) -> Option<Estimate> {
        let samples = self.samples.get(&step.id)?;
        let newest = if step.kind.is_some_and(Kind::scales_with_size) {
            samples.iter().rev().find_map(|sample| sample.bytes)
        } else {
            None
        };
        // Only runs of comparable size (within a factor of [`COMPARABLE`] of the newest) are
        // rescaled to it: a rate measured on a tiny database says little about a large one,
        // and one large run must not inflate the estimate for small ones.
        let comparable = |sample: &&Sample| match (newest, sample.bytes) {
            (Some(newest), Some(bytes)) => {
                let ratio = bytes as f64 / newest.max(1) as f64;
                (1.0 / COMPARABLE..=COMPARABLE).contains(&ratio)
            }
            (Some(_), None) => false,
            (None, _) => true,
        };
        let seconds: Vec<f64> = samples
            .iter()
            .filter(comparable)
            .map(|sample| match (newest, sample.bytes) {
                (Some(newest), Some(bytes)) if bytes > 0 => {
                    // The same rate (bytes / second) applied to the newest size.
                    sample.seconds * newest as f64 / bytes as f64
                }
                _ => sample.seconds,
            })
            .collect();
        Some(Estimate {
            median: median(&seconds)?,
            p90: nearest_rank(&seconds, 90.0)?,
        })
    }
}

/// A succeeded step's active time and size. Attempts cut short by a crash (no end recorded)
/// are left out: nobody knows how long they ran.
fn sample(run: &RunState, step: &StepState) -> Option<Sample> {
    if step.status != Status::Succeeded {
        return None;
    }
    let ended: Vec<SignedDuration> = step
        .attempts
        .iter()
        .filter_map(|attempt| {
            let end = attempt.finished_at?;
            Some(crate::measure::elapsed(attempt.started_at, end))
        })
        .collect();
    if ended.is_empty() {
        return None;
    }
    let total = ended
        .into_iter()
        .fold(SignedDuration::ZERO, |sum, part| sum + part);
    Some(Sample {
        seconds: total.as_secs_f64(),
        bytes: byte_count(run, step),
    })
}

/// The bytes a step moved: its own `bytes` (sync) or `size` (backup) output, else — a restore
/// says only which backup it restored — the size another step of the same run gave for that
/// backup (`assess` outputs `backup` and `bytes`, `backup` outputs `key` and `size`).
fn byte_count(run: &RunState, step: &StepState) -> Option<u64> {
    fn own(step: &StepState) -> Option<u64> {
        ["bytes", "size"]
            .iter()
            .find_map(|name| step.outputs.get(*name)?.as_u64())
    }
    own(step).or_else(|| {
        let key = step.outputs.get("backup")?.as_str()?;
        run.steps
            .iter()
            .filter(|other| other.id != step.id && other.status == Status::Succeeded)
            .filter(|other| {
                ["backup", "key"]
                    .iter()
                    .any(|name| other.outputs.get(*name).and_then(|v| v.as_str()) == Some(key))
            })
            .find_map(own)
    })
}

/// How far a past run's size may be from the newest one's, either way, and still be scaled to
/// it.
const COMPARABLE: f64 = 2.0;

/// A step's predicted time, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Estimate {
    pub median: f64,
    pub p90: f64,
}

/// The middle value; the mean of the two middle ones for an even count.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let sorted = sorted(values);
    let count = sorted.len();
    if count == 0 {
        return None;
    }
    Some(if count % 2 == 1 {
        sorted[count / 2]
    } else {
        (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
    })
}

/// The nearest-rank percentile: the smallest value with at least `percent` % of the values at
/// or below it. Always a value that was observed, never an interpolation.
pub(crate) fn nearest_rank(values: &[f64], percent: f64) -> Option<f64> {
    let sorted = sorted(values);
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// Which steps the RTO clock waits for: the `clock: stop` step and everything it needs,
/// transitively; without one, every main step. Cleanup never counts.
pub(crate) fn clock_steps(steps: &[PlanStep]) -> Vec<bool> {
    let Some(stop) = steps.iter().position(|s| s.clock_stop && !s.cleanup) else {
        return steps.iter().map(|s| !s.cleanup).collect();
    };
    let mut included = vec![false; steps.len()];
    let mut pending = vec![stop];
    while let Some(i) = pending.pop() {
        if included[i] || steps[i].cleanup {
            continue;
        }
        included[i] = true;
        for need in &steps[i].needs {
            if let Some(j) = steps.iter().position(|s| &s.id == need) {
                pending.push(j);
            }
        }
    }
    included
}

/// Where a step of the running plan is, for the live projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    NotStarted,
    /// Running for this long.
    Running(SignedDuration),
    /// Succeeded or skipped: it costs the clock nothing more.
    Done,
}

/// A plan weighed with history: the prediction before a run, the projection during one.
#[derive(Clone, Debug)]
pub struct Forecast {
    steps: Vec<PlanStep>,
    needs: Vec<Vec<usize>>,
    sorted: Vec<usize>,
    /// The steps the clock does not wait for.
    excluded: Vec<bool>,
    estimates: Vec<Option<Estimate>>,
    rto: Option<Duration>,
    runs: usize,
}

impl Forecast {
    /// `None` without a single past run: there is nothing to predict from.
    pub(crate) fn new(
        steps: Vec<PlanStep>,
        history: &History,
        rto: Option<Duration>,
    ) -> Option<Forecast> {
        if history.runs() == 0 {
            return None;
        }
        let index: BTreeMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let needs: Vec<Vec<usize>> = steps
            .iter()
            .map(|s| {
                s.needs
                    .iter()
                    .filter_map(|n| index.get(n.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut graph = petgraph::graph::DiGraph::<usize, ()>::new();
        let nodes: Vec<_> = (0..steps.len()).map(|i| graph.add_node(i)).collect();
        for (i, dependencies) in needs.iter().enumerate() {
            for &dependency in dependencies {
                graph.add_edge(nodes[dependency], nodes[i], ());
            }
        }
        let sorted = crate::plan::topological_order(&graph);
        let excluded = clock_steps(&steps).into_iter().map(|c| !c).collect();
        let estimates = steps.iter().map(|s| history.estimate(s)).collect();
        Some(Forecast {
            steps,
            needs,
            sorted,
            excluded,
            estimates,
            rto,
            runs: history.runs(),
        })
    }

    /// The heaviest chain to the clock stop under `weight` (seconds), and its total.
    fn chain(&self, weight: impl Fn(usize) -> f64) -> (f64, Vec<usize>) {
        let path = crate::plan::longest_chain(&self.excluded, &self.needs, &self.sorted, |i| {
            weight(i) + TIE_BREAK
        });
        let total = path.iter().map(|&i| weight(i)).sum();
        (total, path)
    }

    /// The whole run, before it starts.
    pub(crate) fn prediction(&self) -> Prediction {
        let estimate = |i: usize| self.estimates[i];
        let (median, path) = self.chain(|i| estimate(i).map_or(0.0, |e| e.median));
        let (p90, _) = self.chain(|i| estimate(i).map_or(0.0, |e| e.p90));
        let counted: Vec<usize> = (0..self.steps.len())
            .filter(|&i| !self.excluded[i])
            .collect();
        Prediction {
            median: seconds(median),
            p90: seconds(p90),
            rto: self.rto,
            runs: self.runs,
            unknown_steps: counted.iter().filter(|&&i| estimate(i).is_none()).count(),
            steps: counted.len(),
            critical_path: path.iter().map(|&i| self.steps[i].id.clone()).collect(),
        }
    }

    /// The median time still needed until the clock stops: the heaviest chain of what is not
    /// done, a running step counting only what is left of its median.
    pub(crate) fn remaining(&self, progress: impl Fn(&str) -> Progress) -> SignedDuration {
        let (total, _) = self.chain(|i| {
            let median = self.estimates[i].map_or(0.0, |e| e.median);
            match progress(&self.steps[i].id) {
                Progress::NotStarted => median,
                Progress::Running(for_) => (median - for_.as_secs_f64()).max(0.0),
                Progress::Done => 0.0,
            }
        });
        seconds(total)
    }

    /// When, counted from the clock start, the clock is projected to stop: the time elapsed
    /// so far plus [`Forecast::remaining`].
    pub(crate) fn projection(
        &self,
        progress: impl Fn(&str) -> Progress,
        elapsed: SignedDuration,
    ) -> SignedDuration {
        elapsed + self.remaining(progress)
    }
}

fn seconds(value: f64) -> SignedDuration {
    SignedDuration::try_from_secs_f64(value.max(0.0)).unwrap_or(SignedDuration::MAX)
}

/// What past runs say about the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prediction {
    pub median: SignedDuration,
    pub p90: SignedDuration,
    pub rto: Option<Duration>,
    /// Past runs it is made from.
    pub runs: usize,
    /// Steps the clock waits for that never succeeded before (weighed 0).
    pub unknown_steps: usize,
    /// Steps the clock waits for.
    pub steps: usize,
    pub critical_path: Vec<String>,
}

impl Prediction {
    /// A bad but not unusual run (the 90th percentile) would miss the objective.
    pub(crate) fn may_miss(&self) -> bool {
        self.rto.is_some_and(|rto| self.p90 > rto.signed())
    }

    /// The stable JSON form `history` and `plan --format json` share.
    pub(crate) fn to_json(&self) -> PredictionJson {
        let seconds = |d: SignedDuration| d.as_millis() as f64 / 1000.0;
        PredictionJson {
            median_seconds: seconds(self.median),
            p90_seconds: seconds(self.p90),
            rto_seconds: self.rto.map(|rto| seconds(rto.signed())),
            runs: self.runs,
            unknown_steps: self.unknown_steps,
            critical_path: self.critical_path.clone(),
        }
    }
}

/// A prediction for tools, fields in a fixed order, durations in seconds (to the millisecond).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PredictionJson {
    pub median_seconds: f64,
    pub p90_seconds: f64,
    pub rto_seconds: Option<f64>,
    pub runs: usize,
    pub unknown_steps: usize,
    pub critical_path: Vec<String>,
}

/// `predicted 24m00s (p90 31m00s) against RTO 30m, from 5 runs; no history for 3 of 12 steps —
/// may miss the RTO`
impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "predicted {} (p90 {})",
            format_duration(self.median),
            format_duration(self.p90)
        )?;
        if let Some(rto) = self.rto {
            write!(f, " against RTO {rto}")?;
        }
        write!(
            f,
            ", from {} run{}",
            self.runs,
            if self.runs == 1 { "" } else { "s" }
        )?;
        if self.unknown_steps > 0 {
            write!(
                f,
                "; no history for {} of {} step{}",
                self.unknown_steps,
                self.steps,
                if self.steps == 1 { "" } else { "s" }
            )?;
        }
        if self.may_miss() {
            f.write_str(" — may miss the RTO")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::Event;
    use crate::fixtures::{Journal, planned};

    fn step(id: &str, kind: &str, needs: &[&str]) -> PlannedStep {
        let mut step = planned(id, kind);
        step.needs = needs.iter().map(|n| n.to_string()).collect();
        step
    }

    /// A run where each `(step, seconds, bytes)` succeeded one after the other.
    fn run(plan: &[PlannedStep], times: &[(&str, i64, Option<u64>)]) -> RunState {
        let mut journal = Journal::start(plan.to_vec(), Some("30m"), None, None);
        let mut at = 0;
        for (id, seconds, bytes) in times {
            let outputs = bytes
                .map(|b| BTreeMap::from([("size".to_string(), serde_json::Value::from(b))]))
                .unwrap_or_default();
            journal.attempt(
                id,
                1,
                at,
                at + seconds,
                Status::Succeeded,
                None,
                outputs,
                vec![],
            );
            at += seconds;
        }
        journal.finish(at, 0);
        journal.state()
    }

    fn forecast(plan: &[PlannedStep], runs: &[RunState]) -> Forecast {
        let refs: Vec<&RunState> = runs.iter().collect();
        Forecast::new(
            PlanStep::of_plan(plan),
            &History::from_runs(&refs),
            Duration::parse("30m").ok(),
        )
        .expect("history")
    }

    #[test]
    fn median_and_nearest_rank_percentile() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&ten, 90.0), Some(9.0));
        assert_eq!(nearest_rank(&ten, 50.0), Some(5.0));
        assert_eq!(nearest_rank(&[7.0, 1.0], 90.0), Some(7.0));
        assert_eq!(nearest_rank(&[2.0, 9.0, 4.0, 6.0, 1.0], 90.0), Some(9.0));
        assert_eq!(nearest_rank(&[], 90.0), None);
    }

    #[test]
    fn a_step_is_predicted_from_its_past_active_time() {
        let plan = [step("a", "command", &[])];
        let runs: Vec<RunState> = [10, 30, 20, 40, 100]
            .iter()
            .map(|s| run(&plan, &[("a", *s, None)]))
            .collect();
        let prediction = forecast(&plan, &runs).prediction();
        assert_eq!(prediction.median, SignedDuration::from_secs(30));
        assert_eq!(prediction.p90, SignedDuration::from_secs(100));
        assert_eq!(prediction.runs, 5);
        assert_eq!(prediction.unknown_steps, 0);
    }

    #[test]
    fn retries_count_but_human_waits_and_backoff_do_not() {
        let plan = [step("a", "command", &[])];
        let mut journal = Journal::start(plan.to_vec(), None, None, None);
        // An hour waiting for approval, a 10 s failed attempt, 50 s of backoff, a 20 s success.
        journal
            .gate("a", 0, 3_600, "alice", true)
            .attempt(
                "a",
                1,
                3_600,
                3_610,
                Status::Failed,
                Some("no"),
                BTreeMap::new(),
                vec![],
            )
            .attempt(
                "a",
                2,
                3_660,
                3_680,
                Status::Succeeded,
                None,
                BTreeMap::new(),
                vec![],
            )
            .finish(3_680, 0);
        let prediction = forecast(&plan, &[journal.state()]).prediction();
        assert_eq!(prediction.median, SignedDuration::from_secs(30));
    }

    #[test]
    fn a_bigger_backup_predicts_a_longer_step() {
        let plan = [step("backup", "backup", &[]), step("check", "command", &[])];
        // 100 MB in 10 s, then 200 MB in 20 s, then 400 MB in 40 s: 10 MB/s every time.
        let runs = vec![
            run(
                &plan,
                &[("backup", 10, Some(100_000_000)), ("check", 5, None)],
            ),
            run(
                &plan,
                &[("backup", 20, Some(200_000_000)), ("check", 5, None)],
            ),
            run(
                &plan,
                &[("backup", 40, Some(400_000_000)), ("check", 5, None)],
            ),
        ];
        let forecast = forecast(&plan, &runs);
        // Unscaled, the median would be 20 s; at the newest size (400 MB) every run says 40 s.
        let prediction = forecast.prediction();
        assert_eq!(prediction.median, SignedDuration::from_secs(40));
        assert_eq!(prediction.p90, SignedDuration::from_secs(40));

        // A command step with a `size` output does not scale.
        let plan = [step("check", "command", &[])];
        let runs = vec![
            run(&plan, &[("check", 10, Some(1))]),
            run(&plan, &[("check", 10, Some(1_000))]),
        ];
        assert_eq!(
            super::tests::forecast(&plan, &runs).prediction().median,
            SignedDuration::from_secs(10)
        );
    }

    #[test]
    fn only_runs_of_comparable_size_are_scaled_to_the_newest() {
        let plan = [step("backup", "backup", &[])];
        // Four runs on a 1 MB demo database, then one on 100 MB: scaling the small runs' 2 s
        // by 100 would predict 200 s; the large run alone says 40 s.
        let mut runs: Vec<_> = (0..4)
            .map(|_| run(&plan, &[("backup", 2, Some(1_000_000))]))
            .collect();
        runs.push(run(&plan, &[("backup", 40, Some(100_000_000))]));
        let prediction = forecast(&plan, &runs).prediction();
        assert_eq!(prediction.median, SignedDuration::from_secs(40));
        // And back on the small database: the large run is not scaled down into it.
        runs.push(run(&plan, &[("backup", 3, Some(1_200_000))]));
        let prediction = forecast(&plan, &runs).prediction();
        assert!(
            prediction.median <= SignedDuration::from_secs(3),
            "{:?}",
            prediction.median
        );
    }

    #[test]
    fn a_restore_is_scaled_by_the_size_of_the_backup_it_restored() {
        let plan = [
            step("assess", "assess", &[]),
            step("restore", "restore", &["assess"]),
        ];
        let restored = |bytes: u64, seconds: i64| {
            let mut journal = Journal::start(plan.to_vec(), None, None, None);
            journal
                .attempt(
                    "assess",
                    1,
                    0,
                    1,
                    Status::Succeeded,
                    None,
                    BTreeMap::from([
                        ("backup".into(), "prod/1.dump".into()),
                        ("bytes".into(), bytes.into()),
                    ]),
                    vec![],
                )
                .attempt(
                    "restore",
                    1,
                    1,
                    1 + seconds,
                    Status::Succeeded,
                    None,
                    BTreeMap::from([("backup".into(), "prod/1.dump".into())]),
                    vec![],
                )
                .finish(1 + seconds, 0);
            journal.state()
        };
        let runs = vec![restored(1_000, 10), restored(3_000, 30)];
        let forecast = forecast(&plan, &runs);
        // Both ran at 100 bytes/s; the newest backup is 3000 bytes.
        assert_eq!(forecast.prediction().median, SignedDuration::from_secs(31));
    }

    #[test]
    fn the_critical_path_leads_to_the_clock_stop() {
        let mut smoke = step("smoke", "smoke-test", &["db", "files"]);
        smoke.clock_stop = true;
        let mut tidy = step("tidy", "command", &[]);
        tidy.cleanup = true;
        let plan = [
            step("assess", "assess", &[]),
            step("db", "restore", &["assess"]),
            step("files", "sync", &["assess"]),
            smoke,
            // After the clock stop: the RTO does not wait for it, however long it takes.
            step("report", "command", &["smoke"]),
            tidy,
        ];
        let runs = vec![run(
            &plan,
            &[
                ("assess", 5, None),
                ("db", 60, None),
                ("files", 20, None),
                ("smoke", 10, None),
                ("report", 500, None),
                ("tidy", 900, None),
            ],
        )];
        let prediction = forecast(&plan, &runs).prediction();
        assert_eq!(prediction.critical_path, ["assess", "db", "smoke"]);
        assert_eq!(prediction.median, SignedDuration::from_secs(75));
        assert_eq!(prediction.steps, 4);
        assert_eq!(prediction.unknown_steps, 0);

        // Without a clock stop, every main step counts, cleanup still does not.
        let mut plain: Vec<PlannedStep> = plan.to_vec();
        plain[3].clock_stop = false;
        let prediction = forecast(&plain, &runs).prediction();
        assert_eq!(
            prediction.critical_path,
            ["assess", "db", "smoke", "report"]
        );
        assert_eq!(prediction.median, SignedDuration::from_secs(575));
    }

    #[test]
    fn steps_without_history_weigh_nothing_and_are_counted() {
        let mut stop = step("stop", "command", &["new"]);
        stop.clock_stop = true;
        let old = [step("a", "command", &[])];
        let runs = vec![run(&old, &[("a", 10, None)])];
        let plan = [
            step("a", "command", &[]),
            step("new", "command", &["a"]),
            stop,
        ];
        let prediction = forecast(&plan, &runs).prediction();
        assert_eq!(prediction.unknown_steps, 2);
        assert_eq!(prediction.steps, 3);
        assert_eq!(prediction.median, SignedDuration::from_secs(10));
        assert_eq!(prediction.critical_path, ["a", "new", "stop"]);
        assert!(
            prediction
                .to_string()
                .ends_with("from 1 run; no history for 2 of 3 steps"),
            "{prediction}"
        );
    }

    #[test]
    fn the_line_reads_as_documented() {
        let mut prediction = Prediction {
            median: SignedDuration::from_mins(24),
            p90: SignedDuration::from_mins(31),
            rto: Duration::parse("30m").ok(),
            runs: 5,
            unknown_steps: 0,
            steps: 12,
            critical_path: vec![],
        };
        assert_eq!(
            prediction.to_string(),
            "predicted 24m00s (p90 31m00s) against RTO 30m, from 5 runs — may miss the RTO"
        );
        prediction.p90 = SignedDuration::from_mins(29);
        prediction.unknown_steps = 3;
        assert_eq!(
            prediction.to_string(),
            "predicted 24m00s (p90 29m00s) against RTO 30m, from 5 runs; no history for 3 of 12 steps"
        );
        prediction.rto = None;
        prediction.unknown_steps = 0;
        assert_eq!(
            prediction.to_string(),
            "predicted 24m00s (p90 29m00s), from 5 runs"
        );
        let json = prediction.to_json();
        assert_eq!(json.median_seconds, 1440.0);
        assert_eq!(json.rto_seconds, None);
    }

    #[test]
    fn the_projection_adds_what_is_left_to_the_time_elapsed() {
        let mut stop = step("c", "command", &["b"]);
        stop.clock_stop = true;
        let plan = [
            step("a", "command", &[]),
            step("b", "command", &["a"]),
            stop,
        ];
        let runs = vec![run(
            &plan,
            &[("a", 60, None), ("b", 120, None), ("c", 30, None)],
        )];
        let forecast = forecast(&plan, &runs);
        let nothing_done = forecast.projection(|_| Progress::NotStarted, SignedDuration::ZERO);
        assert_eq!(nothing_done, SignedDuration::from_secs(210));
        // `a` took 5 minutes instead of 1; `b` has run for 100 of its 120 s.
        let late = forecast.projection(
            |id| match id {
                "a" => Progress::Done,
                "b" => Progress::Running(SignedDuration::from_secs(100)),
                _ => Progress::NotStarted,
            },
            SignedDuration::from_secs(400),
        );
        assert_eq!(late, SignedDuration::from_secs(450));
        // A step running past its median adds nothing more, but never takes time back.
        let overdue = forecast.projection(
            |id| match id {
                "c" => Progress::Running(SignedDuration::from_secs(90)),
                _ => Progress::Done,
            },
            SignedDuration::from_secs(500),
        );
        assert_eq!(overdue, SignedDuration::from_secs(500));
    }

    #[test]
    fn a_step_that_failed_in_the_past_gives_no_sample() {
        let plan = [step("a", "command", &[])];
        let mut journal = Journal::start(plan.to_vec(), None, None, None);
        journal
            .attempt(
                "a",
                1,
                0,
                10,
                Status::Failed,
                Some("no"),
                BTreeMap::new(),
                vec![],
            )
            .push(10, Event::RunFinished { exit_code: 1 });
        let prediction = forecast(&plan, &[journal.state()]).prediction();
        assert_eq!(prediction.unknown_steps, 1);
        assert_eq!(prediction.median, SignedDuration::ZERO);
    }
}
