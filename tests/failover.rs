//! The quarterly failover, for real, on the failover lab (scripts/failover-lab.sh): a
//! PostgreSQL primary with a streaming standby, two buckets, Redis and the application.
//! `playbooks/quarterly-failover.yaml` runs in drill mode: the standby becomes the primary,
//! the application follows it and the storage mirror, the notifications arrive, and the
//! cleanup leaves a healthy pair, so a second drill right after passes too. Killed right after
//! the promote, a drill resumes without promoting again.

mod common;

use std::time::Duration;

use common::argv::{Sampler, unique};
use common::drill::{assessed_age, json_report, reported_rpo, shipped, step};
use common::http::Receiver;
use common::lab::{
    Lab, count, drill_inputs, four_eyes_drill, password_in, playbook_copy, redis_keys, run_args,
    with_password,
};
use common::pg::psql_url as psql;
use common::{journal, wait_for};

#[test]
fn two_drills_in_a_row_fail_over_and_leave_a_healthy_pair() {
    let lab = Lab::up(13);
    let receiver = Receiver::start();
    let playbook = playbook_copy(lab.dir.path());
    let playbook = playbook.to_str().expect("utf-8 path");
    assert!(!lab.in_recovery("A") && lab.in_recovery("B"));
    // Every process's command line, read every 10 ms through both drills: the databases'
    // password and the tokens never show (the fence's psql, the checkpoint's and pg_rewind
    // connect through their environment).
    let password = unique("lab-password");
    let watched = [
        "--command=ALTER SYSTEM SET default_transaction_read_only",
        "--command=CHECKPOINT",
        "pg_rewind --target-pgdata",
    ];
    let sampler = Sampler::start(
        &[&password, "statuspage-secret-token", "B000/secret-token"],
        &watched,
    );

    // A write after the lab's nightly dump, archived: the archive is newer than the dump.
    std::thread::sleep(Duration::from_millis(1_500));
    let switched = psql(
        lab.get("A_URL"),
        "INSERT INTO orders (item) VALUES ('archived before the drill'); SELECT pg_walfile_name(pg_switch_wal())",
    );
    wait_for(Duration::from_secs(30), "the write to be archived", || {
        psql(
            lab.get("A_URL"),
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        ) >= switched
    });

    // Drill 1: A -> B.
    let (env, vars) = drill_inputs(&lab, &receiver, "A");
    let env = with_password(env, &password);
    four_eyes_drill(&lab, playbook, "drill-1", &env, &vars);

    // The standby is the primary and takes writes; the old primary follows it.
    assert!(!lab.in_recovery("B"), "B was promoted");
    psql(
        lab.get("B_URL"),
        "INSERT INTO orders (item) VALUES ('after the failover')",
    );
    assert!(lab.in_recovery("A"), "A was rebuilt as the new standby");
    assert_eq!(
        psql(
            lab.get("B_URL"),
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        ),
        "1"
    );
    wait_for(Duration::from_secs(10), "the write to reach A", || {
        psql(
            lab.get("A_URL"),
            "SELECT count(*) FROM orders WHERE item = 'after the failover'",
        ) == "1"
    });
    // The application points at B; its storage went to the mirror (the smoke test saw it
    // there), and the drill's cleanup pointed it back at the primary bucket.
    let app_env = lab.app_env();
    assert!(
        app_env.contains(&format!(
            "DATABASE_URL={}\n",
            password_in(lab.get("B_URL"), &password)
        )),
        "{app_env}"
    );
    assert!(
        app_env.contains(&format!("STORAGE_URL={}\n", lab.get("STORAGE"))),
        "{app_env}"
    );
    assert_eq!(redis_keys(13), "0", "the cache was flushed");

    let report = json_report(lab.dir.path(), "drill-1");
    // The standby had replayed everything it received: no lag, on an idle primary too.
    let lag = step(&report, "assess")["outputs"]["replication_lag"]
        .as_str()
        .expect("replication lag")
        .to_string();
    assert!(
        lag.ends_with("ms") || (lag.ends_with('s') && !lag.contains(['m', 'h', 'd'])),
        "a lag under a minute: {lag}"
    );
    // The lab's primary archives its WAL: the report's RPO is the archive's last commit (the
    // write above), not the nightly dump's age.
    let archive = step(&report, "assess_archive");
    assert_eq!(archive["status"], "succeeded", "{archive}");
    let archive_text = archive.to_string();
    assert!(
        archive_text.contains("the last commit archived"),
        "{archive_text}"
    );
    let expected = assessed_age(&report, "assess_archive").max(0.0);
    let achieved = reported_rpo(&report);
    let dump = assessed_age(&report, "assess");
    assert!(
        (achieved - expected).abs() < 1.0,
        "RPO {achieved} s, the archive's {expected} s"
    );
    assert!(
        dump > expected + 1.0,
        "the dump ({dump} s old) predates the archive's last commit ({expected} s old)"
    );
    let smoke = step(&report, "smoke");
    assert_eq!(smoke["status"], "succeeded", "{smoke}");
    let smoke_text = smoke.to_string();
    assert!(smoke_text.contains("lab-mirror"), "{smoke_text}");
    assert_eq!(step(&report, "storage_parity")["status"], "succeeded");
    assert_eq!(step(&report, "switch_storage")["status"], "succeeded");
    for id in [
        "stop_old_primary",
        "rewind_old_primary",
        "start_new_standby",
        "check_pair",
    ] {
        assert_eq!(
            step(&report, id)["status"],
            "succeeded",
            "{id}: {}",
            step(&report, id)
        );
    }
    // The mirror holds every object of the bucket.
    let bucket = lab.s3.root.join("lab-storage/app/uploads");
    let mirror = lab.s3.root.join("lab-mirror/app/uploads");
    for entry in std::fs::read_dir(&bucket).expect("bucket") {
        let name = entry.expect("entry").file_name();
        assert_eq!(
            std::fs::read(bucket.join(&name)).unwrap(),
            std::fs::read(mirror.join(&name)).unwrap_or_default(),
            "{name:?} in the mirror"
        );
    }

    // The notifications, counted where they arrived.
    let chat = count(&receiver, "POST", "/hooks/");
    let updates = receiver
        .received()
        .iter()
        .filter(|r| r.body.contains("elapsed of the"))
        .count();
    assert!(
        updates >= 2,
        "updates every 200 ms during the drill: {updates}"
    );
    assert_eq!(chat, updates + 2, "declare, the updates and restored");
    assert_eq!(count(&receiver, "POST", "/v1/pages/lab/incidents"), 1);
    assert_eq!(
        count(&receiver, "PATCH", "/v1/pages/lab/incidents/incident-"),
        1,
        "the incident it opened was resolved: {:?}",
        receiver.received()
    );
    assert!(
        receiver.received().iter().any(|r| r
            .headers
            .iter()
            .any(|(n, v)| n == "authorization" && v == "OAuth statuspage-secret-token")),
        "the status page got its token"
    );
    // The report lists every message, as many as arrived.
    let listed: Vec<&serde_json::Value> = report["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .filter(|n| n["delivered"] == true)
        .collect();
    assert_eq!(listed.len(), receiver.received().len(), "{listed:?}");
    assert_eq!(
        listed.iter().filter(|n| n["step"] == "updates").count(),
        updates
    );
    // Secrets never reach the journal.
    let journal_text =
        std::fs::read_to_string(lab.state().join("runs/drill-1/journal.jsonl")).expect("journal");
    assert!(!journal_text.contains("statuspage-secret-token"));
    assert!(!journal_text.contains("secret-token"));

    // The post-mortem: timeline, objectives with verdicts, approvals, messages.
    let md = lab
        .drillbook()
        .args(&["report", "drill-1", "--format", "md"])
        .run();
    assert_eq!(md.status, 0, "{}", md.stderr);
    for needle in [
        "## Timeline",
        "RTO",
        "RPO",
        "## Approvals",
        "bob",
        "## Communication",
        "promote_standby",
        "met",
    ] {
        assert!(md.stdout.contains(needle), "{needle} in\n{}", md.stdout);
    }

    // Drill 2, right after: B -> A.
    let (env, vars) = drill_inputs(&lab, &receiver, "B");
    let env = with_password(env, &password);
    four_eyes_drill(&lab, playbook, "drill-2", &env, &vars);
    sampler.stop().assert_no_secret_while_all_ran();
    assert!(
        !lab.in_recovery("A") && lab.in_recovery("B"),
        "back to A primary, B standby"
    );
    assert!(lab.app_env().contains(&format!(
        "DATABASE_URL={}\n",
        password_in(lab.get("A_URL"), &password)
    )));
    psql(
        lab.get("A_URL"),
        "INSERT INTO orders (item) VALUES ('after the second failover')",
    );
    assert_eq!(count(&receiver, "POST", "/v1/pages/lab/incidents"), 2);

    // The history shows both drills, and a prediction for the next.
    let history = lab
        .drillbook()
        .args(&["history", "quarterly-failover", "--format", "json"])
        .run();
    assert_eq!(history.status, 0, "{}", history.stderr);
    let history: serde_json::Value = serde_json::from_str(&history.stdout).expect("JSON");
    let playbook = &history["playbooks"][0];
    let runs: Vec<&str> = playbook["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| {
            assert_eq!(run["exit_code"], 0, "{run}");
            assert!(
                run["rto_seconds"].as_f64().is_some_and(|s| s > 0.0),
                "{run}"
            );
            run["run_id"].as_str().expect("id")
        })
        .collect();
    assert_eq!(runs, ["drill-1", "drill-2"]);
    let prediction = &playbook["prediction"];
    assert_eq!(prediction["runs"], 2, "{prediction}");
    assert!(
        prediction["median_seconds"]
            .as_f64()
            .is_some_and(|s| s > 0.0),
        "{prediction}"
    );
    // The critical path runs to the clock stop through one of its two branches: the database
    // (through the promotion) or the storage (through the switch). Which one is longer depends
    // on this machine's timing of the two drills, so either is right.
    assert!(
        prediction["critical_path"].as_array().is_some_and(|path| {
            path.last().is_some_and(|step| step == "smoke")
                && path
                    .iter()
                    .any(|step| step == "promote_standby" || step == "switch_storage")
        }),
        "{prediction}"
    );
    // The second drill's HTML report sets its RTO against the first's.
    let html = lab
        .drillbook()
        .args(&["report", "drill-2", "--format", "html"])
        .run();
    assert_eq!(html.status, 0, "{}", html.stderr);
    assert!(
        html.stdout.contains("drill-1"),
        "the previous run in the HTML report"
    );
}

#[test]
fn a_drill_refuses_targets_that_are_live() {
    let lab = Lab::up(14);
    let receiver = Receiver::start();
    let (mut env, vars) = drill_inputs(&lab, &receiver, "A");
    // The live primary is set, and is the drill's standby (127.0.0.1 and localhost are one host).
    let live = lab.get("B_URL").replace("127.0.0.1", "localhost");
    env.push(("DATABASE_URL".into(), live));
    let playbook = shipped("quarterly-failover.yaml");
    let output = lab
        .drillbook()
        .args(&run_args(&playbook, "refused", &vars))
        .envs(&env)
        .run();
    assert_eq!(output.status, 2, "{}\n{}", output.stdout, output.stderr);
    assert!(
        output.stderr.contains("drill target `standby`")
            && output.stderr.contains("live target `primary`"),
        "{}",
        output.stderr
    );
    assert!(lab.in_recovery("B"), "nothing was promoted");
    assert!(
        !lab.state().join("runs/refused").exists(),
        "no run was started"
    );
    assert!(receiver.received().is_empty(), "nothing was announced");
}

#[test]
fn killed_right_after_the_promote_resumes_without_promoting_again() {
    let lab = Lab::up(15);
    let receiver = Receiver::start();
    let playbook = playbook_copy(lab.dir.path());
    let playbook = playbook.to_str().expect("utf-8 path");
    let (env, vars) = drill_inputs(&lab, &receiver, "A");
    let output = lab
        .drillbook()
        .args(&run_args(playbook, "killed", &vars))
        .envs(&env)
        .run();
    assert_eq!(output.status, 4, "{}\n{}", output.stdout, output.stderr);
    let output = lab.approve_as_bob("killed");
    assert_eq!(output.status, 0, "{}", output.stderr);
    let mut child = lab
        .drillbook()
        .args(&["resume", "killed"])
        .envs(&env)
        .discard_output()
        .spawn();
    wait_for(Duration::from_secs(120), "the promote to finish", || {
        lab.state().join("runs/killed").exists()
            && !common::events(
                &journal(lab.dir.path(), "killed"),
                "step_finished",
                Some("promote_standby"),
            )
            .is_empty()
    });
    child.kill();
    assert!(!lab.in_recovery("B"), "B was promoted before the kill");

    let output = lab.drillbook().args(&["resume", "killed"]).envs(&env).run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let records = journal(lab.dir.path(), "killed");
    assert_eq!(
        common::events(&records, "step_started", Some("promote_standby")).len(),
        1,
        "promoted once"
    );
    // Each promotion starts a timeline: the pair began on 1.
    assert_eq!(
        psql(
            lab.get("B_URL"),
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
        ),
        "2",
        "promoted exactly once"
    );
    let report = json_report(lab.dir.path(), "killed");
    assert_eq!(step(&report, "smoke")["status"], "succeeded");
    assert_eq!(step(&report, "check_pair")["status"], "succeeded");
    assert!(lab.in_recovery("A"));
}
