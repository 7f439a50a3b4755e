//! A playbook's drill history: its finished runs, each measured against its objectives, how
//! the newest compares with the ones before, and what the next run should take. Auditors ask
//! "are the drills getting faster?"; this answers from the journals alone, so a state
//! directory shared by the team is the team's history.

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::format::{columns, format_duration};
use crate::measure::{Measure, Row};
use crate::outcome::Outcome;
use crate::predict::{Forecast, History, PlanStep, Prediction, PredictionJson};
use crate::state::RunState;

/// Whether a run is history: it is over (a run waiting for approval or interrupted can still
/// be resumed) and it did something (not a dry run).
pub(crate) fn is_over(state: &RunState) -> bool {
    !state.dry_run && state.outcome().is_some_and(Outcome::is_over)
}

/// The runs of `playbook` that are history, oldest first.
pub(crate) fn runs_of<'a>(runs: &'a [RunState], playbook: &str) -> Vec<&'a RunState> {
    let mut of: Vec<&RunState> = runs
        .iter()
        .filter(|run| run.playbook == playbook && is_over(run))
        .collect();
    of.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then(a.run_id.cmp(&b.run_id))
    });
    of
}

/// The playbooks with at least one run in the history, by name.
pub(crate) fn playbooks(runs: &[RunState]) -> Vec<String> {
    let mut names: Vec<String> = runs
        .iter()
        .filter(|run| is_over(run))
        .map(|run| run.playbook.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The prediction for the next run of the playbook whose past `runs` (oldest first) are given:
/// the newest run's plan, weighed with those of its mode (a drill is not an incident).
pub(crate) fn next_run(runs: &[&RunState]) -> Option<Prediction> {
    let newest = runs.last()?;
    let steps = PlanStep::of_run(newest);
    let alike: Vec<&RunState> = runs
        .iter()
        .copied()
        .filter(|run| run.mode == newest.mode)
        .collect();
    Forecast::new(steps, &History::from_runs(&alike), newest.rto).map(|f| f.prediction())
}

/// How the newest run's RTO compares with the runs before it: "RTO 4m12s, 18% faster than the
/// median of the 5 drill runs before". Only runs of its mode that reached the clock stop count.
pub(crate) fn trend(rows: &[Row]) -> String {
    let Some((last, earlier)) = rows.split_last() else {
        return "no runs".into();
    };
    if earlier.is_empty() {
        return "first run".into();
    }
    let Some(achieved) = last.rto.achieved else {
        return format!("RTO not reached in the last run ({})", last.verdict);
    };
    // Like with like: a drill against drills, an incident (its prompts, its human waits)
    // against incidents.
    let mode = last.mode.name();
    let before: Vec<f64> = earlier
        .iter()
        .filter(|row| row.mode == last.mode)
        .filter_map(|row| row.rto.achieved)
        .map(|d| d.as_secs_f64())
        .collect();
    if !earlier.iter().any(|row| row.mode == last.mode) {
        return format!(
            "RTO {}; the first {mode} run, nothing like it to compare with",
            format_duration(achieved)
        );
    }
    let Some(median) = crate::predict::median(&before) else {
        return format!(
            "RTO {}; no earlier run reached the clock stop to compare with",
            format_duration(achieved)
        );
    };
    let which = if before.len() == 1 {
        format!("the {mode} run before")
    } else {
        format!("the median of the {} {mode} runs before", before.len())
    };
    let change = if median > 0.0 {
        ((median - achieved.as_secs_f64()) / median * 100.0).round()
    } else {
        0.0
    };
    let comparison = if change > 0.0 {
        format!("{change}% faster than {which}")
    } else if change < 0.0 {
        format!("{}% slower than {which}", -change)
    } else {
        format!("as fast as {which}")
    };
    format!("RTO {}, {comparison}", format_duration(achieved))
}

/// One playbook's history, ready to print.
pub(crate) struct Entry {
    pub name: String,
    pub rows: Vec<Row>,
    pub trend: String,
    pub prediction: Option<Prediction>,
}

impl Entry {
    pub(crate) fn new(name: &str, runs: &[RunState]) -> Entry {
        let of = runs_of(runs, name);
        let rows: Vec<Row> = of.iter().map(|run| Row::of(run)).collect();
        Entry {
            name: name.to_string(),
            trend: trend(&rows),
            prediction: next_run(&of),
            rows,
        }
    }

    pub(crate) fn next(&self) -> String {
        match &self.prediction {
            Some(prediction) => format!("next: {prediction}"),
            None => "next: no prediction (no finished runs)".into(),
        }
    }
}

fn date(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M").to_string()
}

/// "4m12s / 30m", "— / 30m", "4m12s / —".
fn against(measure: &Measure) -> String {
    let achieved = measure
        .achieved
        .map(format_duration)
        .unwrap_or_else(|| "—".into());
    let objective = measure
        .objective
        .map(|o| o.to_string())
        .unwrap_or_else(|| "—".into());
    format!("{achieved} / {objective}")
}

pub(crate) fn cells(row: &Row) -> [String; 6] {
    [
        date(row.started_at),
        row.run_id.clone(),
        row.mode.name().to_string(),
        row.verdict.to_string(),
        against(&row.rto),
        against(&row.rpo),
    ]
}

pub(crate) const HEADINGS: [&str; 6] = [
    "DATE (UTC)",
    "RUN",
    "MODE",
    "VERDICT",
    "RTO ACHIEVED / OBJECTIVE",
    "RPO ACHIEVED / OBJECTIVE",
];

/// A column-aligned table per playbook, then its trend and the next run's prediction.
pub(crate) fn render_text(entries: &[Entry]) -> String {
    let mut out = String::new();
    for (n, entry) in entries.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{}", entry.name);
        let mut rows = vec![HEADINGS.map(str::to_string)];
        rows.extend(entry.rows.iter().map(cells));
        out.push_str(&columns(&rows, "  "));
        let _ = writeln!(out, "trend: {}", entry.trend);
        let _ = writeln!(out, "{}", entry.next());
    }
    out
}

/// A Markdown section per playbook, for a drill log or an audit ticket.
pub(crate) fn render_markdown(entries: &[Entry]) -> String {
    let mut out = String::new();
    for (n, entry) in entries.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "## {}\n", entry.name);
        let _ = writeln!(
            out,
            "| date (UTC) | run | mode | verdict | RTO achieved / objective | RPO achieved / objective |"
        );
        let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
        for row in &entry.rows {
            let cells = cells(row);
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} |",
                cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
            );
        }
        let _ = writeln!(out, "\nTrend: {}\n", entry.trend);
        let _ = writeln!(out, "{}", capitalize(&entry.next()));
    }
    out
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[derive(Serialize)]
struct JsonHistory<'a> {
    playbooks: Vec<JsonPlaybook<'a>>,
}

#[derive(Serialize)]
struct JsonPlaybook<'a> {
    name: &'a str,
    runs: Vec<JsonRun<'a>>,
    trend: &'a str,
    prediction: Option<PredictionJson>,
}

#[derive(Serialize)]
struct JsonRun<'a> {
    run_id: &'a str,
    started_at: String,
    mode: &'static str,
    verdict: &'static str,
    exit_code: u8,
    rto_seconds: Option<f64>,
    rto_objective_seconds: Option<f64>,
    rpo_seconds: Option<f64>,
    rpo_objective_seconds: Option<f64>,
    playbook_hash: &'a str,
}

/// The stable JSON form: the fields in a fixed order, durations in seconds (to the
/// millisecond), `null` where nothing was achieved or promised.
pub(crate) fn render_json(entries: &[Entry]) -> String {
    let seconds = |d: Option<SignedDuration>| d.map(|d| d.as_millis() as f64 / 1000.0);
    let objective =
        |measure: &Measure| seconds(measure.objective.map(crate::duration::Duration::signed));
    let history = JsonHistory {
        playbooks: entries
            .iter()
            .map(|entry| JsonPlaybook {
                name: &entry.name,
                runs: entry
                    .rows
                    .iter()
                    .map(|row| JsonRun {
                        run_id: &row.run_id,
                        started_at: row.started_at.to_string(),
                        mode: row.mode.name(),
                        verdict: row.verdict,
                        exit_code: row.exit_code,
                        rto_seconds: seconds(row.rto.achieved),
                        rto_objective_seconds: objective(&row.rto),
                        rpo_seconds: seconds(row.rpo.achieved),
                        rpo_objective_seconds: objective(&row.rpo),
                        playbook_hash: &row.playbook_hash,
                    })
                    .collect(),
                trend: &entry.trend,
                prediction: entry.prediction.as_ref().map(Prediction::to_json),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&history).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Mode;
    use crate::fixtures::{Journal, planned};

    /// A finished run of `database-restore` whose clock stops after `seconds` (or never).
    fn run(id: &str, start: i64, seconds: Option<i64>, code: u8) -> RunState {
        let mut stop = planned("recover", "command");
        stop.clock_stop = true;
        let mut journal = Journal::start(vec![stop], Some("30m"), None, None);
        if let Some(seconds) = seconds {
            journal.ok("recover", 0, seconds);
        }
        journal.finish(seconds.unwrap_or(1), code);
        let mut state = journal.state();
        state.run_id = id.into();
        state.started_at = crate::fixtures::at(start);
        // The fixture starts the clock at its own base: keep RTOs as given.
        for step in &mut state.steps {
            for attempt in &mut step.attempts {
                attempt.started_at = crate::fixtures::at(start);
                attempt.finished_at = attempt
                    .finished_at
                    .map(|_| crate::fixtures::at(start + seconds.unwrap_or(0)));
            }
        }
        state
    }

    #[test]
    fn the_history_keeps_finished_runs_oldest_first() {
        let mut dry = run("dry", 50, Some(10), 0);
        dry.dry_run = true;
        let waiting = run("waiting", 60, None, 4);
        let mut other = run("other", 70, Some(10), 0);
        other.playbook = "other".into();
        let runs = vec![
            run("r2", 200, Some(100), 1),
            dry,
            run("r1", 100, Some(120), 0),
            waiting,
            other,
        ];
        let ids: Vec<&str> = runs_of(&runs, "database-restore")
            .iter()
            .map(|r| r.run_id.as_str())
            .collect();
        assert_eq!(ids, ["r1", "r2"]);
        assert_eq!(playbooks(&runs), ["database-restore", "other"]);
        let row = Row::of(runs_of(&runs, "database-restore")[1]);
        assert_eq!(row.verdict, "failed");
        assert_eq!(row.exit_code, 1);
    }

    #[test]
    fn the_trend_compares_the_last_run_with_the_median_before() {
        let rows = |rtos: &[Option<i64>]| -> Vec<Row> {
            rtos.iter()
                .enumerate()
                .map(|(n, rto)| Row::of(&run(&format!("r{n}"), n as i64 * 1000, *rto, 0)))
                .collect()
        };
        assert_eq!(trend(&[]), "no runs");
        assert_eq!(trend(&rows(&[Some(300)])), "first run");
        // Median of 300, 320, 280, 310, 290 is 300; 246 is 18% less.
        assert_eq!(
            trend(&rows(&[
                Some(300),
                Some(320),
                Some(280),
                Some(310),
                Some(290),
                Some(246)
            ])),
            "RTO 4m06s, 18% faster than the median of the 5 drill runs before"
        );
        assert_eq!(
            trend(&rows(&[Some(200), Some(250)])),
            "RTO 4m10s, 25% slower than the drill run before"
        );
        assert_eq!(
            trend(&rows(&[Some(200), None, Some(200)])),
            "RTO 3m20s, as fast as the drill run before"
        );
        assert_eq!(
            trend(&rows(&[Some(200), None])),
            "RTO not reached in the last run (succeeded)"
        );
        assert_eq!(
            trend(&rows(&[None, Some(60)])),
            "RTO 1m00s; no earlier run reached the clock stop to compare with"
        );
    }

    #[test]
    fn the_trend_compares_a_drill_with_drills_and_an_incident_with_incidents() {
        let row = |n: i64, rto: i64, mode: Mode| {
            let mut row = Row::of(&run(&format!("r{n}"), n * 1000, Some(rto), 0));
            row.mode = mode;
            row
        };
        // A quick drill, then a slow incident full of prompts: nothing alike to compare with.
        let rows = [row(1, 300, Mode::Drill), row(2, 600, Mode::Incident)];
        assert_eq!(
            trend(&rows),
            "RTO 10m00s; the first incident run, nothing like it to compare with"
        );
        // The next drill is compared with the drill, not with the incident between.
        let rows = [
            row(1, 300, Mode::Drill),
            row(2, 600, Mode::Incident),
            row(3, 240, Mode::Drill),
        ];
        assert_eq!(
            trend(&rows),
            "RTO 4m00s, 20% faster than the drill run before"
        );
    }

    #[test]
    fn the_next_run_is_predicted_from_the_newest_plan() {
        let runs = vec![
            run("r1", 0, Some(100), 0),
            run("r2", 1000, Some(200), 0),
            run("r3", 2000, Some(300), 0),
        ];
        let entry = Entry::new("database-restore", &runs);
        let prediction = entry.prediction.as_ref().expect("prediction");
        assert_eq!(prediction.runs, 3);
        assert_eq!(prediction.median, SignedDuration::from_secs(200));
        assert_eq!(prediction.critical_path, ["recover"]);
        let text = render_text(&[entry]);
        assert!(
            text.contains("next: predicted 3m20s (p90 5m00s) against RTO 30m, from 3 runs"),
            "{text}"
        );
        assert!(text.contains("trend: RTO 5m00s, 100% slower"), "{text}");
        let r2 = text
            .lines()
            .find(|line| line.contains(" r2 "))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "));
        assert!(
            r2.is_some_and(|line| line.ends_with("r2 drill succeeded 3m20s / 30m — / —")),
            "{text}"
        );

        let json: serde_json::Value =
            serde_json::from_str(&render_json(&[Entry::new("database-restore", &runs)]))
                .expect("json");
        let playbook = &json["playbooks"][0];
        assert_eq!(playbook["name"], "database-restore");
        assert_eq!(playbook["runs"][0]["rto_seconds"], 100.0);
        assert_eq!(playbook["runs"][0]["rto_objective_seconds"], 1800.0);
        assert_eq!(playbook["runs"][0]["rpo_seconds"], serde_json::Value::Null);
        assert_eq!(playbook["prediction"]["median_seconds"], 200.0);
    }
}
