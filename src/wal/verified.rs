//! A reader that passes bytes through and fails at their end unless they hash to what was
//! expected: a segment that changed while it was being pushed, a base backup that is not the
//! one its manifest describes. The failure comes before the reader's end, so whatever consumes
//! it (an upload, `tar -x`) sees an error instead of a clean end.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

pub struct Verified<R> {
    reader: R,
    hasher: Sha256,
    size: u64,
    expected: String,
    /// What the bytes are, for the error: "… are not the bytes expected".
    what: String,
    /// The end was seen (and checked).
    ended: bool,
}

impl<R> Verified<R> {
    /// `expected` is a lowercase hex SHA-256.
    pub fn new(reader: R, expected: &str, what: impl Into<String>) -> Verified<R> {
        Verified {
            reader,
            hasher: Sha256::new(),
            size: 0,
            expected: expected.to_owned(),
            what: what.into(),
            ended: false,
        }
    }

    /// Bytes passed so far.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Verified<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.reader).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            this.hasher.update(read);
            this.size += read.len() as u64;
            return Poll::Ready(Ok(()));
        }
        if std::mem::replace(&mut this.ended, true) {
            return Poll::Ready(Ok(()));
        }
        let actual = crate::format::hex(&std::mem::take(&mut this.hasher).finalize());
        if actual != this.expected {
            return Poll::Ready(Err(io::Error::other(format!(
                "{}: {} bytes with SHA-256 {actual}, not {}",
                this.what, this.size, this.expected
            ))));
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn passes_the_expected_bytes_and_fails_at_the_end_of_others() {
        let sha = crate::format::hex(&Sha256::digest(b"hello"));
        let mut good = Verified::new(&b"hello"[..], &sha, "greeting");
        let mut out = Vec::new();
        good.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(good.size(), 5);
        let mut bad = Verified::new(&b"hellO"[..], &sha, "greeting changed");
        let error = bad.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("greeting changed: 5 bytes with SHA-256")
        );
    }
}
