//! PostgreSQL: a live database, a source to back up and the drill's own database, each created
//! here with a unique name on this machine's server (127.0.0.1:5432).

use std::path::Path;
use std::process::Command;

use super::common::pg::TestDb;
use super::common::{Output, minutes};
use super::{Cases, Env, REFUSED, all, fill, ran, refused_at_start, run_in_new_dir, unchanged};

/// What a database's `accounts` table holds, as psql sees it; an error in words (a dropped
/// table is a change too).
fn accounts(db: &TestDb) -> String {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-d", &db.name, "-c"])
        .arg(
            "SELECT count(*) || ' rows, md5 ' \
             || coalesce(md5(string_agg(id || '=' || owner, ',' ORDER BY id)), '-') FROM accounts",
        )
        .output()
        .expect("psql");
    if output.status.success() {
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    } else {
        format!("error: {}", String::from_utf8_lossy(&output.stderr).trim())
    }
}

/// (Re)creates `accounts` with `rows` rows owned by `owner`.
fn seed(db: &TestDb, rows: u32, owner: &str) {
    db.psql(&format!(
        "DROP TABLE IF EXISTS accounts CASCADE;
         CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL);
         INSERT INTO accounts SELECT i, '{owner} ' || i FROM generate_series(1, {rows}) i;"
    ));
}

struct Databases {
    live: TestDb,
    source: TestDb,
    drill: TestDb,
    live_rows: String,
}

impl Databases {
    fn create() -> Databases {
        let live = TestDb::create("interlock_live");
        seed(&live, 100, "live");
        let source = TestDb::create("interlock_source");
        seed(&source, 7, "restored");
        let drill = TestDb::create("interlock_drill");
        seed(&drill, 3, "drill");
        let live_rows = accounts(&live);
        assert!(live_rows.starts_with("100 rows"), "{live_rows}");
        Databases {
            live,
            source,
            drill,
            live_rows,
        }
    }

    /// `postgres://127.0.0.1:5432/<live>`, as the live target names it.
    fn live_url(&self) -> String {
        format!("postgres://127.0.0.1:5432/{}", self.live.name)
    }

    /// Refused before the start, saying each of `needles`; the live rows intact.
    fn refused_and_intact(
        &self,
        dir: &Path,
        output: &Output,
        needles: &[&str],
    ) -> Result<(), String> {
        all([refused_at_start(output, dir, needles), self.live_intact()])
    }

    /// The live rows are what they were; seeded again when not, for the next case.
    fn live_intact(&self) -> Result<(), String> {
        let result = unchanged(
            "the live database's rows",
            &self.live_rows,
            &accounts(&self.live),
        );
        if result.is_err() {
            seed(&self.live, 100, "live");
        }
        result
    }
}

/// Runs `playbook` in a new directory with `args`, and `env` over an environment without the
/// caller's `PG*` settings.
fn run(playbook: &str, args: &[&str], env: &[(&str, &str)]) -> (tempfile::TempDir, Output) {
    run_in_new_dir(playbook, args, |drillbook| {
        let unset = [
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGDATABASE",
            "PGUSER",
            "PGSERVICE",
            "PGSERVICEFILE",
        ];
        unset
            .iter()
            .fold(drillbook.deadline(minutes(2)), |drillbook, name| {
                drillbook.env_remove(name)
            })
            .envs(env)
    })
}

/// A backup of the source into a local store, then a restore of it into `@TARGET@`.
const RESTORE: &str = r#"version: 1
name: interlock-restore
targets:
  live: { db: "@LIVE@" }
  drill: { db: "@DRILL@" }
steps:
  - id: backup
    kind: backup
    database: "@SOURCE@"
    store: store
  - id: restore
    kind: restore
    backup: "{{ steps.backup.outputs.key }}"
    store: store
    target: "@TARGET@"
"#;

/// The live database however a PostgreSQL client may reach it, as the drill's target and as
/// the restore's own `target`: refused before the start (before the backup, even), the live
/// rows intact. The control: the same drill restores into its own database.
#[test]
fn a_drill_refuses_every_way_of_reaching_the_live_database() {
    let dbs = Databases::create();
    let live_db = dbs.live.name.as_str();
    let live = dbs.live_url();
    let drill_own = dbs.drill.url();
    let source = dbs.source.url();
    let mut cases = Cases::default();

    let control = fill(
        RESTORE,
        &[
            ("LIVE", &live),
            ("DRILL", &drill_own),
            ("SOURCE", &source),
            ("TARGET", "{{ target.db }}"),
        ],
    );
    let (_dir, output) = run(&control, &[], &[]);
    cases.check(
        "control: the restore into the drill's own database",
        all([
            ran(&output),
            unchanged(
                "the drill's database (restored from the source)",
                &accounts(&dbs.source),
                &accounts(&dbs.drill),
            ),
            dbs.live_intact(),
        ]),
    );

    let no_port = format!("postgres://localhost/{live_db}");
    // (name, the live target, the drill's spelling, its environment)
    let spellings: Vec<(&str, &str, String, Env)> = vec![
        (
            "multi-host URL, the first host unreachable",
            &live,
            format!("postgresql://postgres@nothere.invalid,127.0.0.1:5432/{live_db}"),
            vec![],
        ),
        (
            "localhost, the default port omitted",
            &live,
            format!("postgres://postgres@localhost/{live_db}"),
            vec![],
        ),
        (
            "the live target without its port, the drill's with 5432",
            &no_port,
            format!("postgres://postgres@127.0.0.1:5432/{live_db}"),
            vec![],
        ),
        (
            "uppercase LOCALHOST",
            &live,
            format!("postgres://postgres@LOCALHOST:5432/{live_db}"),
            vec![],
        ),
        (
            "?hostaddr=127.0.0.1 behind a name that does not resolve",
            &live,
            format!("postgres://postgres@db.invalid/{live_db}?hostaddr=127.0.0.1"),
            vec![],
        ),
        (
            "key=value settings",
            &live,
            format!("host=127.0.0.1 dbname={live_db} user=postgres"),
            vec![],
        ),
        (
            "quoted settings with the port",
            &live,
            format!("host='127.0.0.1' port='5432' dbname='{live_db}' user='postgres'"),
            vec![],
        ),
        (
            "PGHOST in the environment",
            &live,
            format!("dbname={live_db} user=postgres"),
            vec![("PGHOST", "127.0.0.1")],
        ),
        (
            "PGDATABASE in the environment",
            &live,
            "host=localhost user=postgres".to_string(),
            vec![("PGDATABASE", live_db)],
        ),
        (
            "the Unix socket",
            &live,
            format!("postgres://postgres@/{live_db}?host=/var/run/postgresql"),
            vec![],
        ),
        (
            "[::1]",
            &live,
            format!("postgres://postgres@[::1]:5432/{live_db}"),
            vec![],
        ),
    ];
    for (name, live_target, spelling, env) in &spellings {
        let as_target = fill(
            RESTORE,
            &[
                ("LIVE", live_target),
                ("DRILL", spelling),
                ("SOURCE", &source),
                ("TARGET", "{{ target.db }}"),
            ],
        );
        let (dir, output) = run(&as_target, &[], env);
        cases.check(
            &format!("{name}, as the drill target"),
            dbs.refused_and_intact(
                dir.path(),
                &output,
                &[REFUSED, "drill target `db`", "live target `db`"],
            ),
        );
        let as_param = fill(
            RESTORE,
            &[
                ("LIVE", live_target),
                ("DRILL", &drill_own),
                ("SOURCE", &source),
                ("TARGET", spelling),
            ],
        );
        let (dir, output) = run(&as_param, &[], env);
        cases.check(
            &format!("{name}, as the restore's target"),
            dbs.refused_and_intact(
                dir.path(),
                &output,
                &[
                    REFUSED,
                    "step `restore` writes `target`",
                    "live target `db`",
                ],
            ),
        );
    }
    cases.assert_all_passed();
}

/// drillbook cannot see inside a program: a command says what it changes under `touches`,
/// and a drill compares that, whatever variable it reads.
const COMMAND: &str = r#"version: 1
name: interlock-command
vars:
  db: "@DRILL@"
targets:
  live: { db: "@LIVE@" }
  drill: { db: "@DRILL@" }
steps:
  - id: wipe
    kind: command
    run: [psql, -X, "--dbname={{ vars.db }}", -c, "DELETE FROM accounts"]
    touches: ["{{ vars.db }}"]
"#;

/// A command that touches `{{ vars.db }}`, given the live database by `--var`: refused, the
/// live rows intact. The control: without the `--var` it empties the drill's own table.
#[test]
fn a_drill_refuses_a_command_that_touches_the_live_database() {
    let dbs = Databases::create();
    let live_db = dbs.live.name.as_str();
    let live = dbs.live_url();
    let drill_own = dbs.drill.url();
    let playbook = fill(COMMAND, &[("LIVE", &live), ("DRILL", &drill_own)]);
    let mut cases = Cases::default();

    let (_dir, output) = run(&playbook, &[], &[]);
    cases.check(
        "control: the command on the drill's own database",
        all([
            ran(&output),
            unchanged(
                "the drill's table (emptied)",
                &"0 rows, md5 -".to_string(),
                &accounts(&dbs.drill),
            ),
            dbs.live_intact(),
        ]),
    );

    for value in [
        format!("postgres://postgres@localhost/{live_db}"),
        format!("host=127.0.0.1 port=5432 dbname={live_db} user=postgres"),
    ] {
        let var = format!("db={value}");
        let (dir, output) = run(&playbook, &["--var", &var], &[]);
        cases.check(
            &format!("--var {var}"),
            dbs.refused_and_intact(
                dir.path(),
                &output,
                &[REFUSED, "step `wipe` writes `touches`", "live target `db`"],
            ),
        );
    }
    cases.assert_all_passed();
}
