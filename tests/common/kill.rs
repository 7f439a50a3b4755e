//! Killing drillbook at seeded random points, and bringing its run to completion with
//! `resume`: the kill (drillbook alone, or its whole process tree), the processes it left,
//! and a resume that answers the questions a non-idempotent step in flight asks.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Drillbook, EnvPair, Output, Running, alive, journal, minutes, run_ids};

/// How drillbook is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// SIGKILL of drillbook's own process.
    Drillbook,
    /// SIGKILL of its process group and of every process below it, at once.
    Tree,
}

/// Where the kills fall: `n` points per kind of kill, each a seeded fraction (5–100 %) of
/// `window` after the start. `DRILLBOOK_KILL_POINTS` sets `n` for the full form.
pub fn kill_points(bounded: usize, window: Duration, seed: u64) -> Vec<(Kill, Duration)> {
    let n = std::env::var("DRILLBOOK_KILL_POINTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(bounded);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut points = Vec::new();
    for kill in [Kill::Drillbook, Kill::Tree] {
        for _ in 0..n {
            let fraction = 0.05 + 0.95 * rng.f64();
            points.push((kill, window.mul_f64(fraction)));
        }
    }
    points
}

/// The pids of every process below `pid` (children, theirs, ...).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parents.push((child, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(next) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == next && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// The command name of a process (empty once it is gone).
pub fn command_name(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Kills `child` the way `kill` says; returns the processes that were below it then, as
/// (pid, command name).
pub fn kill(child: &mut Running, kill: Kill) -> Vec<(i32, String)> {
    let below: Vec<(i32, String)> = descendants(child.pid())
        .into_iter()
        .map(|pid| (pid, command_name(pid)))
        .collect();
    if kill == Kill::Tree {
        // SAFETY: signalling processes this test started (drillbook's group, its children);
        // drillbook is not reaped yet, so its group id cannot have been reused.
        unsafe {
            libc::kill(-child.pid(), libc::SIGKILL);
            for &(pid, _) in &below {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    child.kill();
    below
}

/// Waits (up to 20 s) for the processes in `pids` to be gone; those still alive.
pub fn survivors(pids: &[(i32, String)]) -> Vec<(i32, String)> {
    let started = Instant::now();
    loop {
        let alive: Vec<(i32, String)> = pids
            .iter()
            .filter(|(pid, _)| alive(*pid))
            .cloned()
            .collect();
        if alive.is_empty() || started.elapsed() > Duration::from_secs(20) {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `resume RUN` until the run ends: a non-idempotent step that was in flight is asked
/// about (exit 4), approved for a re-run, and resumed again. The last output.
pub fn resume_to_completion<I>(dir: &Path, run: &str, env: I) -> Output
where
    I: IntoIterator + Clone,
    I::Item: EnvPair,
{
    let mut output = None;
    for _ in 0..4 {
        let resumed = Drillbook::in_dir(dir)
            .args(&["resume", run])
            .envs(env.clone())
            .deadline(minutes(4))
            .run();
        if resumed.status != 4 {
            return resumed;
        }
        // It names the command that answers: `drillbook approve RUN STEP`.
        let asked = format!("drillbook approve {run} ");
        let text = format!("{}\n{}", resumed.stdout, resumed.stderr);
        let waiting: Vec<String> = text
            .match_indices(&asked)
            .filter_map(|(at, _)| text[at + asked.len()..].split_whitespace().next())
            .map(|step| step.trim_matches(|c: char| !c.is_alphanumeric() && c != '_'))
            .map(str::to_owned)
            .collect();
        assert!(!waiting.is_empty(), "resume waits, but for what?\n{text}");
        for step in waiting {
            let _ = Drillbook::in_dir(dir)
                .args(&["approve", run, &step, "--as", "fault-suite"])
                .envs(env.clone())
                .run();
        }
        output = Some(resumed);
    }
    output.expect("resumed")
}

/// The only run in `dir`, if drillbook got as far as making one.
pub fn the_run(dir: &Path) -> Option<String> {
    let ids = run_ids(dir);
    assert!(ids.len() <= 1, "runs: {ids:?}");
    ids.into_iter().next()
}

/// Steps of `run` journalled as succeeded more than once, or started again after they
/// succeeded: a side effect repeated.
pub fn repeated_successes(dir: &Path, run: &str) -> Vec<String> {
    let records = journal(dir, run);
    let mut problems = Vec::new();
    let mut succeeded: Vec<String> = Vec::new();
    for record in &records {
        let step = record["step"].as_str().unwrap_or_default().to_owned();
        let finished = record["event"] == "step_finished" && record["status"] == "succeeded";
        match record["event"].as_str() {
            Some("step_finished") if finished => {
                if succeeded.contains(&step) {
                    problems.push(format!("{step} succeeded twice"));
                }
                succeeded.push(step);
            }
            Some("step_started") if succeeded.contains(&step) => {
                problems.push(format!("{step} started again after it succeeded"));
            }
            _ => {}
        }
    }
    problems
}
