//! `notify` posts a Slack-compatible message to a webhook taken from a secret, and is retried
//! when the receiver fails. The receiver is a real HTTP server on loopback.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::{Drillbook, events, journal, only_run};

/// Answers each request with the next status in `statuses` (then 200) and keeps the bodies.
fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/hooks/T000/B000/abcdef",
        listener.local_addr().expect("addr")
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&body).into_owned());
            let status = statuses.next().unwrap_or(200);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
        }
    });
    (url, bodies)
}

#[test]
fn posts_the_message_and_retries_a_failing_receiver() {
    let (url, bodies) = receiver(vec![500]);
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: comms
objectives: { rto: 30m }
secrets: [SLACK_WEBHOOK]
steps:
  - id: declare
    kind: notify
    webhook: "{{ secrets.SLACK_WEBHOOK }}"
    message: "Drill {{ run.id }} started ({{ run.mode }}, RTO {{ run.rto }})"
    retry: { attempts: 3, backoff: 100ms }
"#,
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml"])
        .env("SLACK_WEBHOOK", &url)
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let run = only_run(&dir);
    let bodies = bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 2, "one failure, one retry: {bodies:?}");
    let message: serde_json::Value = serde_json::from_str(&bodies[1]).expect("json body");
    assert_eq!(
        message["text"],
        format!("Drill {run} started (drill, RTO 30m)")
    );
    let records = journal(&dir, &run);
    let finished = events(&records, "step_finished", Some("declare"));
    assert_eq!(finished[0]["status"], "failed");
    assert_eq!(
        finished[0]["error"],
        "the receiver answered HTTP 500 Internal Server Error: ok"
    );
    assert_eq!(finished[1]["status"], "succeeded");
    assert_eq!(finished[1]["outputs"]["status"], 200);
    // The webhook URL is a secret: the journal never holds it.
    let text =
        std::fs::read_to_string(dir.join(".drillbook/runs").join(&run).join("journal.jsonl"))
            .expect("journal");
    assert!(!text.contains("abcdef"), "{text}");
}

#[test]
fn every_repeats_until_the_clock_stops() {
    let (url, bodies) = receiver(Vec::new());
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: updates
secrets: [SLACK_WEBHOOK]
steps:
  - id: update
    kind: notify
    webhook: "{{ secrets.SLACK_WEBHOOK }}"
    message: "Still recovering: {{ run.elapsed }} elapsed"
    every: 200ms
  - { id: recover, kind: wait, duration: 1s, clock: stop }
  - { id: after, kind: wait, duration: 1s }
"#,
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml"])
        .env("SLACK_WEBHOOK", url)
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let bodies = bodies.lock().expect("lock").clone();
    // One send, then about five repeats during the 1 s until the clock stops; none during
    // the second after it.
    assert!(
        (4..=7).contains(&bodies.len()),
        "{} messages: {bodies:?}",
        bodies.len()
    );
    assert!(bodies.iter().all(|b| b.contains("Still recovering")));
    let records = journal(&dir, &only_run(&dir));
    let repeated = events(&records, "notification_repeated", Some("update"));
    assert_eq!(repeated.len(), bodies.len() - 1);
    let clock_stopped = events(&records, "step_finished", Some("recover"))[0]["at"].clone();
    assert!(
        repeated
            .iter()
            .all(|r| r["at"].as_str() <= clock_stopped.as_str())
    );
}

/// Every message is a fact in the journal — where it went, what it said (secrets masked) —
/// and the Markdown and JSON reports list exactly the messages the receiver got.
#[test]
fn every_message_sent_is_journalled_and_reported() {
    let (url, bodies) = receiver(Vec::new());
    let base = url.trim_end_matches("/hooks/T000/B000/abcdef").to_string();
    let token = "tok-9f8e7d6c5b4a";
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: comms
secrets: [SLACK_WEBHOOK, STATUS_TOKEN]
vars:
  status_api: ""
steps:
  - id: declare
    kind: notify
    webhook: "{{ secrets.SLACK_WEBHOOK }}"
    message: "Incident {{ run.id }} declared\nwith token {{ secrets.STATUS_TOKEN }} in it"
  - id: updates
    kind: notify
    url: "{{ vars.status_api }}"
    headers:
      Authorization: "Bearer {{ secrets.STATUS_TOKEN }}"
    body: '{ "status": "investigating", "token": "{{ secrets.STATUS_TOKEN }}" }'
    every: 200ms
  - { id: recover, kind: wait, duration: 1s, clock: stop, needs: [declare] }
  - id: restored
    kind: notify
    needs: [recover]
    webhook: "{{ secrets.SLACK_WEBHOOK }}"
    message: "Restored"
"#,
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir)
        .args(&[
            "run",
            "p.yaml",
            "--var",
            &format!("status_api={base}/api/v1/incidents?key=abc"),
        ])
        .envs([("SLACK_WEBHOOK", url.as_str()), ("STATUS_TOKEN", token)])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let run = only_run(&dir);
    let received = bodies.lock().expect("lock").clone();
    assert!(received.len() >= 5, "{received:?}");

    // The journal: one fact per message received, saying where it went and what it said.
    let records = journal(&dir, &run);
    let mut sent: Vec<&serde_json::Value> = Vec::new();
    for step in ["declare", "updates", "restored"] {
        sent.extend(events(&records, "step_finished", Some(step)));
    }
    let repeats = events(&records, "notification_repeated", Some("updates"));
    sent.extend(repeats.iter().copied());
    assert_eq!(sent.len(), received.len(), "{sent:?}\n{received:?}");
    let host = base.trim_start_matches("http://");
    let declare = events(&records, "step_finished", Some("declare"))[0];
    assert_eq!(declare["outputs"]["to"], format!("webhook {host}"));
    assert_eq!(
        declare["outputs"]["message"],
        format!("Incident {run} declared\nwith token *** in it")
    );
    let api = format!("POST {host}/api/v1/incidents");
    assert!(!repeats.is_empty());
    for repeat in &repeats {
        assert_eq!(repeat["to"], api.as_str(), "{repeat}");
        assert_eq!(
            repeat["message"], r#"{ "status": "investigating", "token": "***" }"#,
            "{repeat}"
        );
    }
    // The receiver got the secret; the journal never holds it, nor the webhook's path.
    assert!(received[0].contains(token), "{received:?}");
    let text =
        std::fs::read_to_string(dir.join(".drillbook/runs").join(&run).join("journal.jsonl"))
            .expect("journal");
    for secret in [token, "abcdef"] {
        assert!(!text.contains(secret), "{secret} in\n{text}");
    }

    // The post-mortem: a row per message received, and a count per step.
    let md = Drillbook::in_dir(&dir)
        .args(&["report", &run, "--format", "md"])
        .run();
    assert_eq!(md.status, 0, "{}", md.stderr);
    let section = md
        .stdout
        .split("\n## Communication\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("no Communication section:\n{}", md.stdout));
    let rows: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| ---") && !l.starts_with("| Time"))
        .collect();
    assert_eq!(rows.len(), received.len(), "{section}");
    assert!(
        rows.iter().all(|row| row.ends_with("| delivered |")),
        "{section}"
    );
    assert!(
        section.contains(&format!("- `updates` sent {} times", repeats.len() + 1)),
        "{section}"
    );
    assert!(section.contains("- `declare` sent 1 time\n"), "{section}");
    assert!(!md.stdout.contains(token) && !md.stdout.contains("abcdef"));

    // The JSON report: the same messages, as an array.
    let json = Drillbook::in_dir(&dir)
        .args(&["report", &run, "--format", "json"])
        .run();
    assert_eq!(json.status, 0, "{}", json.stderr);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("json report");
    let notifications = report["notifications"].as_array().expect("notifications");
    assert_eq!(notifications.len(), received.len(), "{notifications:?}");
    assert!(notifications.iter().all(|n| n["delivered"] == true));
    let repeated = notifications.iter().filter(|n| n["repeat"] == true).count();
    assert_eq!(repeated, repeats.len());
    assert_eq!(notifications.last().expect("last")["step"], "restored");
}
