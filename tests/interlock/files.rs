//! Files: the application's live env file, and a drill's `promote` (repoint, run in the drill)
//! that would rewrite it under another name.

use std::path::{Path, PathBuf};

use super::common::{Drillbook, Output};
use super::{Cases, Env, REFUSED, all, fill, ran, refused_at_start, unchanged};

const LIVE_ENV: &str = "# the live application\nDATABASE_URL=postgres://app@db-primary/app\n";

/// Promote's repoint, made to run in a drill (`live_only: false`), writing `@WRITE@`.
const REPOINT: &str = r#"version: 1
name: interlock-env-file
targets:
  live: { env_file: "@LIVE@" }
  drill: { env_file: "@DRILL@" }
steps:
  - id: repoint
    kind: promote
    method: repoint
    url: "postgres://restored@db.invalid/app"
    env_file: "@WRITE@"
    live_only: false
"#;

/// The files of a directory (not below it, not the state directory), with their bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .filter(|entry| entry.path().is_file())
        .map(|entry| {
            let bytes = std::fs::read(entry.path()).expect("read");
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    found.sort();
    found
}

/// Puts the files of `dir` back to `files` (as `files` read them): the next case starts whole
/// after a failed one.
fn put_back(dir: &Path, before: &[(String, Vec<u8>)]) {
    for (name, _) in files(dir) {
        if !before.iter().any(|(kept, _)| *kept == name) {
            std::fs::remove_file(dir.join(name)).expect("remove");
        }
    }
    for (name, bytes) in before {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
}

/// `root/x/live.env` (the live file), `root/y` (empty), `root/drill/app.env` (the drill's), a
/// symbolic link and a hard link to the live file, and a symbolic link to its directory.
fn layout(root: &Path) -> PathBuf {
    for dir in ["x", "y", "drill"] {
        std::fs::create_dir(root.join(dir)).expect("mkdir");
    }
    let live = root.join("x/live.env");
    std::fs::write(&live, LIVE_ENV).expect("live env file");
    std::fs::write(
        root.join("drill/app.env"),
        "DATABASE_URL=postgres://old@staging/app\n",
    )
    .expect("drill env file");
    std::os::unix::fs::symlink(&live, root.join("link.env")).expect("symlink");
    std::fs::hard_link(&live, root.join("hard.env")).expect("hard link");
    std::os::unix::fs::symlink(root.join("x"), root.join("xlink")).expect("directory symlink");
    live
}

/// Runs `playbook` from `cwd`, whose state directory is removed first: the runs there are
/// this case's.
fn run(playbook: &Path, cwd: &Path, env: &[(&str, &str)]) -> Output {
    let _ = std::fs::remove_dir_all(cwd.join(".drillbook"));
    let file = playbook.display().to_string();
    Drillbook::in_dir(cwd).args(&["run", &file]).envs(env).run()
}

/// The live env file named relative to another working directory, with `..`, as a `file://`
/// URL, through a symbolic link (to it or to its directory), by a hard link, from `~`: each
/// refused, as the drill's target and as the step's own `env_file`; the live directory's
/// files byte for byte as they were. The control: the drill's own env file is rewritten.
#[test]
fn a_drill_refuses_every_name_of_the_live_env_file() {
    let temp = tempfile::tempdir().expect("tempdir");
    let root = temp.path().canonicalize().expect("real path");
    let live = layout(&root);
    let live_dir = root.join("x");
    let before = files(&live_dir);
    let shown = |path: &Path| path.display().to_string();
    let (live_text, drill_own) = (shown(&live), shown(&root.join("drill/app.env")));
    let home = shown(&root);
    let mut cases = Cases::default();
    let playbook = root.join("p.yaml");

    std::fs::write(
        &playbook,
        fill(
            REPOINT,
            &[
                ("LIVE", &live_text),
                ("DRILL", &drill_own),
                ("WRITE", "{{ target.env_file }}"),
            ],
        ),
    )
    .expect("playbook");
    let output = run(&playbook, &root, &[]);
    let rewritten = std::fs::read_to_string(root.join("drill/app.env")).expect("drill env file");
    cases.check(
        "control: the drill's own env file",
        all([
            ran(&output),
            unchanged(
                "the drill's env file (repointed)",
                &"DATABASE_URL=postgres://restored@db.invalid/app\n",
                &rewritten.as_str(),
            ),
            unchanged("the live directory", &before, &files(&live_dir)),
        ]),
    );

    // (name, working directory, how the drill names the file, its environment)
    let spellings: Vec<(&str, PathBuf, String, Env)> = vec![
        (
            "relative, from its directory",
            live_dir.clone(),
            "live.env".into(),
            vec![],
        ),
        (
            "../x/live.env",
            root.join("y"),
            "../x/live.env".into(),
            vec![],
        ),
        (
            "./x/./live.env",
            root.clone(),
            "./x/./live.env".into(),
            vec![],
        ),
        (
            "doubled slashes",
            root.clone(),
            format!("{}//x//live.env", shown(&root)),
            vec![],
        ),
        (
            "a file:// URL",
            root.clone(),
            format!("file://{live_text}"),
            vec![],
        ),
        (
            "a symbolic link to it",
            root.clone(),
            shown(&root.join("link.env")),
            vec![],
        ),
        (
            "a hard link to it",
            root.clone(),
            shown(&root.join("hard.env")),
            vec![],
        ),
        (
            "through a symbolic link to its directory",
            root.clone(),
            shown(&root.join("xlink/live.env")),
            vec![],
        ),
        (
            "~/x/live.env",
            root.join("y"),
            "~/x/live.env".into(),
            vec![("HOME", home.as_str())],
        ),
    ];
    for (name, cwd, spelling, env) in &spellings {
        for (variant, drill, write, needle) in [
            (
                "as the drill target",
                spelling.as_str(),
                "{{ target.env_file }}",
                "drill target `env_file`",
            ),
            (
                "as the promote's env_file",
                drill_own.as_str(),
                spelling.as_str(),
                "step `repoint` writes `env_file`",
            ),
        ] {
            std::fs::write(
                &playbook,
                fill(
                    REPOINT,
                    &[("LIVE", &live_text), ("DRILL", drill), ("WRITE", write)],
                ),
            )
            .expect("playbook");
            let output = run(&playbook, cwd, env);
            let result = all([
                refused_at_start(&output, cwd, &[REFUSED, needle, "live target `env_file`"]),
                unchanged("the live directory", &before, &files(&live_dir)),
            ]);
            if result.is_err() {
                put_back(&live_dir, &before);
                // A rewrite by rename leaves the hard link on the old file.
                let _ = std::fs::remove_file(root.join("hard.env"));
                std::fs::hard_link(&live, root.join("hard.env")).expect("hard link");
            }
            cases.check(&format!("{name}, {variant}"), result);
        }
    }
    cases.assert_all_passed();
}
