//! What a store holds, checked independently of drillbook, on the disk of the S3 server
//! (s3s-fs keeps each object as a file under `<root>/<bucket>/<key>`) or of a local store:
//! backups against their manifests, mirrors against their checksum reports, and what an
//! interrupted upload can leave behind. Each check returns the problems it found, worded for
//! a test's failure message (empty: all is well).

use std::path::Path;

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The backups under `dir`: (dump key, manifest) for every `*.dump.manifest.json`, sorted.
pub fn backups(dir: &Path) -> Vec<(String, serde_json::Value)> {
    super::walk(dir)
        .into_iter()
        .filter_map(|relative| {
            let name = relative.to_string_lossy().into_owned();
            let dump = name.strip_suffix(".manifest.json")?.to_owned();
            let bytes = std::fs::read(dir.join(&relative)).ok()?;
            let manifest = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| serde_json::json!({ "unreadable": e.to_string() }));
            Some((dump, manifest))
        })
        .collect()
}

/// Every manifest under `dir` describes the bytes of its dump (size, SHA-256, key); no
/// manifest is unreadable or without its dump.
pub fn backup_problems(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for (dump, manifest) in backups(dir) {
        let Ok(bytes) = std::fs::read(dir.join(&dump)) else {
            problems.push(format!("{dump}: a manifest without its dump"));
            continue;
        };
        let size = bytes.len() as u64;
        let sha = sha256_hex(&bytes);
        if manifest["size"] != size || manifest["sha256"] != sha.as_str() {
            problems.push(format!(
                "{dump}: {size} bytes, sha256 {sha}; its manifest says {} bytes, sha256 {}",
                manifest["size"], manifest["sha256"]
            ));
        }
        let named = Path::new(&dump)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        if manifest["key"].as_str() != named.as_deref() && manifest["key"] != dump.as_str() {
            problems.push(format!("{dump}: its manifest names {}", manifest["key"]));
        }
    }
    problems
}

/// Dumps under `dir` without a manifest (an upload that never finished, or whose manifest
/// was never written).
pub fn dumps_without_manifest(dir: &Path) -> Vec<String> {
    let files: Vec<String> = super::walk(dir)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files
        .iter()
        .filter(|f| f.ends_with(".dump") && !files.contains(&format!("{f}.manifest.json")))
        .cloned()
        .collect()
}

/// Files whose names say they are unfinished: `.partial`, temporary or upload files.
pub fn leftovers(dir: &Path) -> Vec<String> {
    super::walk(dir)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|f| f.contains(".partial") || f.contains(".tmp") || f.contains(".upload"))
        .collect()
}

/// Every object the checksum report under `mirror` lists is there with that size and
/// SHA-256 (no report: nothing to check).
pub fn report_problems(mirror: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(mirror.join(".drillbook/checksums.json")) else {
        return Vec::new();
    };
    let report: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(report) => report,
        Err(e) => return vec![format!("the checksum report is unreadable: {e}")],
    };
    let mut problems = Vec::new();
    let objects = report["objects"].as_object().cloned().unwrap_or_default();
    for (key, entry) in objects {
        match std::fs::read(mirror.join(&key)) {
            Ok(bytes) => {
                if entry["size"] != bytes.len() as u64
                    || entry["sha256"] != sha256_hex(&bytes).as_str()
                {
                    problems.push(format!(
                        "{key}: {} bytes in the mirror, the report says {}",
                        bytes.len(),
                        entry["size"]
                    ));
                }
            }
            Err(_) => problems.push(format!("{key}: in the report, not in the mirror")),
        }
    }
    problems
}

/// Objects of `mirror` (drillbook's own `.drillbook/` files aside) that differ from, or are
/// missing in, `source`.
pub fn mirror_differences(source: &Path, mirror: &Path) -> Vec<String> {
    super::walk(mirror)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|key| !key.starts_with(".drillbook/"))
        .filter(|key| std::fs::read(source.join(key)).ok() != std::fs::read(mirror.join(key)).ok())
        .map(|key| format!("{key}: differs from the source's"))
        .collect()
}

/// Objects of `source` that `mirror` lacks.
pub fn missing_from_mirror(source: &Path, mirror: &Path) -> Vec<String> {
    super::walk(source)
        .iter()
        .filter(|key| !mirror.join(key).exists())
        .map(|key| key.to_string_lossy().into_owned())
        .collect()
}

/// A seeded tree of objects under `dir` to mirror: `count` of up to `max_size` random bytes,
/// spread over `dirs` folders (`d0/NAME-0.bin` …), and two just above a 9 MiB part.
pub fn random_objects(
    dir: &Path,
    seed: u64,
    count: usize,
    max_size: usize,
    dirs: usize,
    name: &str,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..count {
        let size = rng.usize(0..max_size);
        let bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(size).collect();
        let path = dir.join(format!("d{}/{name}-{i}.bin", i % dirs));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    for i in 0..2 {
        let bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
            .take((9 << 20) + i)
            .collect();
        std::fs::write(dir.join(format!("large-{i}.bin")), bytes).unwrap();
    }
}
