//! Object stores: a live prefix in a bucket of the in-process S3 server, and a live local
//! directory store, both targets of a drill's `sync` written another way.

use std::path::Path;

use super::common::s3::S3Server;
use super::common::{Drillbook, Output, files_below, minutes};
use super::{Cases, REFUSED, all, fill, ran, refused_at_start, unchanged};

/// Objects under `s3://source/stuff` overwrite those of the same keys wherever they are
/// synced (and `delete: true` removes the others).
const SYNC: &str = r#"version: 1
name: interlock-store
targets:
  live: { bucket: "s3://data/prod", local: "@LIVE_LOCAL@" }
  drill: { bucket: "@DRILL_BUCKET@", local: "@DRILL_LOCAL@" }
steps:
  - id: copy
    kind: sync
    source: "s3://source/stuff"
    destination: "@DEST@"
    delete: true
"#;

/// Puts `dir` back to `files` (as `files_below` read them) when it differs: the next case starts
/// whole after a failed one.
fn put_back(dir: &Path, files: &[(String, Vec<u8>)]) {
    if files_below(dir) == files {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }
}

fn seed(dir: &Path, what: &str) {
    std::fs::create_dir_all(dir.join("docs")).expect("mkdir");
    for i in 0..5 {
        std::fs::write(
            dir.join(format!("docs/doc-{i}.txt")),
            format!("{what} {i}\n"),
        )
        .expect("object");
    }
}

struct Case<'a> {
    drill_bucket: &'a str,
    drill_local: &'a str,
    destination: &'a str,
}

/// A bucket prefix or a local directory that one prefix of the live one holds, or that holds
/// it, or names it another way: refused as the drill's target and as the sync's own
/// `destination`, every live object byte for byte as it was. The control: a sibling prefix
/// (`prod` does not hold `production`) and the drill's own directory are written.
#[test]
fn a_drill_refuses_every_name_of_a_live_store() {
    let server = S3Server::start();
    for bucket in ["data", "source", "drill"] {
        server.create_bucket(bucket);
    }
    seed(&server.root.join("source/stuff"), "from the drill's source");
    seed(&server.root.join("data/prod"), "live");
    let temp = tempfile::tempdir().expect("tempdir");
    let root = temp.path().canonicalize().expect("real path");
    let live_local = root.join("live-store");
    seed(&live_local, "live");
    std::os::unix::fs::symlink(&live_local, root.join("store-link")).expect("symlink");
    let shown = |path: &Path| path.display().to_string();
    let live_local_url = format!("file://{}", shown(&live_local));
    let drill_local = shown(&root.join("drill-store"));
    let s3_env = server.env();
    let run = |case: &Case| -> Output {
        let _ = std::fs::remove_dir_all(root.join(".drillbook"));
        let text = fill(
            SYNC,
            &[
                ("LIVE_LOCAL", &live_local_url),
                ("DRILL_BUCKET", case.drill_bucket),
                ("DRILL_LOCAL", case.drill_local),
                ("DEST", case.destination),
            ],
        );
        std::fs::write(root.join("p.yaml"), text).expect("playbook");
        Drillbook::in_dir(&root)
            .args(&["run", "p.yaml"])
            .envs(&s3_env)
            .env_remove("AWS_ENDPOINT_URL_S3")
            .deadline(minutes(2))
            .run()
    };
    let mut cases = Cases::default();

    let live_objects = files_below(&server.root.join("data/prod"));
    let live_files = files_below(&live_local);
    for (name, destination, written) in [
        (
            "a sibling prefix",
            "s3://data/production",
            server.root.join("data/production"),
        ),
        (
            "the drill's directory",
            drill_local.as_str(),
            root.join("drill-store"),
        ),
    ] {
        let output = run(&Case {
            drill_bucket: "s3://drill/prod",
            drill_local: &drill_local,
            destination,
        });
        let copied = files_below(&written)
            .into_iter()
            .filter(|(key, _)| key.starts_with("docs/"))
            .collect::<Vec<_>>();
        cases.check(
            &format!("control: {name}"),
            all([
                ran(&output),
                unchanged(
                    "the copy (the source's objects)",
                    &files_below(&server.root.join("source/stuff")),
                    &copied,
                ),
                unchanged(
                    "the live prefix",
                    &live_objects,
                    &files_below(&server.root.join("data/prod")),
                ),
                unchanged("the live directory", &live_files, &files_below(&live_local)),
            ]),
        );
    }
    // From here on, nothing in the bucket `data` may change.
    let bucket = files_below(&server.root.join("data"));

    let port = server
        .endpoint
        .rsplit(':')
        .next()
        .expect("the endpoint's port")
        .to_string();
    let localhost = format!("s3://data/prod?endpoint=http://localhost:{port}");
    let bucket_spellings = [
        ("a trailing slash", "s3://data/prod/".to_string()),
        ("a nested prefix", "s3://data/prod/nested".to_string()),
        ("the whole bucket", "s3://data".to_string()),
        ("an uppercase bucket name", "s3://DATA/prod".to_string()),
        ("the endpoint as localhost in the URL", localhost),
    ];
    let link = shown(&root.join("store-link"));
    let local_spellings = [
        (
            "relative to the working directory",
            "live-store".to_string(),
        ),
        ("a directory inside it", "live-store/sub".to_string()),
        (
            "a file:// URL with a trailing slash",
            format!("{live_local_url}/"),
        ),
        ("a symbolic link to it", link),
    ];
    let spellings = bucket_spellings
        .iter()
        .map(|(name, value)| (*name, value, "bucket"))
        .chain(
            local_spellings
                .iter()
                .map(|(name, value)| (*name, value, "local")),
        );
    for (name, spelling, target) in spellings {
        let (as_bucket, as_local) = if target == "bucket" {
            (spelling.as_str(), drill_local.as_str())
        } else {
            ("s3://drill/prod", spelling.as_str())
        };
        let as_target = format!("{{{{ target.{target} }}}}");
        let live_needle = format!("live target `{target}`");
        let drill_needle = format!("drill target `{target}`");
        for (variant, case, needle) in [
            (
                "as the drill target",
                Case {
                    drill_bucket: as_bucket,
                    drill_local: as_local,
                    destination: &as_target,
                },
                drill_needle.as_str(),
            ),
            (
                "as the sync's destination",
                Case {
                    drill_bucket: "s3://drill/prod",
                    drill_local: &drill_local,
                    destination: spelling,
                },
                "step `copy` writes `destination`",
            ),
        ] {
            let output = run(&case);
            cases.check(
                &format!("{target} store, {name}, {variant}"),
                all([
                    refused_at_start(&output, &root, &[REFUSED, needle, &live_needle]),
                    unchanged(
                        "the bucket `data`",
                        &bucket,
                        &files_below(&server.root.join("data")),
                    ),
                    unchanged("the live directory", &live_files, &files_below(&live_local)),
                ]),
            );
            put_back(&server.root.join("data"), &bucket);
            put_back(&live_local, &live_files);
        }
    }

    // A prefix the store cannot read (`//prod`): the drill cannot tell what it names, so it
    // refuses that too.
    let output = run(&Case {
        drill_bucket: "s3://drill/prod",
        drill_local: &drill_local,
        destination: "s3://data//prod",
    });
    cases.check(
        "bucket store, a doubled slash",
        all([
            refused_at_start(
                &output,
                &root,
                &[
                    REFUSED,
                    "step `copy` writes `destination`, which is not a usable object store",
                    "a drill cannot tell whether it is live",
                ],
            ),
            unchanged(
                "the bucket `data`",
                &bucket,
                &files_below(&server.root.join("data")),
            ),
        ]),
    );
    cases.assert_all_passed();
}
