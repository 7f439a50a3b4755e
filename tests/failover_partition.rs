//! A network partition in the middle of the quarterly failover. The failover lab's primary
//! runs in a network namespace of its own (`LAB_NETNS`); after the four-eyes gate, and before
//! the fence, `failover-lab.sh partition` drops every packet between it and the rest (nothing
//! answers, nothing is refused). The playbook fences what it can — nothing: the fence fails
//! in its 10 s connect timeout — asks whether to go on unfenced (the run's pre-approval says
//! yes), tells the channel, promotes the standby, and leaves the old primary alone: rebuilding
//! an unfenced primary could discard writes it took. The report says so.

mod common;

use common::drill::{json_report, step};
use common::http::Receiver;
use common::lab::{Lab, drill_inputs, playbook_copy, run_args};
use common::pg::psql_url as psql;
use common::{events, journal};

#[test]
fn a_partitioned_primary_is_reported_unfenced_and_the_standby_takes_over() {
    let netns = format!("dbl-test-{}", std::process::id());
    let lab = Lab::up_in_netns(10, &netns);
    assert!(
        lab.get("A_HOST").starts_with("10.231."),
        "the primary is in its namespace: {}",
        lab.get("A_URL")
    );
    let receiver = Receiver::start();
    let playbook = playbook_copy(lab.dir.path());
    let playbook = playbook.to_str().expect("utf-8 path");
    let (env, vars) = drill_inputs(&lab, &receiver, "A");

    // The run pre-approves as alice and waits for a second approver.
    let output = lab
        .drillbook()
        .args(&run_args(playbook, "cut", &vars))
        .envs(&env)
        .run();
    assert_eq!(output.status, 4, "{}\n{}", output.stdout, output.stderr);

    // The primary's region drops off the network; bob approves from elsewhere.
    lab.network("partition");
    let output = lab.approve_as_bob("cut");
    assert_eq!(output.status, 0, "{}", output.stderr);
    let resumed = lab.drillbook().args(&["resume", "cut"]).envs(&env).run();

    // The fence failed, and said why; the run went on.
    let records = journal(lab.dir.path(), "cut");
    let fence = events(&records, "step_finished", Some("fence_primary"));
    assert_eq!(fence.len(), 1, "one fence attempt: {fence:?}");
    assert_eq!(fence[0]["status"], "failed", "{:?}", fence[0]);
    let said = fence[0].to_string();
    assert!(
        said.contains("timeout expired") && said.contains(lab.get("A_HOST")),
        "the fence names the unreachable primary: {said}"
    );
    // The promote went ahead after `unfenced` (alice's pre-approval), once.
    let unfenced = events(&records, "step_finished", Some("unfenced"));
    assert_eq!(
        unfenced.len(),
        1,
        "`unfenced` decided once (resume exit {})\n{}",
        resumed.status,
        resumed.stderr
    );
    assert_eq!(unfenced[0]["status"], "succeeded", "{:?}", unfenced[0]);
    assert_eq!(
        events(&records, "step_started", Some("promote_standby")).len(),
        1
    );
    assert_eq!(
        psql(lab.get("B_URL"), "SELECT pg_is_in_recovery()"),
        "f",
        "B was promoted\n{}\n{}",
        resumed.stdout,
        resumed.stderr
    );
    let app_env = lab.app_env();
    assert!(
        app_env.contains(&format!("DATABASE_URL={}\n", lab.get("B_URL"))),
        "the application follows B: {app_env}"
    );

    // The channel was told the old primary is not fenced.
    let told = receiver
        .received()
        .iter()
        .filter(|r| r.path.starts_with("/hooks/") && r.body.contains("could not be fenced"))
        .count();
    assert_eq!(told, 1, "one warning in the channel");

    // The report: the fence failed with its reason, the service is back (smoke passed), and
    // the automatic rebuild of the old primary was skipped rather than run on an unfenced one.
    let report = json_report(lab.dir.path(), "cut");
    assert_eq!(step(&report, "fence_primary")["status"], "failed");
    assert_eq!(step(&report, "promote_standby")["status"], "succeeded");
    assert_eq!(step(&report, "smoke")["status"], "succeeded", "{report}");
    for rebuild in [
        "stop_old_primary",
        "rewind_old_primary",
        "start_new_standby",
        "check_new_standby",
    ] {
        assert_eq!(step(&report, rebuild)["status"], "skipped", "{rebuild}");
    }
    assert_eq!(
        resumed.status, 0,
        "the service is back within the objectives (the fence may fail: continue_on_failure)\n{}\n{}",
        resumed.stdout, resumed.stderr
    );
    let text = lab
        .drillbook()
        .args(&["report", "cut", "--format", "md"])
        .run();
    assert!(
        text.stdout.contains("fence_primary") && text.stdout.contains("timeout expired"),
        "the Markdown report says what could not be fenced:\n{}",
        text.stdout
    );

    // And it was not fenced: healed, the old primary is still a writable primary — what the
    // report and the channel warned of.
    lab.network("heal");
    assert_eq!(psql(lab.get("A_URL"), "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(
        psql(
            lab.get("A_URL"),
            "SELECT current_setting('default_transaction_read_only')"
        ),
        "off"
    );
}
