//! `verify` through the real binary: parity between two stores (a real S3 server, s3s-fs on
//! loopback, and local directories), a store against its checksum report, and freshness.
//! Objects are put in-process through drillbook's `Store` (or the AWS SDK, for multipart
//! uploads with chosen part sizes); what `verify` reports is checked against hashes computed
//! here.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::Output;
use common::drill::{json_report, step};
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use common::{Drillbook, minutes};
use drillbook::checksums::{ChecksumReport, Entry, REPORT_KEY};
use drillbook::connect::store::Store;
use sha2::{Digest, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `count` objects with nested keys and sizes from a few bytes to about 9 KiB.
fn sample(count: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let key = format!("photos/{:02}/img-{i:03}.jpg", i % 7);
            let bytes = format!("object {i};")
                .into_bytes()
                .into_iter()
                .cycle()
                .take(13 + i * 181)
                .collect();
            (key, bytes)
        })
        .collect()
}

/// The same number of bytes, none of them equal.
fn tampered(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b ^ 0x55).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `work` against the store at `url` (S3 through the server's settings, or a
/// directory), opened in-process.
fn with_store<T>(server: &S3Server, url: &str, work: impl AsyncFnOnce(&Store) -> T) -> T {
    runtime().block_on(async {
        let store = Store::open_with(url, &server.settings())
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        work(&store).await
    })
}

fn put_all(server: &S3Server, url: &str, objects: &[(String, Vec<u8>)]) {
    with_store(server, url, async |store| {
        for (key, bytes) in objects {
            store
                .put_bytes(key, bytes.clone())
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e}"));
        }
    });
}

fn put(server: &S3Server, url: &str, key: &str, bytes: &[u8]) {
    put_all(server, url, &[(key.to_owned(), bytes.to_vec())]);
}

fn delete(server: &S3Server, url: &str, key: &str) {
    with_store(server, url, async |store| {
        store.delete(key).await.expect("delete");
    });
}

/// Sets a file's modification time `ago` in the past: s3s-fs gives an object's file time as
/// its LastModified, a local store its file's.
fn backdate(path: &Path, ago: Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.set_modified(SystemTime::now() - ago)
        .expect("set modification time");
}

/// The checksum report `sync` would write into `destination` after mirroring `objects` from
/// the store at `source` (its modification times read from its listing), updated now.
fn write_report(server: &S3Server, source: &str, destination: &str, objects: &[(String, Vec<u8>)]) {
    let listed = with_store(server, source, async |store| {
        store.list("").await.expect("list")
    });
    let mut report = ChecksumReport::new(source);
    for (key, bytes) in objects {
        let object = listed
            .iter()
            .find(|o| &o.key == key)
            .unwrap_or_else(|| panic!("{key} not in {source}"));
        report.objects.insert(
            key.clone(),
            Entry {
                size: bytes.len() as u64,
                sha256: sha256_hex(bytes),
                source_modified: object.modified,
            },
        );
    }
    report.updated_at = Some(jiff::Timestamp::now());
    put(server, destination, REPORT_KEY, &report.to_bytes());
}

/// Runs a playbook whose one step, `verify`, has `parameters` (YAML lines), in a directory of
/// its own, and returns the output with the step's record from the JSON report.
fn run_verify(
    server: &S3Server,
    parameters: &[&str],
    args: &[&str],
) -> (Output, serde_json::Value) {
    run_verify_with(server, parameters, args, &[])
}

/// [`run_verify`] with variables in drillbook's environment.
fn run_verify_with(
    server: &S3Server,
    parameters: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text =
        "version: 1\nname: verify-test\nsteps:\n  - id: verify\n    kind: verify\n".to_owned();
    for line in parameters {
        text.push_str(&format!("    {line}\n"));
    }
    std::fs::write(dir.path().join("verify.yaml"), text).expect("playbook");
    let mut all = vec!["run", "verify.yaml"];
    all.extend(args);
    let output = env
        .iter()
        .fold(Drillbook::in_dir(dir.path()), |drillbook, (name, value)| {
            drillbook.env(name, value)
        })
        .args(&all)
        .envs(server.env())
        .deadline(minutes(2))
        .run();
    let report = json_report(dir.path(), &common::only_run(dir.path()));
    let record = step(&report, "verify").clone();
    (output, record)
}

fn evidence(record: &serde_json::Value) -> Vec<String> {
    record["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|line| line.as_str().expect("a line").to_owned())
        .collect()
}

/// The evidence lines that are findings.
fn findings(record: &serde_json::Value) -> Vec<String> {
    evidence(record)
        .into_iter()
        .filter(|line| {
            [
                "missing: ",
                "extra: ",
                "size mismatch: ",
                "content mismatch: ",
            ]
            .iter()
            .any(|prefix| line.starts_with(prefix))
        })
        .collect()
}

fn assert_succeeded(output: &Output, record: &serde_json::Value) {
    assert_eq!(output.status, 0, "{record:#}\n{}", output.stderr);
    assert_eq!(record["status"], "succeeded", "{record:#}");
}

fn assert_failed(output: &Output, record: &serde_json::Value) {
    assert_eq!(output.status, 1, "{record:#}\n{}", output.stderr);
    assert_eq!(record["status"], "failed", "{record:#}");
}

#[test]
fn parity_reports_a_changed_a_missing_and_an_extra_object_exactly() {
    let server = S3Server::start();
    server.create_bucket("storage");
    server.create_bucket("mirror");
    let objects = sample(50);
    put_all(&server, "s3://storage", &objects);
    put_all(&server, "s3://mirror", &objects);
    // The same 50 objects, mirrored in a local directory too.
    let local = tempfile::tempdir().expect("tempdir");
    for (key, bytes) in &objects {
        let path = local.path().join(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    let (changed, original) = (&objects[10].0, &objects[10].1);
    let changed_bytes = tampered(original);
    put(&server, "s3://mirror", changed, &changed_bytes);
    let missing = &objects[20].0;
    delete(&server, "s3://mirror", missing);
    put(
        &server,
        "s3://mirror",
        "notes/extra.txt",
        b"not in the source",
    );
    let expected = vec![
        format!("missing: {missing}"),
        "extra: notes/extra.txt".to_owned(),
        format!(
            "content mismatch: {changed} (sha256 {} vs {})",
            sha256_hex(original),
            sha256_hex(&changed_bytes)
        ),
    ];
    let counts = "51 objects compared: 1 missing, 1 extra, 0 size mismatches, 1 content mismatch";

    let local_source = local.path().to_str().expect("UTF-8 path");
    for (source, deep) in [
        ("s3://storage", true),
        // No checksum report in the mirror: without `deep` both sides are hashed all the same.
        ("s3://storage", false),
        (local_source, true),
    ] {
        let (output, record) = run_verify(
            &server,
            &[
                &format!("source: \"{source}\""),
                "destination: s3://mirror",
                &format!("deep: {deep}"),
            ],
            &[],
        );
        assert_failed(&output, &record);
        assert_eq!(evidence(&record)[0], counts, "{source}, deep {deep}");
        assert_eq!(findings(&record), expected, "{source}, deep {deep}");
        assert_eq!(record["error"], counts, "{record:#}");
        let outputs = &record["outputs"];
        assert_eq!(outputs["objects"], 51, "{outputs}");
        assert_eq!(outputs["missing"], 1, "{outputs}");
        assert_eq!(outputs["extra"], 1, "{outputs}");
        assert_eq!(outputs["mismatched"], 1, "{outputs}");
    }

    // A size difference is a size mismatch, not a content one.
    put(&server, "s3://mirror", changed, &original[1..]);
    let (output, record) = run_verify(
        &server,
        &["source: s3://storage", "destination: s3://mirror"],
        &[],
    );
    assert_failed(&output, &record);
    assert_eq!(
        findings(&record)[2],
        format!(
            "size mismatch: {changed} (source {}, destination {})",
            original.len(),
            original.len() - 1
        )
    );
    assert_eq!(record["outputs"]["mismatched"], 1);
}

/// An S3 client of our own, for multipart uploads with chosen part sizes.
fn s3_client(server: &S3Server) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
        ResponseChecksumValidation,
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&server.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Uploads `bytes` as a multipart upload of `part_size` parts; returns the ETag S3 gives it.
async fn upload_in_parts(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: &[u8],
    part_size: usize,
) -> String {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("create multipart upload");
    let id = upload.upload_id().expect("upload id");
    let mut parts = Vec::new();
    for (i, chunk) in bytes.chunks(part_size).enumerate() {
        let number = i as i32 + 1;
        let part = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .expect("upload part");
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(part.e_tag().map(str::to_owned))
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("complete multipart upload");
    let head = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("head");
    head.e_tag().expect("an ETag").to_owned()
}

#[test]
fn objects_uploaded_with_different_part_sizes_are_not_flagged() {
    const MIB: usize = 1 << 20;
    let server = S3Server::start();
    server.create_bucket("storage");
    server.create_bucket("mirror");
    let mut rng = fastrand::Rng::with_seed(24);
    let mut bytes = vec![0u8; 24 * MIB];
    rng.fill(&mut bytes);
    let key = "videos/launch.mp4";
    let client = s3_client(&server);
    let (source_etag, mirror_etag) = runtime().block_on(async {
        (
            upload_in_parts(&client, "storage", key, &bytes, 5 * MIB).await,
            upload_in_parts(&client, "mirror", key, &bytes, 8 * MIB).await,
        )
    });
    // The ETags say "different", the bytes are the same.
    assert_ne!(source_etag, mirror_etag);
    assert!(
        source_etag.ends_with("-5\"") && mirror_etag.ends_with("-3\""),
        "{source_etag} {mirror_etag}"
    );
    let small = sample(3);
    put_all(&server, "s3://storage", &small);
    put_all(&server, "s3://mirror", &small);

    for deep in [true, false] {
        let (output, record) = run_verify(
            &server,
            &[
                "source: s3://storage",
                "destination: s3://mirror",
                &format!("deep: {deep}"),
            ],
            &[],
        );
        assert_succeeded(&output, &record);
        let lines = evidence(&record);
        assert_eq!(
            lines[0],
            "4 objects compared: 0 missing, 0 extra, 0 size mismatches, 0 content mismatches"
        );
        assert!(findings(&record).is_empty(), "{lines:?}");
        // Both sides of every object were read: 2 × (24 MiB + the small ones).
        assert!(
            lines[1].starts_with("sha256 ")
                && lines[1].contains("compared for 4 objects (48.0 MiB read)"),
            "{lines:?}"
        );
        assert_eq!(record["outputs"]["mismatched"], 0);
    }
}

#[test]
fn without_deep_the_checksum_report_spares_rehashing_but_changes_are_still_caught() {
    let server = S3Server::start();
    server.create_bucket("storage");
    server.create_bucket("mirror");
    let objects = sample(50);
    put_all(&server, "s3://storage", &objects);
    put_all(&server, "s3://mirror", &objects);
    // The mirror was written well before its report.
    for (key, _) in &objects {
        backdate(
            &server.root.join("mirror").join(key),
            Duration::from_secs(600),
        );
    }
    write_report(&server, "s3://storage", "s3://mirror", &objects);
    let parameters = ["source: s3://storage", "destination: s3://mirror"];

    let (output, record) = run_verify(&server, &parameters, &[]);
    assert_succeeded(&output, &record);
    assert_eq!(
        evidence(&record),
        [
            "50 objects compared: 0 missing, 0 extra, 0 size mismatches, 0 content mismatches",
            "sha256 compared for 0 objects (0 B read); 50 trusted from the checksum report of s3://mirror",
        ]
    );

    // Tampered in the mirror after the report (same size), and changed at the source since
    // the mirror was made (same size): neither is vouched for by the report any more.
    let (in_mirror, mirrored) = (&objects[7].0, &objects[7].1);
    let bad = tampered(mirrored);
    put(&server, "s3://mirror", in_mirror, &bad);
    let (at_source, old) = (&objects[13].0, &objects[13].1);
    let new = tampered(old);
    put(&server, "s3://storage", at_source, &new);

    let (output, record) = run_verify(&server, &parameters, &[]);
    assert_failed(&output, &record);
    let lines = evidence(&record);
    assert_eq!(
        lines[0],
        "50 objects compared: 0 missing, 0 extra, 0 size mismatches, 2 content mismatches"
    );
    let mut expected = vec![
        format!(
            "content mismatch: {in_mirror} (sha256 {} vs {})",
            sha256_hex(mirrored),
            sha256_hex(&bad)
        ),
        format!(
            "content mismatch: {at_source} (sha256 {} vs {})",
            sha256_hex(&new),
            sha256_hex(old)
        ),
    ];
    expected.sort();
    assert_eq!(findings(&record), expected);
    // The tampered object was read on both sides; the changed one only at the source (the
    // report vouches for the untouched mirror copy); the 48 others not at all.
    let read = mirrored.len() * 2 + new.len();
    assert_eq!(
        lines.last().expect("a line"),
        &format!(
            "sha256 compared for 2 objects ({} read); 48 trusted from the checksum report of s3://mirror",
            drillbook::duration::human_bytes(read as u64)
        )
    );
    assert_eq!(record["outputs"]["mismatched"], 2);
}

#[test]
fn a_store_is_checked_against_its_own_checksum_report() {
    let server = S3Server::start();
    server.create_bucket("mirror");
    server.create_bucket("bare");
    let objects = sample(20);
    put_all(&server, "s3://mirror", &objects);
    write_report(&server, "s3://mirror", "s3://mirror", &objects);

    let (output, record) = run_verify(&server, &["source: s3://mirror", "deep: true"], &[]);
    assert_succeeded(&output, &record);
    assert_eq!(
        evidence(&record)[0],
        "20 objects compared with the checksum report: 0 missing, 0 extra, 0 size mismatches, 0 content mismatches"
    );

    let gone = &objects[4].0;
    delete(&server, "s3://mirror", gone);
    put(&server, "s3://mirror", "stray.bin", b"stray");
    let (output, record) = run_verify(&server, &["source: s3://mirror"], &[]);
    assert_failed(&output, &record);
    let counts = "21 objects compared with the checksum report: 1 missing, 1 extra, 0 size mismatches, 0 content mismatches";
    assert_eq!(evidence(&record)[0], counts);
    assert_eq!(record["error"], counts);
    assert_eq!(
        findings(&record),
        [format!("missing: {gone}"), "extra: stray.bin".to_owned()]
    );
    assert_eq!(record["outputs"]["missing"], 1);
    assert_eq!(record["outputs"]["extra"], 1);

    // No report: nothing to check against, and the step says so.
    put(&server, "s3://bare", "a.bin", b"a");
    let (output, record) = run_verify(&server, &["source: s3://bare"], &[]);
    assert_failed(&output, &record);
    assert_eq!(
        record["error"],
        "s3://bare has no checksum report (.drillbook/checksums.json): without `destination:`, `verify` checks a store against the report `sync` writes into its destination; to compare two stores give `destination:`, to check a database backup give `backup:`"
    );
}

#[test]
fn a_local_directory_against_its_report_and_what_only_deep_catches() {
    let server = S3Server::start();
    let directory = tempfile::tempdir().expect("tempdir");
    let url = directory.path().to_str().expect("UTF-8 path").to_owned();
    let objects = sample(12);
    put_all(&server, &url, &objects);
    for (key, _) in &objects {
        backdate(&directory.path().join(key), Duration::from_secs(600));
    }
    write_report(&server, &url, &url, &objects);
    let source = format!("source: \"{url}\"");

    // Bytes changed in place with the old modification time put back: the report vouches for
    // the object, so only re-reading it finds the change.
    let (key, original) = (&objects[3].0, &objects[3].1);
    let path = directory.path().join(key);
    let bad = tampered(original);
    std::fs::write(&path, &bad).expect("tamper");
    backdate(&path, Duration::from_secs(600));
    // Grown since the report: a size mismatch either way.
    let (grown, before) = (&objects[5].0, &objects[5].1);
    let mut longer = before.clone();
    longer.push(b'!');
    std::fs::write(directory.path().join(grown), &longer).expect("grow");

    let (output, record) = run_verify(&server, &[&source], &[]);
    assert_failed(&output, &record);
    let size = format!(
        "size mismatch: {grown} (report {}, store {})",
        before.len(),
        longer.len()
    );
    assert_eq!(findings(&record), std::slice::from_ref(&size));
    assert!(
        evidence(&record)
            .last()
            .expect("a line")
            .ends_with("; 11 untouched since the report was written, their checksums trusted (`deep: true` re-hashes them)"),
        "{record:#}"
    );

    let (output, record) = run_verify(&server, &[&source, "deep: true"], &[]);
    assert_failed(&output, &record);
    assert_eq!(
        findings(&record),
        [
            size,
            format!(
                "content mismatch: {key} (sha256 {} vs {})",
                sha256_hex(original),
                sha256_hex(&bad)
            )
        ]
    );
    assert_eq!(record["outputs"]["mismatched"], 2);
}

#[test]
fn max_age_measures_the_last_sync_or_the_newest_object() {
    let server = S3Server::start();
    server.create_bucket("mirror");
    let objects = sample(3);
    put_all(&server, "s3://mirror", &objects);
    let hours = |h: u64| Duration::from_secs(h * 3600);
    for ((key, _), age) in objects.iter().zip([hours(5), hours(3), hours(4)]) {
        backdate(&server.root.join("mirror").join(key), age);
    }
    let newest = &objects[1].0;

    // Compared with another store, the source is as fresh as its newest object.
    let pair = [
        "source: s3://mirror",
        "destination: s3://mirror",
        "max_age: 12h",
    ];
    let (output, record) = run_verify(&server, &pair, &[]);
    assert_succeeded(&output, &record);
    assert_eq!(record["outputs"]["newest"], newest.as_str());
    assert_eq!(record["outputs"]["age"], "3h00m");
    assert_eq!(
        evidence(&record).last().expect("a line"),
        &format!("the newest object, {newest}, is 3h00m old (at most 12h)")
    );
    let pair = [
        "source: s3://mirror",
        "destination: s3://mirror",
        "max_age: 2h",
    ];
    let (output, record) = run_verify(&server, &pair, &[]);
    assert_failed(&output, &record);
    assert_eq!(
        record["error"],
        format!("too old: the newest object, {newest}, is 3h00m old (at most 2h)")
    );

    // Checked against its own checksum report, a mirror is as fresh as the last sync that
    // wrote it, even when nothing new arrived for hours (a quiet bucket).
    write_report(&server, "s3://mirror", "s3://mirror", &objects);
    let (output, record) = run_verify(&server, &["source: s3://mirror", "max_age: 2h"], &[]);
    assert_succeeded(&output, &record);
    assert_eq!(record["outputs"]["newest"], ".drillbook/checksums.json");
    // Measured from the declared moment, a day on (drillbook's clock a day on too: it
    // refuses a declaration in its future).
    let declared = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let (output, record) = run_verify_with(
        &server,
        &["source: s3://mirror", "max_age: 12h"],
        &["--declared-at", &declared],
        &[("DRILLBOOK_CLOCK_OFFSET", "24h")],
    );
    assert_failed(&output, &record);
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("too old: the newest sync (its checksum report)")),
        "{record}"
    );
}
