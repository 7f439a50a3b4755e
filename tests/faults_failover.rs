//! Kill and resume in the failover lab: the quarterly-failover drill, past its four-eyes gate,
//! is SIGKILLed (drillbook alone, or its whole process tree) at a seeded random point, and
//! `resume` brings it to the end. One lab serves every point: each drill fails the pair over
//! and its cleanup rebuilds the old primary as the new standby, so the next drill goes back.
//! After each: the run succeeded, no step succeeded twice, nothing drillbook started is left
//! running, the standby was promoted exactly once (one more timeline), and the pair is
//! healthy — the new primary writable, the old one streaming from it, the application on the
//! new one.
//!
//! `cargo test` kills at 1 point per kind of kill; `DRILLBOOK_KILL_POINTS=N` at N
//! (bench/faults.sh).

mod common;

use std::time::{Duration, Instant};

use common::http::Receiver;
use common::kill::{Kill, kill, kill_points, repeated_successes, resume_to_completion, survivors};
use common::lab::{Lab, drill_inputs, playbook_copy, run_args};
use common::minutes;
use common::pg::psql_url as psql;

const BOUNDED: usize = 1;

/// The timeline a cluster writes on (each promotion starts a new one).
fn timeline(url: &str) -> u32 {
    psql(
        url,
        "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
    )
    .parse()
    .expect("a timeline")
}

#[test]
fn a_failover_drill_killed_anywhere_resumes_to_a_healthy_pair() {
    let lab = Lab::up(8);
    let receiver = Receiver::start();
    let playbook = playbook_copy(lab.dir.path());
    let playbook = playbook.to_str().expect("utf-8 path");
    let (mut primary, mut standby) = ("A", "B");
    let mut wrong = Vec::new();
    let mut resumed = 0;
    // The first drill runs undisturbed (a kill point past any end): its length past the gate
    // is the window the kills then fall in, 5–100 % of it.
    let mut points = vec![(Kill::Drillbook, Duration::MAX)];
    let mut index = 0;
    while index < points.len() {
        let (how, after) = points[index];
        let run = format!("kill-{index}");
        let label = format!("{run} ({how:?} after {after:?}, {primary} -> {standby})");
        let (env, vars) = drill_inputs(&lab, &receiver, primary);
        let timeline_before = timeline(lab.get(&format!("{primary}_URL")));
        let output = lab
            .drillbook()
            .args(&run_args(playbook, &run, &vars))
            .envs(&env)
            .run();
        assert_eq!(
            output.status, 4,
            "{label}: waits for bob\n{}",
            output.stderr
        );
        let output = lab.approve_as_bob(&run);
        assert_eq!(output.status, 0, "{label}: {}", output.stderr);

        let mut child = lab
            .drillbook()
            .args(&["resume", &run])
            .envs(&env)
            .own_process_group()
            .discard_output()
            .deadline(minutes(4))
            .spawn();
        let started = Instant::now();
        while started.elapsed() < after && child.try_wait().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if index == 0 {
            points.extend(kill_points(BOUNDED, started.elapsed(), 0x0fa1_0e12));
        }
        if child.try_wait().is_none() {
            resumed += 1;
            let below = kill(&mut child, how);
            // A PostgreSQL server that pg_ctl started detaches (its own session) and is meant
            // to outlive drillbook: it is the standby the drill rebuilds.
            let below: Vec<_> = below
                .into_iter()
                .filter(|(_, name)| name != "postgres")
                .collect();
            for (pid, name) in survivors(&below) {
                wrong.push(format!("{label}: {name} ({pid}) outlived the kill"));
            }
        }
        let output = resume_to_completion(lab.dir.path(), &run, &env);
        if output.status != 0 {
            wrong.push(format!(
                "{label}: resume ended with {}\n{}\n{}",
                output.status, output.stdout, output.stderr
            ));
            break;
        }
        wrong.extend(
            repeated_successes(lab.dir.path(), &run)
                .into_iter()
                .map(|problem| format!("{label}: {problem}")),
        );
        let (new_primary, new_standby) = (
            lab.get(&format!("{standby}_URL")).to_string(),
            lab.get(&format!("{primary}_URL")).to_string(),
        );
        if psql(&new_primary, "SELECT pg_is_in_recovery()") != "f" {
            wrong.push(format!("{label}: {standby} is not the primary"));
        }
        let promoted = timeline(&new_primary);
        if promoted != timeline_before + 1 {
            wrong.push(format!(
                "{label}: {standby} is on timeline {promoted}, {primary} was on {timeline_before}: promoted {} times",
                promoted - timeline_before
            ));
        }
        let marker = format!("after {run}");
        psql(
            &new_primary,
            &format!("INSERT INTO orders (item) VALUES ('{marker}')"),
        );
        let reached = (0..300).any(|_| {
            let found = std::process::Command::new("psql")
                .args(["-XAtq", &new_standby, "-c"])
                .arg(format!(
                    "SELECT count(*) FROM orders WHERE item = '{marker}'"
                ))
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "1");
            if !found {
                std::thread::sleep(Duration::from_millis(100));
            }
            found
        });
        if !reached {
            let report = lab.drillbook().args(&["report", &run]).run();
            wrong.push(format!(
                "{label}: a write on {standby} never reached {primary}\n{}\n{}",
                lab.status(),
                report.stdout
            ));
            break;
        }
        let app_env = lab.app_env();
        if !app_env.contains(&format!("DATABASE_URL={new_primary}\n")) {
            wrong.push(format!(
                "{label}: the application is not on {standby}: {app_env}"
            ));
        }
        (primary, standby) = (standby, primary);
        index += 1;
    }
    eprintln!(
        "KILLS failover: points={} resumed={} wrong={}",
        points.len() - 1,
        resumed,
        wrong.len()
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
