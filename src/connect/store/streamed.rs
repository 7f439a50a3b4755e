//! A request body fed from a reader while the request is being sent: a single-request upload
//! of a known size holds a few chunks in memory, not the object. The reader must produce
//! exactly the promised size; otherwise the body fails before its last byte, so the server
//! never stores a short or cut object.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

/// Bytes read from the source per chunk of the body.
const CHUNK: usize = 256 << 10;
/// Chunks read ahead of the request.
const AHEAD: usize = 4;

/// The most memory a streamed body holds at once.
pub(crate) const MEMORY: u64 = ((AHEAD + 2) * CHUNK) as u64;

/// The body's end of the channel.
pub(crate) struct ChannelBody {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    size: u64,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size)
    }
}

/// Why [`Feeder::run`] stopped early.
pub(crate) enum Stopped {
    /// The source failed, or did not have the promised size: the body was failed with the same
    /// error, so the request fails too.
    Source(io::Error),
    /// The request let go of the body (it failed, or was cancelled): its error tells why.
    Request,
}

/// The reader's end: feeds `size` bytes of a reader into the body.
pub(crate) struct Feeder {
    chunks: mpsc::Sender<io::Result<Bytes>>,
    size: u64,
}

/// A body of exactly `size` bytes and the feeder that fills it.
pub(crate) fn channel(size: u64) -> (ChannelBody, Feeder) {
    let (sender, receiver) = mpsc::channel(AHEAD);
    (
        ChannelBody {
            chunks: receiver,
            size,
        },
        Feeder {
            chunks: sender,
            size,
        },
    )
}

impl Feeder {
    /// Reads the source into the body, calling `progress` with the bytes handed over so far.
    /// The last chunk is held back until the source is seen to end there.
    pub(crate) async fn run<R: AsyncRead + Unpin>(
        self,
        reader: &mut R,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), Stopped> {
        let mut sent = 0u64;
        loop {
            let want = usize::try_from((self.size - sent).min(CHUNK as u64)).unwrap_or(CHUNK);
            let chunk = super::read_part(reader, want, None)
                .await
                .map_err(|error| self.fail(error))?;
            if chunk.len() < want {
                let read = sent + chunk.len() as u64;
                return Err(self.fail(io::Error::other(format!(
                    "the source ended after {read} bytes, not the {} it was listed with (it changed while it was copied)",
                    self.size
                ))));
            }
            sent += chunk.len() as u64;
            if sent == self.size {
                let more = super::read_part(reader, 1, None)
                    .await
                    .map_err(|error| self.fail(error))?;
                if !more.is_empty() {
                    return Err(self.fail(io::Error::other(format!(
                        "the source is larger than the {} bytes it was listed with (it changed while it was copied)",
                        self.size
                    ))));
                }
            }
            if self.chunks.send(Ok(Bytes::from(chunk))).await.is_err() {
                return Err(Stopped::Request);
            }
            progress(sent);
            if sent == self.size {
                return Ok(());
            }
        }
    }

    /// Fails the body (so the request stops) and returns the source's error.
    fn fail(&self, error: io::Error) -> Stopped {
        let copy = io::Error::new(error.kind(), error.to_string());
        // The request may be gone already (its own error then says why), or the channel full:
        // the feeder is then dropped, and a body ending short of its length fails the request.
        let _ = self.chunks.try_send(Err(copy));
        Stopped::Source(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(mut body: ChannelBody) -> Result<Vec<u8>, io::Error> {
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            out.extend_from_slice(&frame?.into_data().expect("data"));
        }
        Ok(out)
    }

    #[tokio::test]
    async fn feeds_exactly_the_promised_bytes() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        let (body, feeder) = channel(data.len() as u64);
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        let mut reader = &data[..];
        let (fed, received) = tokio::join!(feeder.run(&mut reader, &|_| {}), collect(body));
        assert!(fed.is_ok());
        assert_eq!(received.expect("body"), data);
    }

    #[tokio::test]
    async fn a_short_or_long_source_fails_the_body_before_its_end() {
        for (size, actual) in [(100u64, 60usize), (100, 101), (CHUNK as u64, CHUNK + 1)] {
            let data = vec![7u8; actual];
            let (body, feeder) = channel(size);
            let mut reader = &data[..];
            let (fed, received) = tokio::join!(feeder.run(&mut reader, &|_| {}), collect(body));
            match fed {
                Err(Stopped::Source(error)) => {
                    assert!(error.to_string().contains("listed with"), "{error}")
                }
                _ => panic!("size {size}, actual {actual}: not a source error"),
            }
            let error = received.expect_err("the body fails");
            assert!(error.to_string().contains("listed with"), "{error}");
        }
    }
}
