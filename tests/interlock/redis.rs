//! Redis: a redis-server of the test's own on a free port (never the shared 6379, which holds
//! other tests' databases), with "live" data in databases 0 and 11 and the drill's own in 12.

use std::path::Path;

use super::common::drill::{json_report, step};
use super::common::own_redis::OwnRedis;
use super::common::{Output, events, journal, run_ids};
use super::{Cases, REFUSED, all, fill, ran, refused_at_start, run_in_new_dir, unchanged};

/// How many keys each live database holds.
const KEYS: usize = 25;

/// A redis-server of the test's own (`OwnRedis`) with known keys in its databases.
pub struct PrivateRedis {
    pub port: u16,
    server: OwnRedis,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let server = OwnRedis::start();
        PrivateRedis {
            port: server.port,
            server,
        }
    }

    /// `redis://127.0.0.1:PORT/DB`
    pub fn url(&self, db: u32) -> String {
        self.server.url(db)
    }

    fn cli(&self, db: u32, args: &[&str]) -> String {
        self.server
            .cli_in(db, args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    /// Replaces database `db` with `KEYS` known keys.
    pub fn seed(&self, db: u32) {
        self.cli(db, &["FLUSHDB"]);
        let mut args = vec!["MSET".to_string()];
        for (key, value) in expected(db) {
            args.push(key);
            args.push(value);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(self.cli(db, &args), "OK");
    }

    /// Every key of database `db` with its value, sorted.
    pub fn contents(&self, db: u32) -> Vec<(String, String)> {
        let keys = self.cli(db, &["KEYS", "*"]);
        let mut keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        keys.sort();
        if keys.is_empty() {
            return Vec::new();
        }
        let mut args = vec!["MGET"];
        args.extend(&keys);
        let values = self.cli(db, &args);
        keys.iter()
            .map(|k| k.to_string())
            .zip(values.lines().map(str::to_string))
            .collect()
    }

    /// Whether database `db` still holds exactly what `seed` put there (the key count and
    /// every value); seeded again when it does not, so the next case starts whole.
    pub fn intact(&self, db: u32) -> Result<(), String> {
        let result = unchanged(
            &format!("live Redis database {db}"),
            &expected(db),
            &self.contents(db),
        );
        if result.is_err() {
            self.seed(db);
        }
        result
    }
}

fn expected(db: u32) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = (0..KEYS)
        .map(|i| (format!("key:{i:02}"), format!("value-{db}-{i}")))
        .collect();
    keys.sort();
    keys
}

/// The live databases: 11, and 0 (what clients that ignore `?db=` use).
const LIVE: [u32; 2] = [0, 11];
/// The drill's own database.
const DRILL: u32 = 12;

fn server() -> PrivateRedis {
    let redis = PrivateRedis::start();
    for db in LIVE.into_iter().chain([DRILL]) {
        redis.seed(db);
    }
    redis
}

fn live_intact(redis: &PrivateRedis) -> Result<(), String> {
    all(LIVE.map(|db| redis.intact(db)))
}

/// Refused before the start, saying each of `needles`; the live databases and the drill's own
/// intact.
fn refused_and_intact(
    redis: &PrivateRedis,
    dir: &Path,
    output: &Output,
    needles: &[&str],
) -> Result<(), String> {
    all([
        refused_at_start(output, dir, needles),
        live_intact(redis),
        redis.intact(DRILL),
    ])
}

/// What a drill says when the flush's own parameter is the live database.
const FLUSH_REFUSED: [&str; 3] = [
    REFUSED,
    "step `flush` writes `redis`",
    "live target `cache`",
];

/// Live target `cache` and drill target `cache`; one flush step writing `flush` with `scope`,
/// then a step after it.
const FLUSH: &str = r#"version: 1
name: interlock-redis
vars:
  cache: "@DEFAULT@"
targets:
  live: { cache: "@LIVE@" }
  drill: { cache: "@DRILL@" }
steps:
  - id: flush
    kind: flush
    redis: "@FLUSH@"
    scope: @SCOPE@
  - id: after
    kind: command
    run: [echo, after]
"#;

struct Flush<'a> {
    live: &'a str,
    drill: &'a str,
    flush: &'a str,
    scope: &'a str,
}

impl Flush<'_> {
    /// Runs the playbook in a new directory with `args` after `run p.yaml`.
    fn run(&self, redis: &PrivateRedis, args: &[&str]) -> (tempfile::TempDir, Output) {
        let default = redis.url(DRILL);
        let text = fill(
            FLUSH,
            &[
                ("DEFAULT", &default),
                ("LIVE", self.live),
                ("DRILL", self.drill),
                ("FLUSH", self.flush),
                ("SCOPE", self.scope),
            ],
        );
        run_in_new_dir(&text, args, |drillbook| drillbook)
    }
}

/// The live database 11 (or 0) spelled another way, as the drill's target and as the flush's
/// own parameter: refused before the start, every live database intact.
#[test]
fn a_drill_refuses_every_spelling_of_the_live_redis_database() {
    let redis = server();
    let port = redis.port;
    let spellings: Vec<(&str, String, u32)> = vec![
        (
            "leading zero /011",
            format!("redis://127.0.0.1:{port}/011"),
            11,
        ),
        (
            "plus sign /+11",
            format!("redis://127.0.0.1:{port}/+11"),
            11,
        ),
        ("?db=11", format!("redis://127.0.0.1:{port}?db=11"), 11),
        ("localhost", format!("redis://localhost:{port}/11"), 11),
        ("[::1]", format!("redis://[::1]:{port}/11"), 11),
        (
            "uppercase LOCALHOST",
            format!("redis://LOCALHOST:{port}/11"),
            11,
        ),
        (
            "trailing slash",
            format!("redis://127.0.0.1:{port}/11/"),
            11,
        ),
        (
            "%-escaped /%31%31",
            format!("redis://127.0.0.1:{port}/%31%31"),
            11,
        ),
        (
            "long IPv6 loopback",
            format!("redis://[0:0:0:0:0:0:0:1]:{port}/11"),
            11,
        ),
        // drillbook's own client ignores `?db=` on a TCP URL: this flushes database 0.
        (
            "?db=11 read as 0 by drillbook's client",
            format!("redis://127.0.0.1:{port}/?db=11"),
            0,
        ),
    ];
    let mut cases = Cases::default();
    let drill_own = redis.url(DRILL);
    for (name, spelling, live_db) in &spellings {
        let live = redis.url(*live_db);
        let as_target = Flush {
            live: &live,
            drill: spelling,
            flush: "{{ target.cache }}",
            scope: "db",
        };
        let (dir, output) = as_target.run(&redis, &[]);
        cases.check(
            &format!("{name}, as the drill target"),
            refused_and_intact(
                &redis,
                dir.path(),
                &output,
                &[REFUSED, "drill target `cache`", "live target `cache`"],
            ),
        );
        let as_param = Flush {
            live: &live,
            drill: &drill_own,
            flush: spelling,
            scope: "db",
        };
        let (dir, output) = as_param.run(&redis, &[]);
        cases.check(
            &format!("{name}, as the flush's parameter"),
            refused_and_intact(&redis, dir.path(), &output, &FLUSH_REFUSED),
        );
    }
    // `?db=` alone: what the interlock reads it as, in its own words (before any client
    // could misread it).
    let live = redis.url(11);
    let db_query = format!("redis://127.0.0.1:{port}?db=11");
    let (dir, output) = Flush {
        live: &live,
        drill: &drill_own,
        flush: &db_query,
        scope: "db",
    }
    .run(&redis, &[]);
    cases.check(
        "?db=11, the message",
        refused_at_start(
            &output,
            dir.path(),
            &[
                REFUSED,
                "Redis database 11 (or 0, for clients that ignore `?db=`)",
            ],
        ),
    );
    cases.assert_all_passed();
}

/// FLUSHALL on the drill's own database number empties every database of the server, the
/// live one too: refused. `--var` gives a step the live URL where it reads a variable, not a
/// target: refused. The controls: FLUSHDB of the drill's own database runs, and flushes it.
#[test]
fn a_drill_refuses_flushall_and_a_var_that_names_the_live_database() {
    let redis = server();
    let port = redis.port;
    let live = redis.url(11);
    let drill_own = redis.url(DRILL);
    let mut cases = Cases::default();

    let flushall = Flush {
        live: &live,
        drill: &drill_own,
        flush: "{{ target.cache }}",
        scope: "all",
    };
    let (dir, output) = flushall.run(&redis, &[]);
    cases.check(
        "FLUSHALL on the drill's own database 12",
        refused_and_intact(
            &redis,
            dir.path(),
            &output,
            &[
                REFUSED,
                &format!("Redis server on 127.0.0.1:{port}"),
                "live target `cache`",
            ],
        ),
    );

    let from_var = Flush {
        live: &live,
        drill: &drill_own,
        flush: "{{ vars.cache }}",
        scope: "db",
    };
    for value in [live.clone(), format!("redis://localhost:{port}/011")] {
        let var = format!("cache={value}");
        let (dir, output) = from_var.run(&redis, &["--var", &var]);
        cases.check(
            &format!("--var {var}"),
            refused_and_intact(&redis, dir.path(), &output, &FLUSH_REFUSED),
        );
    }

    // Controls: the drill's own database, through the variable and through the target.
    for (name, flush) in [
        ("the variable's default", "{{ vars.cache }}"),
        ("the drill target", "{{ target.cache }}"),
    ] {
        let control = Flush {
            live: &live,
            drill: &drill_own,
            flush,
            scope: "db",
        };
        let (_dir, output) = control.run(&redis, &[]);
        let flushed = redis.contents(DRILL);
        cases.check(
            &format!("control: FLUSHDB of {name}, database 12"),
            all([
                ran(&output),
                unchanged("the drill's database 12 (flushed)", &vec![], &flushed),
                live_intact(&redis),
            ]),
        );
        redis.seed(DRILL);
    }
    cases.assert_all_passed();
}

/// Live target `cache` from a secret that is not set here.
const FROM_SECRET: &str = r#"version: 1
name: interlock-identity
secrets: [LIVE_CACHE]
targets:
  live: { cache: "{{ secrets.LIVE_CACHE }}" }
  drill: { cache: "@DRILL@" }
@IDENTITY@
steps:
  - id: flush
    kind: flush
    redis: "{{ target.cache }}"
"#;

/// Live target `cache` from a variable.
const FROM_VAR: &str = r#"version: 1
name: interlock-live-var
vars:
  live_cache: "@LIVE@"
targets:
  live: { cache: "{{ vars.live_cache }}" }
  drill: { cache: "@DRILL@" }
steps:
  - id: flush
    kind: flush
    redis: "{{ target.cache }}"
"#;

/// Runs `playbook` in a new directory, the secret `LIVE_CACHE` unset.
fn run_unset(playbook: &str, args: &[&str]) -> (tempfile::TempDir, Output) {
    run_in_new_dir(playbook, args, |drillbook| {
        drillbook.env_remove("LIVE_CACHE")
    })
}

/// A drill that cannot tell what is live refuses; named by `targets.identity`, the live
/// target keeps the drill away when they overlap and lets it run when they do not. A `--var`
/// that moves a live target is refused in a drill and taken with `--mode live`.
#[test]
fn a_drill_knows_what_is_live_or_refuses() {
    let redis = server();
    let port = redis.port;
    let live = redis.url(11);
    let drill_own = redis.url(DRILL);
    let live_spelled = format!("redis://localhost:{port}/011");
    let mut cases = Cases::default();

    let no_identity = fill(FROM_SECRET, &[("DRILL", &drill_own), ("IDENTITY", "")]);
    let (dir, output) = run_unset(&no_identity, &[]);
    cases.check(
        "secret unset, no identity",
        all([
            refused_at_start(
                &output,
                dir.path(),
                &[
                    "refusing to start a drill that cannot tell what is live",
                    "live target `cache`",
                ],
            ),
            redis.intact(DRILL),
            live_intact(&redis),
        ]),
    );

    let identity = format!("  identity: {{ cache: \"{live}\" }}");
    let overlapping = fill(
        FROM_SECRET,
        &[("DRILL", &live_spelled), ("IDENTITY", &identity)],
    );
    let (dir, output) = run_unset(&overlapping, &[]);
    cases.check(
        "secret unset, its identity is the drill's target",
        all([
            refused_at_start(
                &output,
                dir.path(),
                &[REFUSED, "drill target `cache`", "live target `cache`"],
            ),
            live_intact(&redis),
        ]),
    );

    let apart = fill(
        FROM_SECRET,
        &[("DRILL", &drill_own), ("IDENTITY", &identity)],
    );
    let (_dir, output) = run_unset(&apart, &[]);
    let flushed = redis.contents(DRILL);
    cases.check(
        "secret unset, its identity apart from the drill's target: the drill runs",
        all([
            ran(&output),
            unchanged("the drill's database 12 (flushed)", &vec![], &flushed),
            live_intact(&redis),
        ]),
    );
    redis.seed(DRILL);

    // `--var` of the variable the live target reads.
    redis.seed(13);
    let moved = fill(FROM_VAR, &[("LIVE", &live), ("DRILL", &drill_own)]);
    let elsewhere = format!("live_cache={}", redis.url(13));
    let (dir, output) = run_unset(&moved, &["--var", &elsewhere]);
    cases.check(
        "--var of a live target's variable, in a drill",
        all([
            refused_at_start(
                &output,
                dir.path(),
                &[
                    "--var live_cache: live target `cache` reads `vars.live_cache`",
                    "a drill cannot change what is live",
                ],
            ),
            redis.intact(13),
            redis.intact(DRILL),
            live_intact(&redis),
        ]),
    );
    let (_dir, output) = run_unset(&moved, &["--mode", "live", "--var", &elsewhere]);
    let flushed = redis.contents(13);
    cases.check(
        "--var of a live target's variable, with --mode live: it acts there",
        all([
            ran(&output),
            unchanged("database 13 (flushed)", &vec![], &flushed),
            redis.intact(DRILL),
            live_intact(&redis),
        ]),
    );
    cases.assert_all_passed();
}

/// A value that renders only at run time, from an earlier step's output: the run starts, the
/// flush is refused when it renders (failed, permanently: its `retry` is not used), the steps
/// after it are skipped, and the live database is intact.
#[test]
fn a_live_value_from_a_step_output_is_refused_at_its_step() {
    let redis = server();
    let port = redis.port;
    let playbook = fill(
        r#"version: 1
name: interlock-runtime
targets:
  live: { cache: "@LIVE@" }
  drill: { cache: "@DRILL@" }
steps:
  - id: emit
    kind: command
    run: [echo, "redis://localhost:@PORT@/011"]
  - id: flush
    kind: flush
    needs: [emit]
    redis: "{{ steps.emit.outputs.stdout | trim }}"
    retry: { attempts: 3, backoff: 1s }
  - id: after
    kind: command
    needs: [flush]
    run: [echo, after]
"#,
        &[
            ("LIVE", &redis.url(11)),
            ("DRILL", &redis.url(DRILL)),
            ("PORT", &port.to_string()),
        ],
    );
    let (dir, output) = run_in_new_dir(&playbook, &[], |drillbook| drillbook);
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    let runs = run_ids(dir.path());
    assert_eq!(runs.len(), 1, "the run started: {runs:?}");
    let report = json_report(dir.path(), &runs[0]);
    assert_eq!(step(&report, "emit")["status"], "succeeded");
    let flush = step(&report, "flush");
    assert_eq!(flush["status"], "failed", "{flush}");
    let error = flush["error"].as_str().expect("error");
    assert!(
        error.contains("refused: a drill never writes to a live system")
            && error.contains("live target `cache`"),
        "{error}"
    );
    let records = journal(dir.path(), &runs[0]);
    assert_eq!(
        events(&records, "step_started", Some("flush")).len(),
        1,
        "tried once, not retried"
    );
    assert_eq!(step(&report, "after")["status"], "skipped");
    if let Err(problem) = all([live_intact(&redis), redis.intact(DRILL)]) {
        panic!("{problem}");
    }
}
