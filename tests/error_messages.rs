//! The exact text of validation errors, the way casey/just tests its messages: each case
//! writes a playbook, runs the real binary on it, and compares all of stderr.

mod common;

use common::Drillbook;

/// Validates `playbook` written as `NAME.yaml` and compares all of stderr; exit must be 2.
fn case(name: &str, playbook: &str, stderr: &str) {
    let file = format!("{name}.yaml");
    Drillbook::new()
        .playbook(&file, playbook)
        .args(&["validate", &file])
        .expect_status(2)
        .expect_stderr(stderr)
        .run();
}

#[test]
fn bad_duration() {
    case(
        "bad_duration",
        r#"version: 1
name: t
steps:
  - id: wait
    kind: manual
    instructions: x
    timeout: 10min
"#,
        r#"error: unknown unit `min` in duration `10min`; expected ms, s, m, h or d
 --> bad_duration.yaml:7:14
  |
7 |     timeout: 10min
  |              ^^^^^

error: 1 error in bad_duration.yaml
"#,
    );
}

#[test]
fn bad_enum() {
    case(
        "bad_enum",
        r#"version: 1
name: t
steps:
  - { id: dump, kind: backup, database: postgres://x, store: /s, format: directry }
"#,
        r#"error: unknown value `directry`, expected one of: custom, directory, base
 --> bad_enum.yaml:4:74
  |
4 |   - { id: dump, kind: backup, database: postgres://x, store: /s, format: directry }
  |                                                                          ^^^^^^^^
  = help: did you mean `directory`?

error: 1 error in bad_enum.yaml
"#,
    );
}

#[test]
fn bad_id() {
    case(
        "bad_id",
        r#"version: 1
name: t
steps:
  - { id: smoke-test, kind: manual, instructions: x }
"#,
        r#"error: step id `smoke-test` is not an identifier
 --> bad_id.yaml:4:11
  |
4 |   - { id: smoke-test, kind: manual, instructions: x }
  |           ^^^^^^^^^^
  = help: use letters, digits and underscores, e.g. `smoke_test` (templates read it as steps.smoke_test)

error: 1 error in bad_id.yaml
"#,
    );
}

#[test]
fn bad_version() {
    case(
        "bad_version",
        r#"version: 2
name: t
steps:
  - { id: a, kind: manual, instructions: x }
"#,
        r#"error: unsupported playbook version `2`
 --> bad_version.yaml:1:10
  |
1 | version: 2
  |          ^
  = help: this drillbook reads `version: 1`

error: 1 error in bad_version.yaml
"#,
    );
}

#[test]
fn cleanup_needs_main() {
    case(
        "cleanup_needs_main",
        r#"version: 1
name: t
steps:
  - { id: restore, kind: manual, instructions: x }
cleanup:
  - { id: drop, kind: manual, instructions: y, needs: [restore] }
"#,
        r#"error: cleanup step `drop` cannot need main step `restore`
 --> cleanup_needs_main.yaml:6:56
  |
6 |   - { id: drop, kind: manual, instructions: y, needs: [restore] }
  |                                                        ^^^^^^^
  = help: cleanup steps run after every main step, whatever happened; they may only need other cleanup steps

error: 1 error in cleanup_needs_main.yaml
"#,
    );
}

#[test]
fn cycle() {
    case(
        "cycle",
        r#"version: 1
name: t
steps:
  - { id: restore, kind: manual, instructions: x, needs: [smoke] }
  - { id: smoke, kind: manual, instructions: y, needs: [restore] }
"#,
        r#"error: dependency cycle: restore -> smoke -> restore
 --> cycle.yaml:4:59
  |
4 |   - { id: restore, kind: manual, instructions: x, needs: [smoke] }
  |                                                           ^^^^^
  = help: remove one of these `needs` (a step without `needs` depends on the step listed before it)

error: 1 error in cycle.yaml
"#,
    );
}

#[test]
fn duplicate_id() {
    case(
        "duplicate_id",
        r#"version: 1
name: t
steps:
  - { id: check, kind: manual, instructions: x }
  - { id: check, kind: manual, instructions: y }
"#,
        r#"error: duplicate step id `check`
 --> duplicate_id.yaml:5:11
  |
5 |   - { id: check, kind: manual, instructions: y }
  |           ^^^^^ first defined on line 4

error: 1 error in duplicate_id.yaml
"#,
    );
}

#[test]
fn empty() {
    case(
        "empty",
        r#""#,
        r#"error: the playbook is empty
 --> empty.yaml
 = help: a playbook is a mapping with `version: 1`, `name` and `steps`

error: 1 error in empty.yaml
"#,
    );
}

#[test]
fn empty_steps() {
    case(
        "empty_steps",
        r#"version: 1
name: t
steps: []
"#,
        r#"error: `steps` is empty; a playbook needs at least one step
 --> empty_steps.yaml:3:1
  |
3 | steps: []
  | ^^^^^
  = help: add a step, e.g. `- { id: assess, kind: assess, store: "{{ vars.store }}" }`

error: 1 error in empty_steps.yaml
"#,
    );
}

#[test]
fn many() {
    case(
        "many",
        r#"version: 1
name: t
objectives: { rto: 1x }
steps:
  - { id: a, kind: asess }
  - { id: b, kind: manual, instructions: x, needs: [c] }
"#,
        r#"error: unknown unit `x` in duration `1x`; expected ms, s, m, h or d
 --> many.yaml:3:20
  |
3 | objectives: { rto: 1x }
  |                    ^^

error: unknown step kind `asess`
 --> many.yaml:5:20
  |
5 |   - { id: a, kind: asess }
  |                    ^^^^^ did you mean `assess`?
  = help: kinds: assess, backup, restore, smoke-test, promote, flush, sync, verify, config-backup, config-restore, notify, approval, manual, command, wait

error: unknown step `c` in `needs`
 --> many.yaml:6:53
  |
6 |   - { id: b, kind: manual, instructions: x, needs: [c] }
  |                                                     ^

error: 3 errors in many.yaml
"#,
    );
}

#[test]
fn missing_param() {
    case(
        "missing_param",
        r#"version: 1
name: t
steps:
  - id: restore
    kind: restore
    store: /s
    backup: latest.dump
"#,
        r#"error: step `restore` is missing `target`
 --> missing_param.yaml:4:5
  |
4 |   - id: restore
  |     ^
  = help: `restore` steps need: backup, target

error: 1 error in missing_param.yaml
"#,
    );
}

#[test]
fn not_upstream() {
    case(
        "not_upstream",
        r#"version: 1
name: t
steps:
  - { id: assess, kind: assess, store: /s }
  - id: say
    kind: manual
    needs: []
    instructions: "Restore {{ steps.assess.outputs.backup }}"
"#,
        r#"error: step `assess` is not upstream of `say`
 --> not_upstream.yaml:8:37
  |
8 |     instructions: "Restore {{ steps.assess.outputs.backup }}"
  |                                     ^^^^^^
  = help: add `assess` to the `needs` of `say` so its outputs exist when `say` runs

error: 1 error in not_upstream.yaml
"#,
    );
}

#[test]
fn notyaml() {
    case(
        "notyaml",
        r#"steps: [unclosed
  - x: {
"#,
        r#"error: invalid YAML: illegal placement of ':' indicator
 --> notyaml.yaml:2:6
  |
2 |   - x: {
  |      ^

error: 1 error in notyaml.yaml
"#,
    );
}

#[test]
fn objective_no_unit() {
    case(
        "objective_no_unit",
        r#"version: 1
name: t
objectives: { rto: 30, rpo: 1h }
steps:
  - { id: a, kind: manual, instructions: x }
"#,
        r#"error: duration `30` has no unit; write e.g. 30s, 30m or 30h
 --> objective_no_unit.yaml:3:20
  |
3 | objectives: { rto: 30, rpo: 1h }
  |                    ^^

error: 1 error in objective_no_unit.yaml
"#,
    );
}

#[test]
fn promote_foreign_key() {
    case(
        "promote_foreign_key",
        r#"version: 1
name: t
secrets: [STANDBY_URL]
steps:
  - id: promote
    kind: promote
    method: standby
    standby: "{{ secrets.STANDBY_URL }}"
    env_file: /etc/app.env
"#,
        r#"error: `env_file` does nothing with `method: standby`
 --> promote_foreign_key.yaml:9:5
  |
9 |     env_file: /etc/app.env
  |     ^^^^^^^^

error: 1 error in promote_foreign_key.yaml
"#,
    );
}

#[test]
fn shell_string() {
    case(
        "shell_string",
        r#"version: 1
name: t
steps:
  - id: dump
    kind: command
    run: pg_dump -Fc app
"#,
        r#"error: `run` takes an argument list, not a shell string
 --> shell_string.yaml:6:10
  |
6 |     run: pg_dump -Fc app
  |          ^^^^^^^^^^^^^^^
  = help: write `run: ["pg_dump", "-Fc", "app"]` (no shell: a template value cannot inject a command)

error: 1 error in shell_string.yaml
"#,
    );
}

#[test]
fn smoke_needs_database() {
    case(
        "smoke_needs_database",
        r#"version: 1
name: t
steps:
  - id: smoke
    kind: smoke-test
    checks:
      - sql: SELECT 1
        expect: "1"
"#,
        r#"error: a `sql` check needs the step's `database:`
 --> smoke_needs_database.yaml:7:9
  |
7 |       - sql: SELECT 1
  |         ^
  = help: give the smoke-test a `database:` URL, e.g. `{{ steps.restore.outputs.target }}`

error: 1 error in smoke_needs_database.yaml
"#,
    );
}

#[test]
fn template_syntax() {
    case(
        "template_syntax",
        r#"version: 1
name: t
steps:
  - id: say
    kind: manual
    instructions: "Restore {{ run.id }"
"#,
        r#"error: invalid template: unexpected `}`, expected end of variable block
 --> template_syntax.yaml:6:19
  |
6 |     instructions: "Restore {{ run.id }"
  |                   ^^^^^^^^^^^^^^^^^^^^^

error: 1 error in template_syntax.yaml
"#,
    );
}

#[test]
fn two_clocks() {
    case(
        "two_clocks",
        r#"version: 1
name: t
steps:
  - { id: promote, kind: manual, instructions: x, clock: stop }
  - { id: smoke, kind: manual, instructions: y, clock: stop }
"#,
        r#"error: only one step can stop the RTO clock; `promote` (line 4) already does
 --> two_clocks.yaml:5:49
  |
5 |   - { id: smoke, kind: manual, instructions: y, clock: stop }
  |                                                 ^^^^^
  = help: mark the step after which service is restored, e.g. the smoke test after promote

error: 1 error in two_clocks.yaml
"#,
    );
}

#[test]
fn undeclared_secret() {
    case(
        "undeclared_secret",
        r#"version: 1
name: t
secrets: [DATABASE_URL]
steps:
  - id: backup
    kind: backup
    store: /s
    database: "{{ secrets.DATABASE_UR }}"
"#,
        r#"error: undeclared secret `secrets.DATABASE_UR`
 --> undeclared_secret.yaml:8:27
  |
8 |     database: "{{ secrets.DATABASE_UR }}"
  |                           ^^^^^^^^^^^ did you mean `DATABASE_URL`?
  = help: add it to `secrets:`

error: 1 error in undeclared_secret.yaml
"#,
    );
}

#[test]
fn undeclared_var() {
    case(
        "undeclared_var",
        r#"version: 1
name: t
vars: { store: /s }
steps:
  - id: assess
    kind: assess
    store: "{{ vars.stor }}"
"#,
        r#"error: undeclared variable `vars.stor`
 --> undeclared_var.yaml:7:21
  |
7 |     store: "{{ vars.stor }}"
  |                     ^^^^ did you mean `store`?
  = help: declare it under `vars:`

error: 1 error in undeclared_var.yaml
"#,
    );
}

#[test]
fn unknown_kind() {
    case(
        "unknown_kind",
        r#"version: 1
name: t
steps:
  - id: restore
    kind: restor
"#,
        r#"error: unknown step kind `restor`
 --> unknown_kind.yaml:5:11
  |
5 |     kind: restor
  |           ^^^^^^ did you mean `restore`?
  = help: kinds: assess, backup, restore, smoke-test, promote, flush, sync, verify, config-backup, config-restore, notify, approval, manual, command, wait

error: 1 error in unknown_kind.yaml
"#,
    );
}

#[test]
fn unknown_need() {
    case(
        "unknown_need",
        r#"version: 1
name: t
steps:
  - { id: assess, kind: assess, store: /s }
  - { id: restore, kind: manual, instructions: x, needs: [asess] }
"#,
        r#"error: unknown step `asess` in `needs`
 --> unknown_need.yaml:5:59
  |
5 |   - { id: restore, kind: manual, instructions: x, needs: [asess] }
  |                                                           ^^^^^ did you mean `assess`?

error: 1 error in unknown_need.yaml
"#,
    );
}

#[test]
fn unknown_output() {
    case(
        "unknown_output",
        r#"version: 1
name: t
steps:
  - { id: assess, kind: assess, store: /s }
  - id: say
    kind: manual
    instructions: "Restore {{ steps.assess.outputs.bakup }}"
"#,
        r#"error: step `assess` (assess) has no output `bakup`
 --> unknown_output.yaml:7:52
  |
7 |     instructions: "Restore {{ steps.assess.outputs.bakup }}"
  |                                                    ^^^^^ did you mean `backup`?
  = help: `assess` steps output: backup, taken_at, age, size, bytes, sha256, replication_lag

error: 1 error in unknown_output.yaml
"#,
    );
}

#[test]
fn unknown_run_field() {
    case(
        "unknown_run_field",
        r#"version: 1
name: t
steps:
  - { id: say, kind: manual, instructions: "{{ run.mod }}" }
"#,
        r#"error: `run.mod` does not exist
 --> unknown_run_field.yaml:4:52
  |
4 |   - { id: say, kind: manual, instructions: "{{ run.mod }}" }
  |                                                    ^^^ did you mean `mode`?
  = help: run has: id, mode, playbook, started_at, declared_at, elapsed, rto, rpo, current_step, eta, projected, over_rto, status, dry_run

error: 1 error in unknown_run_field.yaml
"#,
    );
}

#[test]
fn unknown_step_key() {
    case(
        "unknown_step_key",
        r#"version: 1
name: t
steps:
  - id: assess
    kind: assess
    store: /tmp/s
    timout: 5m
"#,
        r#"error: unknown key `timout`
 --> unknown_step_key.yaml:7:5
  |
7 |     timout: 5m
  |     ^^^^^^
  = help: did you mean `timeout`?

error: 1 error in unknown_step_key.yaml
"#,
    );
}

#[test]
fn unknown_template_step() {
    case(
        "unknown_template_step",
        r#"version: 1
name: t
steps:
  - { id: assess, kind: assess, store: /s }
  - id: say
    kind: manual
    instructions: "Restore {{ steps.asess.outputs.backup }}"
"#,
        r#"error: unknown step `asess` in template
 --> unknown_template_step.yaml:7:37
  |
7 |     instructions: "Restore {{ steps.asess.outputs.backup }}"
  |                                     ^^^^^ did you mean `assess`?

error: 1 error in unknown_template_step.yaml
"#,
    );
}

#[test]
fn unknown_top_key() {
    case(
        "unknown_top_key",
        r#"version: 1
name: t
objective: { rto: 30m }
steps:
  - { id: a, kind: manual, instructions: x }
"#,
        r#"error: unknown key `objective`
 --> unknown_top_key.yaml:3:1
  |
3 | objective: { rto: 30m }
  | ^^^^^^^^^
  = help: did you mean `objectives`?

error: 1 error in unknown_top_key.yaml
"#,
    );
}

#[test]
fn when_unknown() {
    case(
        "when_unknown",
        r#"version: 1
name: t
steps:
  - { id: say, kind: manual, instructions: x, when: "mode == 'incident'" }
"#,
        r#"error: unknown variable `mode`
 --> when_unknown.yaml:4:54
  |
4 |   - { id: say, kind: manual, instructions: x, when: "mode == 'incident'" }
  |                                                      ^^^^ did you mean `run.mode`?
  = help: templates read vars.NAME, secrets.NAME, target.NAME, steps.ID.outputs.NAME, run.FIELD and now()

error: 1 error in when_unknown.yaml
"#,
    );
}

#[test]
fn wrong_type() {
    case(
        "wrong_type",
        r#"version: 1
name: t
steps:
  - { id: a, kind: manual, instructions: x }
  - { id: b, kind: manual, instructions: y, needs: a }
"#,
        r#"error: expected a list, found `a`
 --> wrong_type.yaml:5:52
  |
5 |   - { id: b, kind: manual, instructions: y, needs: a }
  |                                                    ^

error: 1 error in wrong_type.yaml
"#,
    );
}

/// No secret on a program's command line: directly, through a variable (that reads a variable
/// that reads it), through a target whose value reads one in one mode only, in `command`'s
/// `run`, `backup`'s `pg_dump_args` and a smoke test's `command` checks (`secrets` read whole
/// too). Step outputs, `env:` and `database:` are where they may go.
#[test]
fn secrets_on_argv() {
    case(
        "secrets_on_argv",
        r#"version: 1
name: t
vars:
  token_header: "Bearer {{ secrets.TOKEN }}"
  header: "{{ vars.token_header }}"
  host: db.internal
secrets: [TOKEN, LIVE_URL]
targets:
  drill: { db: "postgres://app@{{ vars.host }}/app" }
  live: { db: "{{ secrets.LIVE_URL }}" }
steps:
  - id: call
    kind: command
    run: [curl, -H, "{{ vars.header }}", "https://api/?t={{ secrets.TOKEN }}"]
  - id: fence
    kind: command
    run: [psql, "--dbname={{ target.db }}"]
  - id: dump
    kind: backup
    database: "{{ target.db }}"
    store: /s
    pg_dump_args: ["--exclude-table={{ secrets.TOKEN }}"]
  - id: smoke
    kind: smoke-test
    checks:
      - command: [check-api, "{{ secrets | tojson }}"]
      - command: [check-api, "{{ steps.call.outputs.stdout }}"]
        env: { TOKEN: "{{ secrets.TOKEN }}" }
  - id: allowed
    kind: command
    database: "{{ target.db }}"
    env: { TOKEN: "{{ secrets.TOKEN }}", HEADER: "{{ vars.header }}" }
    run: [psql, "{{ vars.host }}", "{{ steps.dump.outputs.key }}"]
"#,
        r#"error: secret `TOKEN` (through `vars.header`) would be on the command line of `curl`
 --> secrets_on_argv.yaml:14:25
   |
14 |     run: [curl, -H, "{{ vars.header }}", "https://api/?t={{ secrets.TOKEN }}"]
   |                         ^^^^^^^^^^^
   = help: every user of the host can read a program's arguments (`ps`); pass it in the step's `env:` instead, or a PostgreSQL URL as its `database:`

error: secret `TOKEN` would be on the command line of `curl`
 --> secrets_on_argv.yaml:14:61
   |
14 |     run: [curl, -H, "{{ vars.header }}", "https://api/?t={{ secrets.TOKEN }}"]
   |                                                             ^^^^^^^^^^^^^
   = help: every user of the host can read a program's arguments (`ps`); pass it in the step's `env:` instead, or a PostgreSQL URL as its `database:`

error: secret `LIVE_URL` (through `target.db`) would be on the command line of `psql`
 --> secrets_on_argv.yaml:17:30
   |
17 |     run: [psql, "--dbname={{ target.db }}"]
   |                              ^^^^^^^^^
   = help: every user of the host can read a program's arguments (`ps`); pass it in the step's `env:` instead, or a PostgreSQL URL as its `database:`

error: secret `TOKEN` would be on the command line of `pg_dump`
 --> secrets_on_argv.yaml:22:40
   |
22 |     pg_dump_args: ["--exclude-table={{ secrets.TOKEN }}"]
   |                                        ^^^^^^^^^^^^^
   = help: every user of the host can read a program's arguments (`ps`); leave credentials to `database:` (pg_dump gets them through its environment)

error: secrets `LIVE_URL` and `TOKEN` would be on the command line of `check-api`
 --> secrets_on_argv.yaml:26:34
   |
26 |       - command: [check-api, "{{ secrets | tojson }}"]
   |                                  ^^^^^^^
   = help: every user of the host can read a program's arguments (`ps`); pass it in the check's `env:` instead

error: 5 errors in secrets_on_argv.yaml
"#,
    );
}
