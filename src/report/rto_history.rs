//! The HTML report's "RTO against previous runs": one bar per earlier finished run of the same
//! playbook and one for this run, on one scale with the objective marked, so a reader sees at
//! a glance whether this drill was typical. Laid out here, in percentages the template only
//! places, so the geometry is unit tested.

use jiff::SignedDuration;
use serde::Serialize;

use crate::measure::Row;
use crate::state::RunState;

use crate::format::format_duration;
use crate::measure::{Measure, objectives};

/// Enough runs to show a trend, few enough to stay a small section.
const MAX_PREVIOUS: usize = 12;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct RtoChart {
    /// The objective as written ("30m"), when this run has one.
    pub(crate) objective: Option<String>,
    /// Where the objective sits, in percent of the track.
    pub(crate) objective_left: Option<f64>,
    /// Oldest first; this run last.
    pub(crate) rows: Vec<RtoBar>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct RtoBar {
    pub(crate) run_id: String,
    pub(crate) date: String,
    /// The achieved RTO, or why there is none.
    pub(crate) label: String,
    /// Bar length in percent of the track; `None` when the clock never stopped.
    pub(crate) width: Option<f64>,
    /// `r-met`, `r-missed` or `r-none` (no objective to judge by).
    pub(crate) class: &'static str,
    pub(crate) current: bool,
}

/// The chart for `state`, from the history rows of its playbook (any order, this run among
/// them or not); `None` when no earlier run finished: there is nothing to compare with.
pub(crate) fn chart(state: &RunState, history: &[Row]) -> Option<RtoChart> {
    let mut previous: Vec<&Row> = history
        .iter()
        .filter(|row| row.run_id != state.run_id && row.started_at < state.started_at)
        .collect();
    if previous.is_empty() {
        return None;
    }
    previous.sort_by_key(|row| row.started_at);
    let previous = &previous[previous.len().saturating_sub(MAX_PREVIOUS)..];
    let this = objectives(state).rto;
    let mut bars: Vec<(String, String, Measure, bool)> = previous
        .iter()
        .map(|row| {
            (
                row.run_id.clone(),
                row.started_at.strftime("%Y-%m-%d").to_string(),
                row.rto,
                false,
            )
        })
        .collect();
    bars.push((
        state.run_id.clone(),
        state.started_at.strftime("%Y-%m-%d").to_string(),
        this,
        true,
    ));
    let objective = state.rto.map(crate::duration::Duration::signed);
    let longest = bars
        .iter()
        .filter_map(|(_, _, measure, _)| measure.achieved)
        .chain(objective)
        .max()
        .filter(|longest| *longest > SignedDuration::ZERO)?;
    // A little room right of the longest bar, so the objective mark never sits on the edge.
    let scale = longest.as_secs_f64() * 1.1;
    let percent = |d: SignedDuration| round(d.as_secs_f64().max(0.0) / scale * 100.0);
    Some(RtoChart {
        objective: state.rto.map(|rto| rto.to_string()),
        objective_left: objective.map(percent),
        rows: bars
            .into_iter()
            .map(|(run_id, date, measure, current)| RtoBar {
                run_id,
                date,
                label: measure
                    .achieved
                    .map(format_duration)
                    .unwrap_or_else(|| "not reached".into()),
                width: measure.achieved.map(|achieved| percent(achieved).max(0.5)),
                class: match measure.met {
                    Some(true) => "r-met",
                    Some(false) => "r-missed",
                    None => "r-none",
                },
                current,
            })
            .collect(),
    })
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Journal, at, planned};

    /// A run whose clock stops `seconds` after a start `days` after the fixture's base.
    fn run(id: &str, days: i64, seconds: Option<i64>) -> RunState {
        let mut stop = planned("recover", "command");
        stop.clock_stop = true;
        let mut journal = Journal::start(vec![stop], Some("30m"), None, None);
        if let Some(seconds) = seconds {
            journal.ok("recover", 0, seconds);
        }
        journal.finish(seconds.unwrap_or(1), if seconds.is_some() { 0 } else { 1 });
        let mut state = journal.state();
        state.run_id = id.into();
        let shift = |t: jiff::Timestamp| t + SignedDuration::from_hours(24 * days);
        state.started_at = shift(state.started_at);
        for step in &mut state.steps {
            for attempt in &mut step.attempts {
                attempt.started_at = shift(attempt.started_at);
                attempt.finished_at = attempt.finished_at.map(shift);
            }
        }
        state
    }

    #[test]
    fn earlier_runs_and_this_one_share_one_scale() {
        let history: Vec<Row> = [
            run("r1", 0, Some(600)),
            run("r2", 30, None),
            run("r3", 60, Some(2_400)),
            // Later than this run: not "previous".
            run("r5", 120, Some(60)),
        ]
        .iter()
        .map(Row::of)
        .collect();
        let this = run("r4", 90, Some(1_200));
        let chart = chart(&this, &history).expect("chart");
        let ids: Vec<&str> = chart.rows.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["r1", "r2", "r3", "r4"]);
        // The longest is r3's 40 minutes: the track is 44 minutes long.
        assert_eq!(chart.rows[0].width, Some(round(600.0 / 2_640.0 * 100.0)));
        assert_eq!(chart.rows[0].class, "r-met");
        assert_eq!(chart.rows[1].width, None);
        assert_eq!(chart.rows[1].label, "not reached");
        assert_eq!(chart.rows[2].class, "r-missed");
        assert_eq!(chart.rows[2].label, "40m00s");
        assert!(chart.rows[3].current && !chart.rows[0].current);
        assert_eq!(chart.objective.as_deref(), Some("30m"));
        assert_eq!(chart.objective_left, Some(round(1_800.0 / 2_640.0 * 100.0)));
        assert_eq!(at(0).strftime("%Y-%m-%d").to_string(), chart.rows[0].date);
    }

    #[test]
    fn the_html_report_shows_the_section_only_with_earlier_runs() {
        let history: Vec<Row> = [run("r1", 0, Some(600)), run("r2", 30, Some(2_400))]
            .iter()
            .map(Row::of)
            .collect();
        let this = run("r3", 60, Some(900));
        let html = super::super::html::render_with_history(&this, &history);
        assert!(!html.contains("could not be rendered"), "{html}");
        assert!(
            html.contains("<h2>RTO against previous runs</h2>"),
            "{html}"
        );
        assert_eq!(html.matches("<div class=\"rto-row").count(), 3, "{html}");
        assert!(html.contains("<div class=\"rto-row current\">"), "{html}");
        assert!(html.contains("15m00s (this run)"), "{html}");
        assert!(html.contains("rto-bar r-missed"), "{html}");
        assert!(
            html.contains("class=\"rto-objective\" style=\"left: "),
            "{html}"
        );
        let alone = super::super::html::render(&this);
        assert!(!alone.contains("RTO against previous runs"));
    }

    #[test]
    fn the_first_run_has_nothing_to_compare_with() {
        let this = run("r1", 0, Some(600));
        assert_eq!(chart(&this, &[Row::of(&this)]), None);
        assert_eq!(chart(&this, &[]), None);
    }
}
