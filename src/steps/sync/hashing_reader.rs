//! The reader a read-through copy streams its source through: it hashes the bytes, checks
//! them against what the source's checksum report vouches for, and stops on cancellation.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// Hashes what passes through it; fails once `cancelled` completes, so that the upload
/// reading it stops the way it does on any failed read, and fails at the end when the bytes
/// are not those `expected` (an upload sees that before its last byte is sent).
pub(super) struct Hashing<'a, R> {
    pub(super) inner: R,
    pub(super) hasher: Sha256,
    pub(super) expected: Option<&'a str>,
    /// Set when the bytes turned out not to be the expected ones.
    pub(super) mismatched: bool,
    pub(super) cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.cancelled.as_mut().poll(cx).is_ready() {
            // Not `Interrupted`, which read loops retry.
            return Poll::Ready(Err(io::Error::other("the sync was cancelled")));
        }
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let read = &buf.filled()[before..];
            this.hasher.update(read);
            if read.is_empty()
                && room
                && let Some(expected) = this.expected
            {
                let actual = crate::format::hex(&this.hasher.clone().finalize());
                if actual != expected {
                    this.mismatched = true;
                    return Poll::Ready(Err(io::Error::other(format!(
                        "its bytes (SHA-256 {actual}) are not those the source's checksum report records ({expected}): damaged in the source, or changed there since the report; not copied"
                    ))));
                }
            }
        }
        poll
    }
}
