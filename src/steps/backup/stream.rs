//! A program's output streamed into a store: hashed on the way, and failing at its end when
//! the program failed.

use sha2::{Digest, Sha256};

use crate::connect::child;

/// A program's output on its way to the store (pg_dump's, tar's, pg_basebackup's compressed):
/// hashed and counted as it passes, and ending in an error — not a clean end — when the
/// program fails, so a failed dump is never stored.
pub(super) struct DumpStream<R> {
    program: &'static str,
    stdout: R,
    hasher: Sha256,
    size: u64,
    exit: std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<std::process::ExitStatus>> + Send>,
    >,
    failed: Option<String>,
    succeeded: bool,
}

impl<R> DumpStream<R> {
    /// `stdout` is the child's output, or a reader over it.
    pub(super) fn new(program: &'static str, stdout: R, mut child: child::Child) -> DumpStream<R> {
        DumpStream {
            program,
            stdout,
            hasher: Sha256::new(),
            size: 0,
            // The child moves into the future: its group is killed when the stream goes.
            exit: Box::pin(async move { child.wait().await }),
            failed: None,
            succeeded: false,
        }
    }

    pub(super) fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The failure of an upload that read this stream: the program's own failure when it
    /// failed (the clearer cause), with the last lines it wrote on its standard error. A
    /// store's refusal (access denied) is permanent: another attempt would be refused too.
    pub(super) fn upload_failed(
        &self,
        error: crate::connect::store::StoreError,
        key: &str,
        stderr: &str,
    ) -> crate::steps::StepFailure {
        let mut failure = match self.failure() {
            Some(failed) => {
                crate::steps::StepFailure::new(format!("{failed}; nothing was stored under {key}"))
            }
            None => crate::steps::StepFailure {
                permanent: error.is_permanent(),
                ..crate::steps::StepFailure::new(format!("{error}; nothing was stored under {key}"))
            },
        };
        failure.evidence = super::last_lines(stderr);
        failure
    }

    /// What was read through.
    pub(super) fn reader(&self) -> &R {
        &self.stdout
    }

    /// The size and SHA-256 of what passed.
    pub(super) fn finish(self) -> (u64, String) {
        (self.size, crate::format::hex(&self.hasher.finalize()))
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for DumpStream<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.stdout).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            this.hasher.update(read);
            this.size += read.len() as u64;
            return Poll::Ready(Ok(()));
        }
        // End of output: it only counts as the end of the dump if pg_dump succeeded.
        // Readers may ask again after the end (the S3 store does, after a short last part):
        // answer from what is known, since the finished `exit` future must not be polled again.
        if let Some(why) = &this.failed {
            return Poll::Ready(Err(std::io::Error::other(why.clone())));
        }
        if this.succeeded {
            return Poll::Ready(Ok(()));
        }
        match this.exit.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(status)) if status.success() => {
                this.succeeded = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(result) => {
                let why = match result {
                    Ok(status) => format!("{} failed ({status})", this.program),
                    Err(e) => format!("waiting for {} failed: {e}", this.program),
                };
                this.failed = Some(why.clone());
                Poll::Ready(Err(std::io::Error::other(why)))
            }
        }
    }
}
