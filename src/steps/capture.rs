//! Bounded capture: whatever a step reads from a program or an HTTP peer goes, masked, into a
//! file in the run directory, whole, while memory keeps only its first and last bytes (the
//! head and the tail, what outputs, the journal and reports show) and a SHA-256 of the file.
//! Output that trickles in reaches the file at once, so that it can be watched as it grows.
//! However much a program prints or a server sends, memory stays flat. Every reader of
//! program output and HTTP bodies in the steps goes through here.

use std::path::{Path, PathBuf};

use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};

use crate::secrets::{Masker, StreamMasker};

/// How much of a capture is kept in memory: its first `head` and last `tail` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub head: usize,
    pub tail: usize,
}

/// A program's standard output, an HTTP body: 16 KiB + 48 KiB.
pub(crate) const OUTPUT: Limits = Limits {
    head: 16 * 1024,
    tail: 48 * 1024,
};
/// A program's standard error: 2 KiB + 6 KiB.
pub(crate) const ERRORS: Limits = Limits {
    head: 2 * 1024,
    tail: 6 * 1024,
};

/// What was captured: the kept text and the whole file's address, size and hash.
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    /// The head, a marker saying how many bytes were left out (when any were), the tail;
    /// masked, as UTF-8 (invalid sequences replaced).
    pub text: String,
    /// The file holding everything (masked).
    pub path: PathBuf,
    /// Bytes in the file.
    pub size: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Bytes in the file but not in `text`.
    pub omitted: u64,
    /// Whether the raw stream held the text asked for with [`Sink::find`].
    pub found: bool,
    /// Where the tail starts in `text`.
    tail_at: usize,
}

impl Captured {
    /// The kept end of the output alone, without the head or the marker.
    pub(crate) fn tail(&self) -> &str {
        &self.text[self.tail_at..]
    }

    /// For the step's outputs: `{path, size, sha256}`.
    pub(crate) fn file_json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path.display().to_string(),
            "size": self.size,
            "sha256": self.sha256,
        })
    }

    /// One line for the evidence: `stdout: 1073741824 bytes, sha256 …, in …/output/x.1.stdout`.
    pub(crate) fn evidence(&self, name: &str) -> String {
        format!(
            "{name}: {} bytes, sha256 {}, in {}",
            self.size,
            self.sha256,
            self.path.display()
        )
    }
}

/// A capture in progress: feed it raw chunks, then finish it.
pub(crate) struct Sink {
    file: BufWriter<tokio::fs::File>,
    path: PathBuf,
    masker: StreamMasker,
    hasher: sha2::Sha256,
    limits: Limits,
    head: Vec<u8>,
    /// The bytes after the head, the last `tail` of them (up to twice as many between trims).
    tail: Vec<u8>,
    size: u64,
    /// Bytes dropped from the front of `tail`.
    dropped: u64,
    needle: Option<Needle>,
    /// When the file was last flushed: output that trickles in is on disk within
    /// [`FLUSH_AFTER`], for `drillbook watch` and anyone tailing it.
    flushed: std::time::Instant,
}

/// A chunk this small says the program is not flooding: it is written through at once.
const SMALL: usize = 4096;
/// The longest output waits in the buffer while it keeps coming in large chunks.
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// A search for a text in the raw stream, across chunk boundaries, in bounded memory.
struct Needle {
    text: Vec<u8>,
    /// The last `text.len() - 1` raw bytes seen.
    carry: Vec<u8>,
    found: bool,
}

impl Sink {
    pub(crate) async fn create(
        path: PathBuf,
        masker: &Masker,
        limits: Limits,
    ) -> Result<Sink, String> {
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Sink {
            file: BufWriter::with_capacity(64 * 1024, file),
            path,
            masker: masker.stream(),
            hasher: sha2::Sha256::new(),
            limits,
            head: Vec::new(),
            tail: Vec::new(),
            size: 0,
            dropped: 0,
            needle: None,
            flushed: std::time::Instant::now(),
        })
    }

    /// Also look for `text` in the raw (unmasked) stream; [`Captured::found`] says.
    pub(crate) fn find(&mut self, text: &str) {
        self.needle = Some(Needle {
            text: text.as_bytes().to_vec(),
            carry: Vec::new(),
            found: text.is_empty(),
        });
    }

    pub(crate) async fn push(&mut self, raw: &[u8]) -> Result<(), String> {
        if let Some(needle) = &mut self.needle {
            needle.push(raw);
        }
        let masked = self.masker.push(raw);
        self.write(&masked).await?;
        if raw.len() < SMALL || self.flushed.elapsed() >= FLUSH_AFTER {
            self.file
                .flush()
                .await
                .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
            self.flushed = std::time::Instant::now();
        }
        Ok(())
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        let to_head = self
            .limits
            .head
            .saturating_sub(self.head.len())
            .min(chunk.len());
        self.head.extend_from_slice(&chunk[..to_head]);
        let rest = &chunk[to_head..];
        if self.limits.tail == 0 {
            self.dropped += rest.len() as u64;
            return Ok(());
        }
        if rest.len() >= self.limits.tail {
            self.dropped += (self.tail.len() + rest.len() - self.limits.tail) as u64;
            self.tail.clear();
            self.tail
                .extend_from_slice(&rest[rest.len() - self.limits.tail..]);
        } else {
            self.tail.extend_from_slice(rest);
            if self.tail.len() > 2 * self.limits.tail {
                let cut = self.tail.len() - self.limits.tail;
                self.tail.drain(..cut);
                self.dropped += cut as u64;
            }
        }
        Ok(())
    }

    pub(crate) async fn finish(mut self) -> Result<Captured, String> {
        let last = std::mem::replace(&mut self.masker, Masker::default().stream()).finish();
        self.write(&last).await?;
        self.file
            .flush()
            .await
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        if self.tail.len() > self.limits.tail {
            let cut = self.tail.len() - self.limits.tail;
            self.tail.drain(..cut);
            self.dropped += cut as u64;
        }
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "… {} bytes omitted (the whole output: {}) …\n",
                self.dropped,
                self.path.display()
            ));
        }
        let tail_at = text.len();
        text.push_str(&String::from_utf8_lossy(&self.tail));
        Ok(Captured {
            tail_at,
            text,
            path: self.path,
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
            omitted: self.dropped,
            found: self.needle.is_some_and(|n| n.found),
        })
    }
}

impl Needle {
    fn push(&mut self, raw: &[u8]) {
        if self.found {
            return;
        }
        let keep = self.text.len().saturating_sub(1);
        // The window: what was carried over plus the start of this chunk, then the chunk.
        let head_len = raw.len().min(keep);
        let mut joint = std::mem::take(&mut self.carry);
        joint.extend_from_slice(&raw[..head_len]);
        if contains(&joint, &self.text) || contains(raw, &self.text) {
            self.found = true;
            return;
        }
        let source = if raw.len() >= keep {
            &raw[raw.len() - keep..]
        } else {
            &joint[joint.len().saturating_sub(keep)..]
        };
        self.carry = source.to_vec();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Captures a pipe (a child's stdout or stderr) to its end. No pipe: an empty capture.
pub(crate) async fn pipe(
    pipe: Option<impl AsyncRead + Unpin>,
    path: PathBuf,
    masker: &Masker,
    limits: Limits,
) -> Result<Captured, String> {
    let mut sink = Sink::create(path, masker, limits).await?;
    if let Some(mut pipe) = pipe {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = pipe.read(&mut buffer).await.map_err(|e| {
                format!("reading the output for {} failed: {e}", sink.path.display())
            })?;
            if read == 0 {
                break;
            }
            sink.push(&buffer[..read]).await?;
        }
    }
    sink.finish().await
}

/// Captures an HTTP response's body, chunk by chunk; `find` is looked for in the raw body.
pub(crate) async fn body(
    mut response: reqwest::Response,
    path: PathBuf,
    masker: &Masker,
    limits: Limits,
    find: Option<&str>,
) -> Result<Captured, String> {
    let mut sink = Sink::create(path, masker, limits).await?;
    if let Some(text) = find {
        sink.find(text);
    }
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the body failed: {}", e.without_url()))?
    {
        sink.push(&chunk).await?;
    }
    sink.finish().await
}

/// The file a capture named `name` goes to: `<run dir>/output/<step>.<attempt>.<name>`.
pub(crate) async fn file(
    run_dir: &Path,
    step: &str,
    attempt: u32,
    name: &str,
) -> Result<PathBuf, String> {
    // Absolute, so that the path in outputs and evidence is usable from anywhere.
    let dir = std::path::absolute(run_dir.join("output"))
        .map_err(|e| format!("cannot locate {}: {e}", run_dir.display()))?;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir.join(format!("{step}.{attempt}.{name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn captured(chunks: &[&[u8]], limits: Limits, find: Option<&str>) -> Captured {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::create(dir.path().join("out"), &Masker::default(), limits)
            .await
            .unwrap();
        if let Some(text) = find {
            sink.find(text);
        }
        for chunk in chunks {
            sink.push(chunk).await.unwrap();
        }
        let done = sink.finish().await.unwrap();
        let file = std::fs::read(&done.path).unwrap();
        assert_eq!(file.len() as u64, done.size);
        assert_eq!(hex(&sha2::Sha256::digest(&file)), done.sha256);
        done
    }

    #[tokio::test]
    async fn small_output_is_kept_whole() {
        let limits = Limits { head: 4, tail: 8 };
        let done = captured(&[b"abc", b"defghi"], limits, None).await;
        assert_eq!(done.text, "abcdefghi");
        assert_eq!(done.omitted, 0);
    }

    #[tokio::test]
    async fn large_output_keeps_head_and_tail_and_says_what_is_left_out() {
        let limits = Limits { head: 4, tail: 6 };
        let chunks: Vec<Vec<u8>> = (0..100).map(|i| format!("{i:03}").into_bytes()).collect();
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let done = captured(&chunks, limits, None).await;
        assert_eq!(done.size, 300);
        assert_eq!(done.omitted, 290);
        assert!(
            done.text.starts_with("0000\n… 290 bytes omitted"),
            "{}",
            done.text
        );
        assert!(done.text.ends_with("098099"), "{}", done.text);
        assert_eq!(done.tail(), "098099");
    }

    #[tokio::test]
    async fn finds_text_across_chunks() {
        let limits = Limits { head: 1, tail: 1 };
        assert!(
            captured(&[b"xxne", b"e", b"dlexx"], limits, Some("needle"))
                .await
                .found
        );
        assert!(
            captured(
                &[b"n", b"e", b"e", b"d", b"l", b"e"],
                limits,
                Some("needle")
            )
            .await
            .found
        );
        assert!(
            !captured(&[b"needl", b"xe"], limits, Some("needle"))
                .await
                .found
        );
    }

    #[tokio::test]
    async fn masks_what_it_writes_and_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let masker = Masker::new(["hunter2hunter2"]).unwrap();
        let mut sink = Sink::create(dir.path().join("out"), &masker, OUTPUT)
            .await
            .unwrap();
        sink.push(b"pass=hunter2").await.unwrap();
        sink.push(b"hunter2 end").await.unwrap();
        let done = sink.finish().await.unwrap();
        assert_eq!(done.text, "pass=*** end");
        assert_eq!(std::fs::read_to_string(&done.path).unwrap(), "pass=*** end");
    }
}
