//! The HTML report's timeline, laid out: one row per step that ran or waited for a human,
//! each attempt a bar, the wait for a human hatched, the RTO a dashed line (or, far beyond
//! the run, a marker at the edge). Coordinates are computed here, where they can be tested;
//! the template only places them.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::event::Status;
use crate::format::format_duration;
use crate::measure::run_end;
use crate::state::RunState;

use super::report_steps;

// The chart's geometry, in SVG user units (pixels at 100%).
const LEFT: f64 = 180.0;
const PLOT: f64 = 760.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 28.0;
const ROW: f64 = 26.0;
const BAR: f64 = 16.0;
const AXIS: f64 = 30.0;
/// At most this many intervals on the time axis.
const MAX_TICKS: i64 = 8;
/// Tick spacings a person reads easily, in milliseconds.
const NICE_STEPS: &[i64] = &[
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
];

/// The Gantt chart, laid out: one row per step that ran or waited for a human, x measured
/// from the RTO clock's start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Gantt {
    pub(crate) width: f64,
    pub(crate) height: f64,
    /// Where the plot area starts and ends horizontally; labels sit left of `left`.
    pub(crate) left: f64,
    pub(crate) right: f64,
    /// Vertical extent of the plot area (the axis line is at `bottom`).
    pub(crate) top: f64,
    pub(crate) bottom: f64,
    pub(crate) rows: Vec<GanttRow>,
    pub(crate) ticks: Vec<Tick>,
    /// The dashed RTO objective line, when the playbook has one.
    pub(crate) rto: Option<Marker>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct GanttRow {
    pub(crate) id: String,
    pub(crate) status: &'static str,
    /// Hover text: the step, its status and duration.
    pub(crate) title: String,
    pub(crate) y: f64,
    pub(crate) height: f64,
    /// Baseline for the label, vertically centred on the bar.
    pub(crate) label_y: f64,
    /// Each attempt, coloured by its own status: retries show as separate pieces.
    pub(crate) attempts: Vec<Segment>,
    /// Time spent waiting for a human, drawn hatched.
    pub(crate) wait: Option<Segment>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Segment {
    pub(crate) x: f64,
    pub(crate) width: f64,
    pub(crate) status: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Tick {
    pub(crate) x: f64,
    pub(crate) label: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Marker {
    pub(crate) x: f64,
    pub(crate) label: String,
    /// Past the end of the chart (which scales to the run): drawn at its right edge.
    pub(crate) beyond: bool,
}

/// How far past the last bar the RTO line may lie and still set the chart's scale (a 4 s
/// drill against a 30-minute RTO would otherwise be a column of one-pixel slivers).
const RTO_REACH: f64 = 1.5;

/// Lays out the chart of `state`. The time domain runs from the clock start to the last
/// thing drawn (a bar's end, or the RTO line when it lies within [`RTO_REACH`] of it), with a
/// little room so the RTO label is not cut.
pub(crate) fn gantt(state: &RunState) -> Gantt {
    let clock = state.clock_start();
    let end_of_run = run_end(state);
    let offset = |at: Timestamp| at.duration_since(clock).as_millis() as f64;

    struct Timed {
        id: String,
        status: Status,
        attempts: Vec<(f64, f64, Status)>,
        wait: Option<(f64, f64)>,
    }
    let mut timed = Vec::new();
    for (_, step) in report_steps(state) {
        let attempts: Vec<(f64, f64, Status)> = step
            .attempts
            .iter()
            .map(|attempt| {
                let end = attempt.finished_at.unwrap_or(end_of_run);
                (offset(attempt.started_at), offset(end), attempt.status)
            })
            .collect();
        // The state keeps the total wait and when the last one ended, not when each began;
        // the wait is drawn as one piece ending there.
        let wait = step
            .human_wait_ended
            .filter(|_| step.human_wait > SignedDuration::ZERO)
            .map(|decided| (offset(decided - step.human_wait), offset(decided)));
        if attempts.is_empty() && wait.is_none() {
            continue;
        }
        timed.push(Timed {
            id: step.id.clone(),
            status: step.status,
            attempts,
            wait,
        });
    }

    let objective = state
        .rto
        .map(|rto| rto.signed().as_millis() as f64)
        .filter(|ms| *ms > 0.0);
    let drawn = timed
        .iter()
        .flat_map(|row| {
            row.attempts
                .iter()
                .map(|(_, end, _)| *end)
                .chain(row.wait.map(|(_, end)| end))
        })
        .fold(1_000.0_f64, f64::max);
    // The chart scales to the run: the RTO line joins the scale only when it lies near the
    // run's end; beyond that it is marked at the right edge, with how far off it is.
    let within = objective.filter(|ms| *ms <= drawn * RTO_REACH);
    let latest = drawn.max(within.unwrap_or(0.0));
    let domain = latest * 1.04;
    let x = |ms: f64| round(LEFT + ms.clamp(0.0, domain) / domain * PLOT);
    let width = |from: f64, to: f64| round((x(to) - x(from)).max(1.0));

    let rows: Vec<GanttRow> = timed
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let y = TOP + index as f64 * ROW + (ROW - BAR) / 2.0;
            let first = row.attempts.first().map(|(start, _, _)| *start);
            let last = row.attempts.last().map(|(_, end, _)| *end);
            let duration = match (first, last) {
                (Some(first), Some(last)) => format!(
                    ", {}",
                    format_duration(SignedDuration::from_millis((last - first) as i64))
                ),
                _ => String::new(),
            };
            let waited = row
                .wait
                .map(|(from, to)| {
                    format!(
                        ", waited {} for a human",
                        format_duration(SignedDuration::from_millis((to - from) as i64))
                    )
                })
                .unwrap_or_default();
            GanttRow {
                id: row.id.clone(),
                status: row.status.name(),
                title: format!("{}: {}{duration}{waited}", row.id, row.status.name()),
                y: round(y),
                height: BAR,
                label_y: round(y + BAR / 2.0 + 4.0),
                attempts: row
                    .attempts
                    .iter()
                    .map(|(from, to, status)| Segment {
                        x: x(*from),
                        width: width(*from, *to),
                        status: status.name(),
                    })
                    .collect(),
                wait: row.wait.map(|(from, to)| Segment {
                    x: x(from),
                    width: width(from, to),
                    status: "waiting",
                }),
            }
        })
        .collect();

    let bottom = TOP + rows.len().max(1) as f64 * ROW;
    let step = NICE_STEPS
        .iter()
        .copied()
        .find(|step| (domain / *step as f64) <= MAX_TICKS as f64)
        .unwrap_or_else(|| {
            let day = 86_400_000;
            ((domain as i64 / MAX_TICKS) / day + 1) * day
        });
    let ticks = (0..)
        .map(|n| n * step)
        .take_while(|ms| (*ms as f64) <= domain)
        .map(|ms| Tick {
            x: x(ms as f64),
            label: tick_label(ms),
        })
        .collect();

    Gantt {
        width: LEFT + PLOT + RIGHT,
        height: bottom + AXIS,
        left: LEFT,
        right: LEFT + PLOT,
        top: TOP,
        bottom,
        rows,
        ticks,
        rto: state
            .rto
            .filter(|_| objective.is_some())
            .map(|rto| match within {
                Some(ms) => Marker {
                    x: x(ms),
                    label: format!("RTO {rto}"),
                    beyond: false,
                },
                None => Marker {
                    x: LEFT + PLOT,
                    label: format!("RTO {rto} →"),
                    beyond: true,
                },
            }),
    }
}

/// Axis labels in the playbook's own duration style: `0s`, `30s`, `5m`, `1h30m`.
fn tick_label(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    crate::duration::Duration(std::time::Duration::from_millis(ms)).to_string()
}

/// A tenth of a pixel is finer than any screen shows, and keeps the file readable.
fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Journal, failed_run, planned};

    #[test]
    fn gantt_rows_ticks_and_the_rto_line_are_placed_on_one_scale() {
        let gantt = gantt(&failed_run());
        // smoke never ran and never waited: no row.
        let ids: Vec<&str> = gantt.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["assess", "restore", "drop_target"]);
        // The chart scales to the run: drop_target's end (203 s) is the latest thing drawn,
        // and the 30-minute RTO, far beyond it, is marked at the right edge.
        let px = |seconds: f64| round(LEFT + seconds * 1000.0 / (203_000.0 * 1.04) * PLOT);
        let rto = gantt.rto.as_ref().expect("rto marker");
        assert!(rto.beyond);
        assert_eq!(rto.label, "RTO 30m →");
        assert_eq!(rto.x, gantt.right);

        let restore = &gantt.rows[1];
        assert_eq!(restore.status, "failed");
        assert_eq!(restore.attempts.len(), 2);
        assert_eq!(restore.attempts[0].x, px(131.0));
        assert_eq!(restore.attempts[1].x, px(150.0));
        assert_eq!(restore.attempts[1].status, "failed");
        let wait = restore.wait.as_ref().expect("alice's wait");
        assert_eq!(wait.x, px(10.0));
        assert_eq!(wait.width, round(px(130.0) - px(10.0)));
        assert!(gantt.rows[0].wait.is_none());
        assert!(gantt.rows[1].y > gantt.rows[0].y);
        assert!(gantt.rows[2].y + gantt.rows[2].height <= gantt.bottom);
        // A 200 s run fills the width: the last bar ends 1/1.04 of the way across.
        let last = &gantt.rows[2].attempts[0];
        assert!((last.x + last.width - px(203.0)).abs() < 0.2);
        assert!(px(203.0) > LEFT + PLOT * 0.9);

        // 211 s of domain: ticks every 30 s from 0.
        let labels: Vec<&str> = gantt.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            ["0s", "30s", "1m", "1m30s", "2m", "2m30s", "3m", "3m30s"]
        );
        assert_eq!(gantt.ticks[0].x, LEFT);
        assert_eq!(gantt.ticks[4].x, px(120.0));
    }

    #[test]
    fn an_rto_near_the_run_s_end_sets_the_scale_and_is_drawn_as_a_line() {
        let mut journal = Journal::start(
            vec![planned("a", "command"), planned("b", "command")],
            Some("1m"),
            None,
            None,
        );
        journal.ok("a", 0, 10).ok("b", 10, 50).finish(50, 0);
        let gantt = gantt(&journal.state());
        let rto = gantt.rto.as_ref().expect("rto line");
        assert!(!rto.beyond);
        assert_eq!(rto.label, "RTO 1m");
        // 60 s is the latest point: it lands 1/1.04 of the way across.
        assert!((rto.x - (LEFT + PLOT / 1.04)).abs() < 0.2, "{}", rto.x);
        let html = super::super::html::render(&journal.state());
        assert!(html.contains("<line class=\"rto\""), "{html}");
    }

    #[test]
    fn without_an_objective_the_chart_fits_the_steps() {
        let mut journal = Journal::start(
            vec![planned("a", "command"), planned("b", "command")],
            None,
            None,
            None,
        );
        journal.ok("a", 0, 10).ok("b", 10, 50).finish(50, 0);
        let gantt = gantt(&journal.state());
        assert!(gantt.rto.is_none());
        let b = &gantt.rows[1];
        let end = b.attempts[0].x + b.attempts[0].width;
        // 50 s is the latest point: it lands 1/1.04 of the way across.
        assert!((end - (LEFT + PLOT / 1.04)).abs() < 0.2, "{end}");
        let labels: Vec<&str> = gantt.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["0s", "10s", "20s", "30s", "40s", "50s"]);
        let tiny = &gantt.rows[0];
        assert!(tiny.attempts[0].width >= 1.0);
    }

    #[test]
    fn a_step_still_running_is_drawn_to_the_last_record() {
        let mut journal = Journal::start(vec![planned("a", "command")], None, None, None);
        journal.push(
            0,
            crate::event::Event::StepStarted {
                step: "a".into(),
                attempt: 1,
                params: serde_json::Value::Null,
            },
        );
        journal.push(
            100,
            crate::event::Event::Interrupted {
                reason: "SIGKILL".into(),
            },
        );
        let state = journal.state();
        let gantt = gantt(&state);
        assert_eq!(gantt.rows[0].status, "running");
        let segment = &gantt.rows[0].attempts[0];
        assert!((segment.x + segment.width - (LEFT + PLOT / 1.04)).abs() < 0.2);
    }
}
