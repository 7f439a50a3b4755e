//! What a base backup says about itself, read from its tar while it streams past: the
//! `backup_label` (start LSN, start segment, timeline, start time) and the `backup_manifest`
//! PostgreSQL writes at the end (the WAL range the backup needs, its own checksum). The
//! bytes pass through unchanged; only those two members are looked at, the manifest's
//! through a bounded tail, so memory stays flat whatever the backup's size.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, ReadBuf};

/// A tar block.
const BLOCK: usize = 512;
/// The most of `backup_label` kept (it is a few hundred bytes).
const LABEL_MAX: usize = 64 << 10;
/// The end of `backup_manifest` kept: its WAL ranges and checksum are its last lines.
const MANIFEST_TAIL: usize = 64 << 10;

/// A WAL range a backup needs to be consistent: from the start LSN to the end LSN, on one
/// timeline (usually one range; more when the timeline changed during the backup).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRange {
    pub timeline: u32,
    pub start_lsn: String,
    pub end_lsn: String,
}

/// What the backup's tar said about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Label {
    /// `START WAL LOCATION`'s LSN.
    pub start_lsn: Option<String>,
    /// `START WAL LOCATION`'s segment: the first WAL file recovery needs.
    pub start_segment: Option<String>,
    pub start_timeline: Option<u32>,
    /// `START TIME`, as the server wrote it.
    pub start_time: Option<String>,
    /// `backup_manifest`'s `WAL-Ranges`.
    pub wal_ranges: Vec<WalRange>,
    /// `backup_manifest`'s `Manifest-Checksum` (SHA-256 of the manifest before that line).
    pub manifest_checksum: Option<String>,
    /// Bytes of the tar seen.
    pub tar_size: u64,
    /// Members seen.
    pub files: u64,
}

impl Label {
    /// The WAL range's end on the last timeline: where recovery first reaches consistency.
    pub fn end_lsn(&self) -> Option<&str> {
        self.wal_ranges.last().map(|r| r.end_lsn.as_str())
    }

    /// Why this is not a complete base backup, if it is not.
    pub fn incomplete(&self) -> Option<&'static str> {
        if self.start_lsn.is_none() || self.start_segment.is_none() {
            Some("its tar has no backup_label")
        } else if self.wal_ranges.is_empty() || self.manifest_checksum.is_none() {
            Some("its tar has no complete backup_manifest")
        } else {
            None
        }
    }

    fn read_backup_label(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("START WAL LOCATION: ") {
                // `0/2000028 (file 000000010000000000000002)`
                let mut words = rest.split_whitespace();
                self.start_lsn = words.next().map(str::to_owned);
                self.start_segment = rest
                    .split_once("(file ")
                    .and_then(|(_, file)| file.strip_suffix(')'))
                    .map(str::to_owned);
            } else if let Some(rest) = line.strip_prefix("START TIMELINE: ") {
                self.start_timeline = rest.trim().parse().ok();
            } else if let Some(rest) = line.strip_prefix("START TIME: ") {
                self.start_time = Some(rest.trim().to_owned());
            }
        }
    }

    fn read_manifest_tail(&mut self, tail: &str) {
        #[derive(Deserialize)]
        struct Range {
            #[serde(rename = "Timeline")]
            timeline: u32,
            #[serde(rename = "Start-LSN")]
            start: String,
            #[serde(rename = "End-LSN")]
            end: String,
        }
        let value_after = |name: &str| {
            let at = tail.rfind(&format!("\"{name}\""))?;
            let rest = &tail[at + name.len() + 2..];
            let rest = rest.trim_start().strip_prefix(':')?;
            serde_json::Deserializer::from_str(rest)
                .into_iter::<serde_json::Value>()
                .next()?
                .ok()
        };
        if let Some(ranges) =
            value_after("WAL-Ranges").and_then(|v| serde_json::from_value::<Vec<Range>>(v).ok())
        {
            self.wal_ranges = ranges
                .into_iter()
                .map(|r| WalRange {
                    timeline: r.timeline,
                    start_lsn: r.start,
                    end_lsn: r.end,
                })
                .collect();
        }
        self.manifest_checksum = value_after("Manifest-Checksum")
            .and_then(|v| v.as_str().map(str::to_owned))
            .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

/// Which member's bytes are being kept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Nothing,
    BackupLabel,
    BackupManifest,
}

/// Passes a tar through, reading its `backup_label` and `backup_manifest` on the way.
pub struct LabelReader<R> {
    inner: R,
    label: Label,
    header: Vec<u8>,
    /// Bytes of the current member's data still to come, then of its padding.
    data_left: u64,
    padding_left: u64,
    keep: Keep,
    kept: Vec<u8>,
    /// Two zero blocks end the archive.
    ended: bool,
}

impl<R> LabelReader<R> {
    pub fn new(inner: R) -> LabelReader<R> {
        LabelReader {
            inner,
            label: Label::default(),
            header: Vec::with_capacity(BLOCK),
            data_left: 0,
            padding_left: 0,
            keep: Keep::Nothing,
            kept: Vec::new(),
            ended: false,
        }
    }

    /// What was read, once the stream has ended.
    pub fn label(&self) -> &Label {
        &self.label
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        self.label.tar_size += bytes.len() as u64;
        while !bytes.is_empty() && !self.ended {
            if self.data_left > 0 {
                let n = bytes.len().min(self.data_left as usize);
                self.keep_bytes(&bytes[..n]);
                self.data_left -= n as u64;
                bytes = &bytes[n..];
                if self.data_left == 0 {
                    self.member_done();
                }
            } else if self.padding_left > 0 {
                let n = bytes.len().min(self.padding_left as usize);
                self.padding_left -= n as u64;
                bytes = &bytes[n..];
            } else {
                let n = bytes.len().min(BLOCK - self.header.len());
                self.header.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if self.header.len() == BLOCK {
                    self.header_done();
                }
            }
        }
    }

    fn keep_bytes(&mut self, bytes: &[u8]) {
        match self.keep {
            Keep::Nothing => {}
            Keep::BackupLabel => {
                let room = LABEL_MAX.saturating_sub(self.kept.len());
                self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Keep::BackupManifest => {
                self.kept.extend_from_slice(bytes);
                if self.kept.len() > 2 * MANIFEST_TAIL {
                    self.kept.drain(..self.kept.len() - MANIFEST_TAIL);
                }
            }
        }
    }

    fn header_done(&mut self) {
        let header = std::mem::take(&mut self.header);
        if header.iter().all(|&b| b == 0) {
            // The first zero block of the end; nothing follows that matters.
            self.ended = true;
            return;
        }
        let size = octal(&header[124..136]);
        let name = until_nul(&header[..100]);
        let name = name.strip_prefix("./").unwrap_or(name);
        let regular = matches!(header[156], b'0' | 0);
        self.keep = match name {
            "backup_label" if regular => Keep::BackupLabel,
            "backup_manifest" if regular => Keep::BackupManifest,
            _ => Keep::Nothing,
        };
        self.label.files += 1;
        self.kept.clear();
        self.data_left = size;
        self.padding_left = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.header = Vec::with_capacity(BLOCK);
        if size == 0 {
            self.member_done();
        }
    }

    fn member_done(&mut self) {
        let kept = String::from_utf8_lossy(&self.kept).into_owned();
        match self.keep {
            Keep::BackupLabel => self.label.read_backup_label(&kept),
            Keep::BackupManifest => self.label.read_manifest_tail(&kept),
            Keep::Nothing => {}
        }
        self.keep = Keep::Nothing;
        self.kept = Vec::new();
    }
}

/// A tar numeric field: octal digits, space or NUL terminated (sizes over 8 GiB use
/// base-256, flagged by the high bit).
fn octal(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .fold(u64::from(field[0] & 0x7f), |n, &b| (n << 8) | u64::from(b));
    }
    field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| (b'0'..=b'7').contains(&b))
        .fold(0, |n, &b| n * 8 + u64::from(b - b'0'))
}

fn until_nul(field: &[u8]) -> &str {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).unwrap_or("")
}

impl<R: AsyncRead + Unpin> AsyncRead for LabelReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        this.observe(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Reads of at most `chunk` bytes each.
    struct Chunked<'a> {
        data: &'a [u8],
        at: usize,
        chunk: usize,
    }

    impl AsyncRead for Chunked<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self
                .chunk
                .min(buf.remaining())
                .min(self.data.len() - self.at);
            buf.put_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut header = vec![0u8; BLOCK];
        header[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{:011o}\0", data.len());
        header[124..136].copy_from_slice(size.as_bytes());
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        let mut out = header;
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    #[tokio::test]
    async fn reads_the_label_and_the_manifest_in_any_chunking() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                     CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\n\
                     START TIME: 2026-12-05 10:00:00 UTC\nSTART TIMELINE: 1\n";
        let mut manifest =
            String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
        for i in 0..3000 {
            manifest.push_str(&format!(
                "{{ \"Path\": \"base/1/{i}\", \"Size\": 8192, \"Last-Modified\": \"x\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"abcd\" }},\n"
            ));
        }
        manifest.push_str("],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n\"Manifest-Checksum\": \"");
        manifest.push_str(&"ab".repeat(32));
        manifest.push_str("\"}\n");
        let mut tar = member("PG_VERSION", b"15\n");
        tar.extend(member("backup_label", label.as_bytes()));
        tar.extend(member("base/1/1259", &vec![7u8; 10_000]));
        tar.extend(member("backup_manifest", manifest.as_bytes()));
        tar.extend(vec![0u8; 2 * BLOCK]);
        for chunk in [1, 7, 511, 512, 513, 4096, 1 << 20] {
            let stream = Chunked {
                data: &tar,
                at: 0,
                chunk,
            };
            let mut reader = LabelReader::new(stream);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, tar, "passed through unchanged");
            let read = reader.label();
            assert_eq!(
                read.start_lsn.as_deref(),
                Some("0/2000028"),
                "chunk {chunk}"
            );
            assert_eq!(
                read.start_segment.as_deref(),
                Some("000000010000000000000002")
            );
            assert_eq!(read.start_timeline, Some(1));
            assert_eq!(read.end_lsn(), Some("0/2000100"));
            assert_eq!(read.manifest_checksum, Some("ab".repeat(32)));
            assert_eq!(read.files, 4);
            assert_eq!(read.incomplete(), None);
        }
    }

    #[tokio::test]
    async fn a_tar_cut_before_its_manifest_is_incomplete() {
        let mut tar = member(
            "backup_label",
            b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
        );
        tar.extend(member("base/1/1259", &[1u8; 600]));
        let mut reader = LabelReader::new(&tar[..tar.len() - 100]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(
            reader.label().incomplete(),
            Some("its tar has no complete backup_manifest")
        );
    }
}
