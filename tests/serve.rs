//! `drillbook serve` over HTTP, as a browser without JavaScript uses it: sign-in, the runs, a
//! run's live view and reports, a four-eyes gate approved by a second person signed in while
//! the first waits at the runner's terminal; roles, CSRF and the sign-in limit refused.

mod common;

use std::time::Duration;

use common::web::{Person, Server};
use common::{Drillbook, events, journal, wait_for};

const GATED: &str = r#"version: 1
name: gated
steps:
  - { id: prepare, kind: command, run: [touch, prepared] }
  - id: promote
    kind: command
    needs: [prepare]
    run: [touch, promoted]
    approval: { prompt: "Promote the standby?", approvers: 2 }
"#;

/// A state directory with three accounts: bob approves, victor only looks, mallory approves
/// but forgets her password.
fn accounts(dir: &std::path::Path) {
    let users = drillbook::serve::users::path(&dir.join(".drillbook"));
    use drillbook::serve::users::{Role, add};
    add(&users, "bob", Role::Approver, "bob's long password").unwrap();
    add(&users, "victor", Role::Viewer, "victor's long password").unwrap();
    add(&users, "mallory", Role::Approver, "mallory's long password").unwrap();
}

#[test]
fn a_second_approver_signed_in_approves_a_gate_the_first_answered_at_a_terminal() {
    let test = Drillbook::new().playbook("p.yaml", GATED);
    let dir = test.dir().to_path_buf();
    accounts(&dir);
    let server = Server::start(&dir, &[]);

    // Alice runs the drill at a terminal and approves first.
    let mut screen = common::web::first_approver_at_a_terminal(&dir, "gated-1");

    // Bob signs in and finds the gate waiting, with Alice's approval.
    let mut bob = Person::at(&server);
    assert_eq!(
        bob.get("/runs").location(),
        "/login",
        "signed out: to the sign-in"
    );
    let signed = bob.sign_in("bob", "bob's long password");
    assert_eq!(
        (signed.status, signed.location()),
        (303, "/runs".to_string())
    );
    let cookie = signed.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let runs = bob.get("/runs");
    assert_eq!(runs.status, 200);
    assert!(runs.body.contains("gated-1"), "{}", runs.body);
    let filtered = bob.get("/runs?status=succeeded");
    assert!(
        !filtered.body.contains("href=\"/runs/gated-1\""),
        "{}",
        filtered.body
    );
    let filtered = bob.get("/runs?playbook=gated&mode=drill&status=running&since=1h");
    assert!(
        filtered.body.contains("href=\"/runs/gated-1\""),
        "{}",
        filtered.body
    );
    let refused = bob.get("/runs?status=sideways");
    assert!(refused.body.contains("expected one of"), "{}", refused.body);
    let approvals = bob.get("/approvals");
    assert!(
        approvals.body.contains("Promote the standby?"),
        "{}",
        approvals.body
    );
    assert!(
        approvals.body.contains("approved so far: alice"),
        "{}",
        approvals.body
    );
    let live = bob.get("/runs/gated-1");
    assert!(
        live.body.contains("data-src=\"/runs/gated-1/live\""),
        "{}",
        live.body
    );
    assert!(bob.get("/runs/gated-1/live").body.contains("promote"));

    // Without the form's token: refused, nothing recorded.
    let forged = bob.post(
        "/runs/gated-1/decide",
        &[("step", "promote"), ("decision", "approve")],
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.body.contains("CSRF"), "{}", forged.body);
    let wrong = bob.post(
        "/runs/gated-1/decide",
        &[
            ("step", "promote"),
            ("decision", "approve"),
            ("csrf", "guessed"),
        ],
    );
    assert_eq!(wrong.status, 403, "{}", wrong.body);

    // Victor may look, not decide.
    let mut victor = Person::at(&server);
    victor.sign_in("victor", "victor's long password");
    let page = victor.get("/approvals");
    assert!(!page.body.contains("name=\"decision\""), "{}", page.body);
    let refused = victor.post(
        "/runs/gated-1/decide",
        &[
            ("step", "promote"),
            ("decision", "approve"),
            ("csrf", &page.csrf()),
        ],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("viewer"), "{}", refused.body);
    assert_eq!(
        events(
            &journal(&dir, "gated-1"),
            "approval_decided",
            Some("promote")
        )
        .len(),
        1,
        "only Alice's so far"
    );

    // Bob approves: the run at the terminal takes his decision and finishes.
    let csrf = approvals.csrf();
    let decided = bob.post(
        "/runs/gated-1/decide",
        &[
            ("step", "promote"),
            ("decision", "approve"),
            ("reason", "standby checked"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(decided.status, 303, "{}", decided.body);
    assert!(
        decided.location().starts_with("/runs/gated-1?said="),
        "{}",
        decided.location()
    );
    screen.until("SUCCEEDED");
    assert_eq!(screen.exit_status(), 0);
    assert!(dir.join("promoted").exists());
    let decided = events(
        &journal(&dir, "gated-1"),
        "approval_decided",
        Some("promote"),
    )
    .into_iter()
    .cloned()
    .collect::<Vec<_>>();
    assert_eq!(decided.len(), 2);
    assert_eq!(decided[1]["by"], "bob");
    assert_eq!(decided[1]["account"]["via"], "drillbook serve");
    assert_eq!(decided[1]["reason"], "standby checked");

    // The finished run, and its reports.
    wait_for(
        Duration::from_secs(10),
        "the run page to show it over",
        || bob.get("/runs/gated-1").body.contains("status-succeeded"),
    );
    let html = bob.get("/runs/gated-1/report/html");
    assert_eq!(html.status, 200);
    assert!(
        html.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(html.body.contains("bob"), "{}", html.body);
    let json = bob.get("/runs/gated-1/report/json");
    assert!(
        json.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("gated-1.json")
    );
    let report: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(report["run_id"], "gated-1");
    let health = bob.get("/health");
    assert!(health.body.contains("gated"), "{}", health.body);

    // Signing out ends the session.
    let csrf = bob.get("/runs").csrf();
    assert_eq!(bob.post("/logout", &[("csrf", &csrf)]).status, 303);
    assert_eq!(bob.get("/runs").location(), "/login");
}

#[test]
fn no_page_shows_a_secret() {
    let canary = "canary-s3cr3t-7f9e2b";
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: leaky
secrets: [TOKEN]
steps:
  - { id: echo, kind: command, run: [sh, -c, "echo token is $TOKEN; echo $TOKEN >&2"], env: { TOKEN: "{{ secrets.TOKEN }}" } }
"#,
    );
    let dir = test.dir().to_path_buf();
    accounts(&dir);
    let ran = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--run-id", "leaky-1"])
        .env("TOKEN", canary)
        .run();
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let server = Server::start(&dir, &[]);
    let mut bob = Person::at(&server);
    bob.sign_in("bob", "bob's long password");
    for page in [
        "/runs",
        "/runs/leaky-1",
        "/runs/leaky-1/live",
        "/approvals",
        "/health",
        "/runs/leaky-1/report/html",
        "/runs/leaky-1/report/md",
        "/runs/leaky-1/report/json",
        "/runs/leaky-1/report/junit",
    ] {
        let got = bob.get(page);
        assert_eq!(got.status, 200, "{page}");
        assert!(!got.body.contains(canary), "{page} shows the secret");
    }
    assert!(bob.get("/runs/leaky-1").body.contains("token is ***"));
}

#[test]
fn five_wrong_passwords_slow_the_next_sign_in_down() {
    let test = Drillbook::new();
    let dir = test.dir().to_path_buf();
    accounts(&dir);
    let server = Server::start(&dir, &[]);
    let mut mallory = Person::at(&server);
    for attempt in 1..=5 {
        let page = mallory.sign_in("mallory", "not her password");
        assert_eq!(
            (page.status, page.location()),
            (303, "/login?error=wrong+name+or+password".to_string()),
            "attempt {attempt}"
        );
    }
    // Now even the right password waits.
    let page = mallory.sign_in("mallory", "mallory's long password");
    assert_eq!(page.status, 429, "{}", page.body);
    let wait: u64 = page.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 25, "{wait}");
    assert!(
        page.body.contains("too many failed sign-ins"),
        "{}",
        page.body
    );
    // The limit counts by address too: another name from the same address waits as well.
    let mut bob = Person::at(&server);
    assert_eq!(bob.sign_in("bob", "bob's long password").status, 429);
}

#[test]
fn a_trusted_proxy_signs_people_in_and_nobody_else_can_claim_a_name() {
    let test = Drillbook::new();
    let dir = test.dir().to_path_buf();
    accounts(&dir);
    let server = Server::start(
        &dir,
        &[
            "--trusted-proxy",
            "127.0.0.1",
            "--identity-header",
            "X-Forwarded-User",
        ],
    );
    let mut bob = Person::at(&server);
    bob.headers.push(("X-Forwarded-User".into(), "bob".into()));
    let runs = bob.get("/runs");
    assert_eq!(runs.status, 200, "{}", runs.body);
    assert!(runs.body.contains("bob · approver"), "{}", runs.body);
    // A run id that is not one is refused before anything else looks at it.
    let csrf = runs.csrf();
    let odd = bob.post(
        "/runs/..%2Fx%0Ay/decide",
        &[
            ("step", "promote"),
            ("decision", "approve"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(odd.status, 404, "{}", odd.body);
    assert!(odd.body.contains("not a valid run id"), "{}", odd.body);
    // A name the users file does not know only looks.
    let mut stranger = Person::at(&server);
    stranger
        .headers
        .push(("X-Forwarded-User".into(), "zed".into()));
    assert!(stranger.get("/runs").body.contains("zed · viewer"));

    // From an address that is not the proxy's, the header means nothing.
    let untrusted = Server::start(
        &dir,
        &[
            "--trusted-proxy",
            "192.0.2.7",
            "--identity-header",
            "X-Forwarded-User",
        ],
    );
    let mut claimant = Person::at(&untrusted);
    claimant
        .headers
        .push(("X-Forwarded-User".into(), "bob".into()));
    assert_eq!(claimant.get("/runs").location(), "/login");
}

#[test]
fn user_add_reads_the_password_from_standard_input_and_keeps_only_its_hash() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::binary())
        .args(["user", "add", "carol", "--role", "approver"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"carol's long password\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("carol (approver) can sign in"), "{stderr}");
    let file = std::fs::read_to_string(dir.path().join(".drillbook/users.json")).unwrap();
    assert!(file.contains("$argon2id$"), "{file}");
    assert!(!file.contains("carol's long password"));
}
