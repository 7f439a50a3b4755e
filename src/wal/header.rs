//! The metadata at the head of each archived object: a zstd skippable frame (which `zstd -d`
//! and every other zstd decoder pass over) holding one JSON object.
//!
//! ```text
//! 5D 2A 4D 18   the skippable frame's magic number, little-endian 0x184D2A5D
//! nn nn nn nn   the JSON's length in bytes, little-endian
//! {"format":"drillbook-wal","version":1,"name":"000000010000000000000001","size":16777216,
//!  "sha256":"…","compression":"zstd","level":3,"pushed_at":"2026-…Z","created_by":"drillbook 0.1.0"}
//! ```
//!
//! The size and the SHA-256 are those of the file PostgreSQL handed over, before compression;
//! the compressed size is the object's size.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The skippable frame's magic number (zstd reserves 0x184D2A50 to 0x184D2A5F).
const MAGIC: u32 = 0x184D_2A5D;
/// What `format` says.
const FORMAT: &str = "drillbook-wal";
const VERSION: u32 = 1;
/// The largest header accepted, frame included: far more than the JSON ever needs, small
/// enough that a damaged length cannot make a reader allocate much.
pub(super) const MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Always `drillbook-wal`.
    pub format: String,
    pub version: u32,
    /// The file's name, as PostgreSQL gave it (`%f`).
    pub name: String,
    /// Bytes before compression.
    pub size: u64,
    /// SHA-256 (hex) of the bytes before compression.
    pub sha256: String,
    /// `zstd`.
    pub compression: String,
    pub level: i32,
    pub pushed_at: jiff::Timestamp,
    pub created_by: String,
}

impl Metadata {
    pub(super) fn new(name: &str, size: u64, sha256: String, level: i32) -> Metadata {
        Metadata {
            format: FORMAT.to_owned(),
            version: VERSION,
            name: name.to_owned(),
            size,
            sha256,
            compression: "zstd".to_owned(),
            level,
            pushed_at: jiff::Timestamp::now(),
            created_by: format!("drillbook {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// The frame, ready to go in front of the compressed file.
    pub(super) fn encode(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut frame = Vec::with_capacity(8 + json.len());
        frame.extend_from_slice(&MAGIC.to_le_bytes());
        frame.extend_from_slice(&(json.len() as u32).to_le_bytes());
        frame.extend_from_slice(&json);
        frame
    }

    /// Reads the frame from the start of an object, leaving `reader` at the compressed file.
    /// The error says what is wrong, for a "damaged" message.
    pub(super) async fn read<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Metadata, String> {
        let mut head = [0u8; 8];
        reader
            .read_exact(&mut head)
            .await
            .map_err(|error| format!("cannot read its metadata: {error}"))?;
        let [m0, m1, m2, m3, l0, l1, l2, l3] = head;
        if u32::from_le_bytes([m0, m1, m2, m3]) != MAGIC {
            return Err("it does not start with drillbook's metadata frame".to_owned());
        }
        let length = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        if length > MAX - 8 {
            return Err(format!(
                "its metadata claims {length} bytes, more than {MAX}"
            ));
        }
        let mut json = vec![0; length];
        reader
            .read_exact(&mut json)
            .await
            .map_err(|error| format!("cannot read its metadata: {error}"))?;
        let metadata: Metadata = serde_json::from_slice(&json)
            .map_err(|error| format!("its metadata is not valid: {error}"))?;
        if metadata.format != FORMAT || metadata.version != VERSION {
            return Err(format!(
                "its metadata is {} version {}, expected {FORMAT} version {VERSION}",
                metadata.format, metadata.version
            ));
        }
        if metadata.compression != "zstd" {
            return Err(format!(
                "it is compressed with `{}`, expected zstd",
                metadata.compression
            ));
        }
        Ok(metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_frame_reads_back_and_leaves_the_reader_after_it() {
        let metadata = Metadata::new("00000002.history", 42, "ab".repeat(32), 3);
        let mut bytes = metadata.encode();
        bytes.extend_from_slice(b"rest");
        let mut reader = &bytes[..];
        assert_eq!(Metadata::read(&mut reader).await.unwrap(), metadata);
        assert_eq!(reader, b"rest");
        // zstd itself skips it: an empty file's frame after it decodes to nothing.
        let mut object = metadata.encode();
        object.extend_from_slice(&zstd::encode_all(&b"x"[..], 3).unwrap());
        assert_eq!(zstd::decode_all(&object[..]).unwrap(), b"x");
    }

    #[tokio::test]
    async fn damage_is_described() {
        let metadata = Metadata::new("00000002.history", 42, "ab".repeat(32), 3);
        let bytes = metadata.encode();
        let mut flipped = bytes.clone();
        flipped[0] ^= 1;
        let error = Metadata::read(&mut &flipped[..]).await.unwrap_err();
        assert!(error.contains("metadata frame"), "{error}");
        let error = Metadata::read(&mut &bytes[..20]).await.unwrap_err();
        assert!(error.contains("cannot read"), "{error}");
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = Metadata::read(&mut &huge[..]).await.unwrap_err();
        assert!(error.contains("more than"), "{error}");
    }
}
