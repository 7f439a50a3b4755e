//! The live projection of a run's RTO: where the clock will stop at this pace. It watches the
//! journal's records (as the first observer, so with the journal's own timestamps and before
//! any display asks), and answers the progress header, the log and `run.eta` /
//! `run.projected` / `run.over_rto` in templates alike.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::{SignedDuration, Timestamp};

use crate::duration::Duration;
use crate::event::{Event, Record, Status};
use crate::human::Observer;
use crate::predict::{self, Forecast, History, PlanStep, Prediction, Progress};
use crate::state::RunState;

/// One run's projection. Without history it still knows when the clock stopped, so
/// `run.over_rto` is right after the stop whether or not anything could be predicted.
#[derive(Debug)]
pub struct Projection {
    forecast: Option<Forecast>,
    rto: Option<Duration>,
    clock_start: Timestamp,
    /// The clock-stop step; `None` when the clock stops with the last main step.
    stop: Option<String>,
    /// The steps the clock waits for.
    clock_steps: Vec<String>,
    live: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    done: HashSet<String>,
    running: HashMap<String, Timestamp>,
    stopped_at: Option<Timestamp>,
}

impl Projection {
    pub(crate) fn new(
        steps: Vec<PlanStep>,
        history: &History,
        rto: Option<Duration>,
        clock_start: Timestamp,
    ) -> Projection {
        let included = predict::clock_steps(&steps);
        let clock_steps = steps
            .iter()
            .zip(&included)
            .filter(|(_, included)| **included)
            .map(|(step, _)| step.id.clone())
            .collect();
        let stop = steps
            .iter()
            .find(|step| step.clock_stop && !step.cleanup)
            .map(|step| step.id.clone());
        Projection {
            forecast: Forecast::new(steps, history, rto),
            rto,
            clock_start,
            stop,
            clock_steps,
            live: Mutex::new(Live::default()),
        }
    }

    /// A resumed run starts from what its journal says is done.
    pub(crate) fn resume_from(&self, state: &RunState) {
        let mut live = self.live();
        for step in &state.steps {
            if matches!(step.status, Status::Succeeded | Status::Skipped) {
                let at = step.attempts.last().and_then(|a| a.finished_at);
                self.mark_done(
                    &mut live,
                    &step.id,
                    step.status,
                    at.unwrap_or(state.last_at),
                );
            }
        }
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_done(&self, live: &mut Live, step: &str, status: Status, at: Timestamp) {
        live.running.remove(step);
        live.done.insert(step.to_string());
        if live.stopped_at.is_some() {
            return;
        }
        let stopped = match &self.stop {
            Some(stop) => stop == step && status == Status::Succeeded,
            None => self.clock_steps.iter().all(|id| live.done.contains(id)),
        };
        if stopped {
            live.stopped_at = Some(at);
        }
    }

    /// What the history predicts for the whole run; `None` without history.
    pub(crate) fn prediction(&self) -> Option<Prediction> {
        self.forecast.as_ref().map(Forecast::prediction)
    }

    pub(crate) fn rto(&self) -> Option<Duration> {
        self.rto
    }

    /// How long the clock ran, once it has stopped.
    pub(crate) fn stopped(&self) -> Option<SignedDuration> {
        self.live()
            .stopped_at
            .map(|at| crate::measure::elapsed(self.clock_start, at))
    }

    /// From the clock start to where the clock is projected to stop (where it stopped, once
    /// it has); `None` while it runs without history.
    pub(crate) fn projected(&self, now: Timestamp) -> Option<SignedDuration> {
        let live = self.live();
        if let Some(at) = live.stopped_at {
            return Some(crate::measure::elapsed(self.clock_start, at));
        }
        let forecast = self.forecast.as_ref()?;
        let elapsed = crate::measure::elapsed(self.clock_start, now);
        Some(forecast.projection(
            |id| {
                if live.done.contains(id) {
                    Progress::Done
                } else if let Some(started) = live.running.get(id) {
                    Progress::Running(crate::measure::elapsed(*started, now))
                } else {
                    Progress::NotStarted
                }
            },
            elapsed,
        ))
    }

    /// The projection while the clock runs, for displays: `None` once it has stopped (the
    /// report says how it went) or without history.
    pub(crate) fn running_projection(&self, now: Timestamp) -> Option<std::time::Duration> {
        if self.stopped().is_some() {
            return None;
        }
        std::time::Duration::try_from(self.projected(now)?).ok()
    }

    /// The projected clock stop as a time of day.
    pub(crate) fn eta(&self, now: Timestamp) -> Option<Timestamp> {
        self.clock_start.checked_add(self.projected(now)?).ok()
    }

    /// Whether the run will miss (or missed) its RTO, on what is known: the projection, else
    /// the time elapsed so far.
    pub(crate) fn over_rto(&self, now: Timestamp) -> bool {
        let Some(rto) = self.rto else {
            return false;
        };
        let known = self
            .projected(now)
            .unwrap_or_else(|| crate::measure::elapsed(self.clock_start, now));
        known > rto.signed()
    }
}

impl Observer for Projection {
    fn record(&self, record: &Record) {
        let mut live = self.live();
        match &record.event {
            Event::StepStarted { step, .. } => {
                live.running.insert(step.clone(), record.at);
            }
            Event::StepFinished { step, status, .. } => match status {
                Status::Succeeded => self.mark_done(&mut live, step, *status, record.at),
                // A failed attempt may be retried; either way the clock has not stopped.
                _ => {
                    live.running.remove(step);
                }
            },
            Event::StepSkipped { step, .. } => {
                self.mark_done(&mut live, step, Status::Skipped, record.at)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fixtures::{Journal, at, planned};

    fn plan() -> Vec<crate::event::PlannedStep> {
        let mut b = planned("b", "command");
        b.needs = vec!["a".into()];
        b.clock_stop = true;
        vec![planned("a", "command"), b]
    }

    fn projection(history: &[RunState]) -> Projection {
        let runs: Vec<&RunState> = history.iter().collect();
        Projection::new(
            PlanStep::of_plan(&plan()),
            &History::from_runs(&runs),
            Duration::parse("5m").ok(),
            at(0),
        )
    }

    fn record(second: i64, event: Event) -> Record {
        Record {
            seq: 0,
            prev: None,
            at: at(second),
            event,
        }
    }

    fn finished(step: &str, status: Status) -> Event {
        Event::StepFinished {
            step: step.into(),
            attempt: 1,
            status,
            outputs: BTreeMap::new(),
            error: None,
            evidence: vec![],
            error_class: None,
        }
    }

    fn started(step: &str) -> Event {
        Event::StepStarted {
            step: step.into(),
            attempt: 1,
            params: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_projection_follows_the_run_and_stops_with_the_clock() {
        // Before: a took 1 minute, b 3 minutes.
        let mut past = Journal::start(plan(), Some("5m"), None, None);
        past.ok("a", 0, 60).ok("b", 60, 240).finish(240, 0);
        let projection = projection(&[past.state()]);
        assert_eq!(
            projection.projected(at(0)),
            Some(SignedDuration::from_secs(240))
        );
        assert!(!projection.over_rto(at(0)));
        // `a` takes 2 minutes this time: 2m + 3m = 5m, still within the RTO.
        projection.record(&record(0, started("a")));
        projection.record(&record(120, finished("a", Status::Succeeded)));
        assert_eq!(
            projection.projected(at(120)),
            Some(SignedDuration::from_secs(300))
        );
        assert!(!projection.over_rto(at(120)));
        // `b` fails once and starts again at 3m: 3m + 3m = 6m, over.
        projection.record(&record(120, started("b")));
        projection.record(&record(180, finished("b", Status::Failed)));
        projection.record(&record(180, started("b")));
        assert_eq!(
            projection.projected(at(180)),
            Some(SignedDuration::from_secs(360))
        );
        assert!(projection.over_rto(at(180)));
        assert_eq!(projection.eta(at(180)), Some(at(360)));
        // The clock stops at 5m30s: that is the answer from then on.
        projection.record(&record(330, finished("b", Status::Succeeded)));
        assert_eq!(projection.stopped(), Some(SignedDuration::from_secs(330)));
        assert_eq!(
            projection.projected(at(900)),
            Some(SignedDuration::from_secs(330))
        );
        assert!(projection.over_rto(at(900)));
    }

    #[test]
    fn without_history_only_the_time_elapsed_is_known() {
        let projection = projection(&[]);
        assert_eq!(projection.prediction(), None);
        assert_eq!(projection.projected(at(10)), None);
        assert!(!projection.over_rto(at(299)));
        assert!(projection.over_rto(at(301)));
        projection.record(&record(0, started("a")));
        projection.record(&record(10, finished("a", Status::Succeeded)));
        projection.record(&record(20, finished("b", Status::Succeeded)));
        assert_eq!(projection.stopped(), Some(SignedDuration::from_secs(20)));
        assert!(!projection.over_rto(at(3_000)));
    }

    #[test]
    fn a_resumed_run_knows_what_was_done() {
        let mut journal = Journal::start(plan(), Some("5m"), None, None);
        journal.ok("a", 0, 30).ok("b", 30, 90);
        let projection = projection(&[]);
        projection.resume_from(&journal.state());
        assert_eq!(projection.stopped(), Some(SignedDuration::from_secs(90)));
    }
}
