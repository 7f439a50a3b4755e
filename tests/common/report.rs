//! The checksum report `sync` writes into a destination directory, read the way a script
//! would (docs/language.md, `sync`): the head names the entries (sorted JSON Lines) and the
//! segments of changes that follow them.

use std::collections::BTreeMap;
use std::path::Path;

pub const HEAD: &str = ".drillbook/checksums.json";

/// key → (size, sha256), as the report in `root` records it.
pub fn report_in(root: &Path) -> BTreeMap<String, (u64, String)> {
    let head = head(root);
    let mut found = BTreeMap::new();
    let mut files = vec![root.join(head["entries"].as_str().expect("entries"))];
    let segments = root.join(format!(
        ".drillbook/checksums/{}.d",
        head["generation"].as_str().expect("generation")
    ));
    // A segment killed while being written is a temporary file beside them, not a segment.
    let mut more: Vec<_> = std::fs::read_dir(&segments)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    more.sort();
    files.extend(more);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("report file");
        let mut last: Option<String> = None;
        for line in text.lines() {
            let line: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let Some(key) = line["key"].as_str() else {
                assert!(line["segment"].is_u64(), "a segment's first line: {line}");
                continue;
            };
            assert!(
                last.as_deref() < Some(key),
                "{} is sorted by key: {key} after {last:?}",
                file.display()
            );
            last = Some(key.to_owned());
            if line["removed"] == true {
                found.remove(key);
            } else {
                let size = line["size"].as_u64().expect("size");
                let sha256 = line["sha256"].as_str().expect("sha256").to_owned();
                found.insert(key.to_owned(), (size, sha256));
            }
        }
    }
    found
}

/// The report's head.
pub fn head(root: &Path) -> serde_json::Value {
    let text = std::fs::read(root.join(HEAD)).expect("checksum report");
    serde_json::from_slice(&text).expect("report JSON")
}

/// The bytes of every file of the report in `root`.
pub fn report_bytes(root: &Path) -> u64 {
    let mut total = std::fs::metadata(root.join(HEAD)).map_or(0, |m| m.len());
    let mut pending = vec![root.join(".drillbook/checksums")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let metadata = entry.metadata().expect("metadata");
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total += metadata.len();
            }
        }
    }
    total
}

/// Every file under `root` but drillbook's own, by key: size and SHA-256 (a mirror's data,
/// to compare with its source and with its report).
pub fn tree(root: &Path) -> BTreeMap<String, (u64, String)> {
    use sha2::Digest;
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).expect("read_dir").flatten() {
            let path = entry.path();
            let key = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if key == ".drillbook" {
                continue;
            }
            if entry.file_type().expect("file type").is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                let sha256 = sha2::Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                found.insert(key, (bytes.len() as u64, sha256));
            }
        }
    }
    found
}

/// Writes `bytes` at `root/key`, last modified at `when` (a source object for a mirror).
pub fn put_at(root: &Path, key: &str, bytes: &[u8], when: std::time::SystemTime) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("write");
    let file = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_modified(when).expect("set time");
}
