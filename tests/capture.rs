//! Bounded capture through the real binary: a `command` step, a smoke-test `command` check and
//! an `http` check each read 1 GiB, and drillbook's memory, journal and log stay small while
//! the output file holds every byte, with its size and SHA-256 in the step's record.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Drillbook;
use sha2::Digest;

const GIB: u64 = 1 << 30;
/// drillbook's own peak resident memory while it reads 1 GiB.
const MAX_RSS_KIB: u64 = 64 * 1024;
/// The longest line the journal or the log may hold.
const MAX_LINE: usize = 256 * 1024;
/// `yes drillbook`'s line.
const LINE: &[u8] = b"drillbook\n";

/// SHA-256 of `size` bytes of `pattern` repeated, and of `suffix` after them.
fn expected_sha256(pattern: &[u8], size: u64, suffix: &[u8]) -> String {
    let mut hasher = sha2::Sha256::new();
    let block: Vec<u8> = pattern
        .iter()
        .copied()
        .cycle()
        .take(pattern.len() * 6554)
        .collect();
    let mut left = size;
    while left > 0 {
        let take = left.min(block.len() as u64) as usize;
        hasher.update(&block[..take]);
        left -= take as u64;
    }
    hasher.update(suffix);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs drillbook on `playbook`, sampling its peak RSS (VmHWM) until it exits.
fn run_measured(playbook: &str) -> (tempfile::TempDir, u64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), playbook).unwrap();
    let started = Instant::now();
    let running = Drillbook::in_dir(dir.path())
        .args(&["run", "p.yaml"])
        .deadline(Duration::from_secs(120))
        .spawn();
    let status_file = format!("/proc/{}/status", running.pid());
    let mut peak = 0;
    let mut running = running;
    while running.try_wait().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = running.wait();
    let elapsed = started.elapsed();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    eprintln!("peak RSS {peak} KiB, {elapsed:?}");
    assert!(peak > 0, "VmHWM was never read");
    assert!(
        peak < MAX_RSS_KIB,
        "drillbook's peak RSS was {peak} KiB reading 1 GiB"
    );
    (dir, peak, elapsed)
}

/// The run's journal and log: no line longer than `MAX_LINE`; the journal's records.
fn small_records(dir: &Path) -> Vec<serde_json::Value> {
    let run = common::only_run(dir);
    let run_dir = dir.join(".drillbook/runs").join(&run);
    for name in ["journal.jsonl", "drillbook.log"] {
        let Ok(text) = std::fs::read_to_string(run_dir.join(name)) else {
            continue;
        };
        let longest = text.lines().map(str::len).max().unwrap_or(0);
        eprintln!("{name}: longest line {longest} bytes");
        assert!(longest < MAX_LINE, "{name} has a line of {longest} bytes");
    }
    common::journal(dir, &run)
}

fn finished<'a>(records: &'a [serde_json::Value], step: &str) -> &'a serde_json::Value {
    records
        .iter()
        .find(|r| r["event"] == "step_finished" && r["step"] == step)
        .unwrap_or_else(|| panic!("no step_finished for {step}: {records:#?}"))
}

#[test]
fn a_command_printing_a_gibibyte_keeps_memory_and_journal_small() {
    let playbook = format!(
        "version: 1\nname: big\nsteps:\n  - id: big\n    kind: command\n    run: [sh, -c, \"yes drillbook | head -c {GIB}\"]\n"
    );
    let (dir, _, elapsed) = run_measured(&playbook);
    let records = small_records(dir.path());
    let outputs = &finished(&records, "big")["outputs"];
    let file = &outputs["stdout_file"];
    assert_eq!(file["size"], GIB);
    assert_eq!(file["sha256"], expected_sha256(LINE, GIB, b""));
    let path = file["path"].as_str().unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), GIB);
    let text = outputs["stdout"].as_str().unwrap();
    assert!(text.len() < 70 * 1024, "{} bytes kept", text.len());
    assert!(text.starts_with("drillbook\ndrillbook\n"));
    assert!(
        text.contains(&format!("… {} bytes omitted", GIB - 64 * 1024)),
        "no marker"
    );
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
}

#[test]
fn a_smoke_test_command_check_printing_a_gibibyte_stays_bounded() {
    let playbook = format!(
        "version: 1\nname: big\nsteps:\n  - id: smoke\n    kind: smoke-test\n    checks:\n      - command: [sh, -c, \"yes drillbook | head -c {GIB}\"]\n"
    );
    let (dir, _, _) = run_measured(&playbook);
    let records = small_records(dir.path());
    let measured = finished(&records, "smoke")["outputs"]["checks"][0]["measured"]
        .as_str()
        .unwrap()
        .to_owned();
    let sha = expected_sha256(LINE, GIB, b"");
    assert!(
        measured.contains(&format!("stdout: {GIB} bytes, sha256 {sha}")),
        "{measured}"
    );
    let file = dir
        .path()
        .join(".drillbook/runs")
        .join(common::only_run(dir.path()))
        .join("output/smoke.1.check1.stdout");
    assert_eq!(std::fs::metadata(file).unwrap().len(), GIB);
}

/// Serves one GET with `size` bytes of `pattern` and then `suffix`.
fn serve_big_body(size: u64, pattern: &'static [u8], suffix: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/big", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let mut stream = stream;
            let total = size + suffix.len() as u64;
            let block: Vec<u8> = pattern
                .iter()
                .copied()
                .cycle()
                .take(pattern.len() * 6554)
                .collect();
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n");
            if stream.write_all(head.as_bytes()).is_err() {
                continue;
            }
            let mut left = size;
            while left > 0 {
                let take = left.min(block.len() as u64) as usize;
                if stream.write_all(&block[..take]).is_err() {
                    break;
                }
                left -= take as u64;
            }
            let _ = stream.write_all(suffix);
        }
    });
    url
}

/// An HTTP body of 256 MiB: a smoke check's client gives up after 30 s, and an unoptimised
/// test build reads about 30 MB/s.
const BODY: u64 = 256 << 20;

#[test]
fn an_http_check_reading_a_huge_body_stays_bounded_and_finds_its_text() {
    let url = serve_big_body(BODY, b"0123456789abcdef", b"the-end-marker\n");
    let playbook = format!(
        "version: 1\nname: big\nsteps:\n  - id: smoke\n    kind: smoke-test\n    checks:\n      - http: \"{url}\"\n        contains: the-end-marker\n"
    );
    let (dir, _, _) = run_measured(&playbook);
    let records = small_records(dir.path());
    let check = &finished(&records, "smoke")["outputs"]["checks"][0];
    let measured = check["measured"].as_str().unwrap();
    assert_eq!(check["passed"], true, "{measured}");
    let size = BODY + 15;
    let sha = expected_sha256(b"0123456789abcdef", BODY, b"the-end-marker\n");
    assert!(
        measured.contains(&format!("body: {size} bytes, sha256 {sha}")),
        "{measured}"
    );
    assert!(
        measured.contains("the body contains `the-end-marker`"),
        "{measured}"
    );
}
