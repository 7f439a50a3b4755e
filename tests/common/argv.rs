//! What every user of the host sees of a process: its command line (`ps`,
//! `/proc/PID/cmdline`). A sampler reads every process's, every 10 ms, while a test runs
//! drillbook, and says where a secret appeared and which of the command lines it watches for
//! it saw go by (proof that it sampled while they ran).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const EVERY: Duration = Duration::from_millis(10);

/// A value no process's arguments hold by chance: `prefix`, this process and the time.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}-c4n4ry", std::process::id())
}

/// A thread reading every process's command line until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Sampled>>,
}

/// What a sampler saw.
#[derive(Debug, Default)]
pub struct Sampled {
    /// Rounds over all of /proc.
    pub rounds: u64,
    /// Each secret that appeared, with the command lines it was in.
    pub leaks: BTreeMap<String, Vec<String>>,
    /// How many rounds saw a command line containing each watched text.
    pub watched: BTreeMap<String, u64>,
}

impl Sampled {
    /// No secret was seen, and every watched command line was: the sampler read them while
    /// they ran.
    pub fn assert_no_secret_while_all_ran(&self) {
        assert!(
            self.leaks.is_empty(),
            "secrets on a command line: {:?}",
            self.leaks
        );
        for (text, rounds) in &self.watched {
            assert!(*rounds > 0, "the sampler never saw `{text}` run: {self:?}");
        }
    }
}

impl Sampler {
    /// Starts sampling for `secrets`, counting the rounds in which a command line contains
    /// each of `watched` (say, `bin/pg_dump `).
    pub fn start(secrets: &[&str], watched: &[&str]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        let watched: Vec<String> = watched.iter().map(|p| p.to_string()).collect();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut sampled = Sampled {
                watched: watched.iter().map(|text| (text.clone(), 0)).collect(),
                ..Sampled::default()
            };
            // One last round after the stop, so nothing that ran before it is missed.
            loop {
                let last = stopped.load(Ordering::SeqCst);
                sample(&secrets, &watched, &mut sampled);
                if last {
                    return sampled;
                }
                std::thread::sleep(EVERY);
            }
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> Sampled {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("a running sampler")
            .join()
            .expect("the sampler thread")
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One round over /proc.
fn sample(secrets: &[String], watched: &[String], sampled: &mut Sampled) {
    sampled.rounds += 1;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let mut seen = std::collections::BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Gone already, or a kernel thread (empty): nothing to read.
        let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
        for secret in secrets {
            if line.contains(secret.as_str()) {
                let lines = sampled.leaks.entry(secret.clone()).or_default();
                if !lines.contains(&line) {
                    lines.push(line.clone());
                }
            }
        }
        seen.extend(watched.iter().filter(|text| line.contains(text.as_str())));
    }
    for text in seen {
        *sampled.watched.entry(text.clone()).or_default() += 1;
    }
}
