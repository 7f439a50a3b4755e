//! Compression, once for every kind of backup: zstd as a streaming [`AsyncRead`] adapter in
//! both directions, with bounded memory (one input and one output buffer of [`BUFFER`] bytes,
//! plus zstd's own window, about 1 MiB at the levels used here) whatever the size of the data.
//!
//! The WAL archive uses it now; base backups and logical dumps are meant to use the same
//! adapters, so a backup of any kind is restored by hand with the same `zstd -d`.
//!
//! Compression runs inside `poll_read`, in steps of at most one buffer: a caller that wants it
//! on another core than its reader runs the reading side in a task of its own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};
use zstd::stream::raw::{Decoder, Encoder, InBuffer, Operation, OutBuffer};

/// The size of each of the two buffers an adapter holds.
pub const BUFFER: usize = 128 << 10;

/// zstd's default level: on WAL and dumps about 3-4x smaller at several hundred MB/s a core.
pub const DEFAULT_LEVEL: i32 = 3;

/// How stored bytes are compressed, by its name in manifests and metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Stored as they are.
    None,
    /// A zstd stream (RFC 8878), level given.
    Zstd { level: i32 },
}

impl Compression {
    /// The name written in metadata: `none` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd { .. } => "zstd",
        }
    }

    /// The levels zstd accepts (negative ones are its fast modes).
    pub fn zstd(level: i32) -> Result<Compression, String> {
        let range = zstd::compression_level_range();
        if range.contains(&level) {
            Ok(Compression::Zstd { level })
        } else {
            Err(format!(
                "zstd compression level {level} is out of range: expected {} to {} (3 is the default)",
                range.start(),
                range.end()
            ))
        }
    }
}

/// Where an adapter is in its stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading input and passing it through zstd.
    Running,
    /// The input ended: draining what zstd still holds.
    Finishing,
    Done,
}

/// The buffers both adapters share: input read but not yet consumed, output produced but not
/// yet handed to the caller.
struct Buffers {
    input: Vec<u8>,
    input_start: usize,
    input_end: usize,
    output: Vec<u8>,
    output_start: usize,
    output_end: usize,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            input: vec![0; BUFFER],
            input_start: 0,
            input_end: 0,
            output: vec![0; BUFFER],
            output_start: 0,
            output_end: 0,
        }
    }

    /// Copies pending output to `buf`; whether there was any.
    fn hand_out(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.output_start == self.output_end {
            return false;
        }
        let n = (self.output_end - self.output_start).min(buf.remaining());
        buf.put_slice(&self.output[self.output_start..self.output_start + n]);
        self.output_start += n;
        true
    }

    /// Reads more input from `reader`; `Ready(Ok(false))` at its end.
    fn fill<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<bool>> {
        let mut read = ReadBuf::new(&mut self.input);
        ready!(Pin::new(reader).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.input_start = 0;
        self.input_end = n;
        Poll::Ready(Ok(n > 0))
    }

    /// One step of `operation` over the pending input into the (empty) output buffer;
    /// returns zstd's hint (0: a frame just ended) if the step did anything, and whether the
    /// output buffer filled up.
    fn step<O: Operation>(&mut self, operation: &mut O) -> io::Result<(Option<usize>, bool)> {
        let mut input = InBuffer::around(&self.input[self.input_start..self.input_end]);
        let mut output = OutBuffer::around(&mut self.output[..]);
        let hint = operation.run(&mut input, &mut output)?;
        let progressed = input.pos() > 0 || output.pos() > 0;
        self.input_start += input.pos();
        self.output_start = 0;
        self.output_end = output.pos();
        Ok((
            progressed.then_some(hint),
            self.output_end == self.output.len(),
        ))
    }

    fn input_pending(&self) -> bool {
        self.input_start < self.input_end
    }
}

/// Compresses what `reader` yields into one zstd frame.
pub struct ZstdEncoder<R> {
    reader: R,
    encoder: Encoder<'static>,
    buffers: Buffers,
    phase: Phase,
}

impl<R: AsyncRead + Unpin> ZstdEncoder<R> {
    pub fn new(reader: R, level: i32) -> io::Result<ZstdEncoder<R>> {
        Ok(ZstdEncoder {
            reader,
            encoder: Encoder::new(level)?,
            buffers: Buffers::new(),
            phase: Phase::Running,
        })
    }

    /// Like [`ZstdEncoder::new`] for input of exactly `size` bytes: the frame records the
    /// size (`zstd -l` shows it), and input of any other size fails the stream.
    pub fn with_size(reader: R, level: i32, size: u64) -> io::Result<ZstdEncoder<R>> {
        let mut encoder = ZstdEncoder::new(reader, level)?;
        encoder.encoder.set_pledged_src_size(Some(size))?;
        Ok(encoder)
    }

    /// The reader, to look at while it is being read through.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    /// The reader, back (what it read has been compressed once the stream ended).
    pub fn into_inner(self) -> R {
        self.reader
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ZstdEncoder<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.buffers.hand_out(buf) {
                return Poll::Ready(Ok(()));
            }
            match this.phase {
                Phase::Done => return Poll::Ready(Ok(())),
                Phase::Finishing => {
                    let mut output = OutBuffer::around(&mut this.buffers.output[..]);
                    let remaining = this.encoder.finish(&mut output, true)?;
                    this.buffers.output_start = 0;
                    this.buffers.output_end = output.pos();
                    if remaining == 0 {
                        this.phase = Phase::Done;
                    }
                }
                Phase::Running => {
                    if !this.buffers.input_pending()
                        && !ready!(this.buffers.fill(&mut this.reader, cx))?
                    {
                        this.phase = Phase::Finishing;
                        continue;
                    }
                    this.buffers.step(&mut this.encoder)?;
                }
            }
        }
    }
}

/// Decompresses a zstd stream (one frame or several, skippable frames ignored) from `reader`.
/// A stream that ends inside a frame, or is not zstd at all, fails with `InvalidData`.
pub struct ZstdDecoder<R> {
    reader: R,
    decoder: Decoder<'static>,
    buffers: Buffers,
    phase: Phase,
    /// zstd's last hint: 0 when the last frame is complete.
    hint: usize,
    /// The output buffer filled up: zstd may hold more output even with no more input.
    more_output: bool,
    /// Whether any input arrived: an empty stream is not a zstd stream.
    started: bool,
}

impl<R: AsyncRead + Unpin> ZstdDecoder<R> {
    pub fn new(reader: R) -> io::Result<ZstdDecoder<R>> {
        Ok(ZstdDecoder {
            reader,
            decoder: Decoder::new()?,
            buffers: Buffers::new(),
            phase: Phase::Running,
            hint: 0,
            more_output: false,
            started: false,
        })
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ZstdDecoder<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.buffers.hand_out(buf) {
                return Poll::Ready(Ok(()));
            }
            match this.phase {
                Phase::Done => return Poll::Ready(Ok(())),
                Phase::Finishing => {
                    if !this.started || this.hint != 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the zstd stream is truncated (it ends inside a frame)",
                        )));
                    }
                    this.phase = Phase::Done;
                }
                Phase::Running => {
                    if !this.buffers.input_pending() && !this.more_output {
                        if !ready!(this.buffers.fill(&mut this.reader, cx))? {
                            this.phase = Phase::Finishing;
                            continue;
                        }
                        this.started = true;
                    }
                    let (hint, full) = this.buffers.step(&mut this.decoder).map_err(|error| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("not a valid zstd stream: {error}"),
                        )
                    })?;
                    // A step that did nothing after a frame's end hints at the next frame's
                    // header: the last frame is still complete.
                    if let Some(hint) = hint {
                        this.hint = hint;
                    }
                    this.more_output = full;
                }
            }
        }
    }
}

/// Decompresses a zstd stream written into it, in order, into `inner`: the same checks as
/// [`ZstdDecoder`] for a writer (a download's in-order reader feeds it as bytes arrive).
/// [`UnzstdWriter::finish`] says whether the stream ended where a frame does.
pub struct UnzstdWriter<W> {
    inner: W,
    decoder: Decoder<'static>,
    output: Vec<u8>,
    /// zstd's last hint: 0 when the last frame is complete.
    hint: usize,
    started: bool,
    /// Decompressed bytes written to `inner`.
    written: u64,
}

impl<W: io::Write> UnzstdWriter<W> {
    pub fn new(inner: W) -> io::Result<UnzstdWriter<W>> {
        Ok(UnzstdWriter {
            inner,
            decoder: Decoder::new()?,
            output: vec![0; BUFFER],
            hint: 0,
            started: false,
            written: 0,
        })
    }

    /// The end of the stream: fails unless it ended where a frame ends. Returns the
    /// decompressed size.
    pub fn finish(mut self) -> io::Result<u64> {
        if !self.started || self.hint != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the zstd stream is truncated (it ends inside a frame)",
            ));
        }
        self.inner.flush()?;
        Ok(self.written)
    }
}

impl<W: io::Write> io::Write for UnzstdWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.started |= !buf.is_empty();
        let mut input = InBuffer::around(buf);
        loop {
            let before = input.pos();
            let mut output = OutBuffer::around(&mut self.output[..]);
            let hint = self.decoder.run(&mut input, &mut output).map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not a valid zstd stream: {error}"),
                )
            })?;
            let produced = output.pos();
            if input.pos() > before || produced > 0 {
                self.hint = hint;
            }
            self.inner.write_all(&self.output[..produced])?;
            self.written += produced as u64;
            // Done when the input is consumed and zstd had room to spare (it holds no more).
            if input.pos() == buf.len() && produced < self.output.len() {
                return Ok(buf.len());
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Text-like bytes that compress, but not to nothing.
    fn sample(size: usize) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(7);
        (0..size)
            .map(|i| {
                if i % 7 == 0 {
                    rng.u8(..)
                } else {
                    b"abcdefgh"[i % 8]
                }
            })
            .collect()
    }

    async fn compress(data: &[u8], level: i32) -> Vec<u8> {
        let mut out = Vec::new();
        ZstdEncoder::new(data, level)
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    }

    async fn decompress(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ZstdDecoder::new(data)?.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn round_trips_empty_small_and_multi_buffer_data() {
        for size in [0, 1, 1000, BUFFER, 3 * BUFFER + 17] {
            let data = sample(size);
            let compressed = compress(&data, DEFAULT_LEVEL).await;
            assert_eq!(zstd::decode_all(&compressed[..]).unwrap(), data, "{size}");
            assert_eq!(decompress(&compressed).await.unwrap(), data, "{size}");
            if size > 1000 {
                assert!(compressed.len() < size / 2, "{size}: {}", compressed.len());
            }
        }
    }

    #[tokio::test]
    async fn highly_compressible_data_fills_the_output_buffer_many_times() {
        let data = vec![0u8; 40 * BUFFER];
        let compressed = compress(&data, 1).await;
        assert!(compressed.len() < BUFFER);
        assert_eq!(decompress(&compressed).await.unwrap(), data);
    }

    #[tokio::test]
    async fn a_pledged_size_is_enforced() {
        let data = sample(5000);
        let mut out = Vec::new();
        ZstdEncoder::with_size(&data[..], 3, 5000)
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(decompress(&out).await.unwrap(), data);
        let mut out = Vec::new();
        let error = ZstdEncoder::with_size(&data[..], 3, 4000)
            .unwrap()
            .read_to_end(&mut out)
            .await;
        assert!(error.is_err());
    }

    #[tokio::test]
    async fn truncated_corrupt_and_empty_streams_fail() {
        let data = sample(100_000);
        let compressed = compress(&data, 3).await;
        let truncated = &compressed[..compressed.len() - 10];
        let error = decompress(truncated).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert!(decompress(b"not zstd at all").await.is_err());
        assert!(decompress(b"").await.is_err());
    }

    /// Writes `compressed` into an [`UnzstdWriter`] in pieces of `piece` bytes.
    fn unzstd(compressed: &[u8], piece: usize) -> io::Result<Vec<u8>> {
        use std::io::Write;
        let mut out = Vec::new();
        let mut writer = UnzstdWriter::new(&mut out)?;
        for chunk in compressed.chunks(piece) {
            writer.write_all(chunk)?;
        }
        let size = writer.finish()?;
        assert_eq!(size, out.len() as u64);
        Ok(out)
    }

    #[tokio::test]
    async fn the_writer_decompresses_whatever_the_pieces_and_refuses_what_the_reader_refuses() {
        for size in [1, 1000, 3 * BUFFER + 17] {
            let data = sample(size);
            let compressed = compress(&data, DEFAULT_LEVEL).await;
            for piece in [1, 7, 4096, BUFFER + 3] {
                assert_eq!(unzstd(&compressed, piece).unwrap(), data, "{size}/{piece}");
            }
        }
        // Output far larger than the input and than the buffer; two frames one after the other.
        let zeros = compress(&vec![0u8; 40 * BUFFER], 1).await;
        let mut two = zeros.clone();
        two.extend(compress(b"tail", 3).await);
        let mut expected = vec![0u8; 40 * BUFFER];
        expected.extend(b"tail");
        assert_eq!(unzstd(&two, 1 << 20).unwrap(), expected);

        let compressed = compress(&sample(100_000), 3).await;
        let error = unzstd(&compressed[..compressed.len() - 10], 4096).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert!(unzstd(b"not zstd at all", 4).is_err());
        assert!(unzstd(b"", 4).is_err());
    }

    #[test]
    fn levels_are_checked() {
        assert_eq!(Compression::zstd(3), Ok(Compression::Zstd { level: 3 }));
        let error = Compression::zstd(99).unwrap_err();
        assert!(error.contains("out of range"), "{error}");
        assert_eq!(Compression::None.name(), "none");
    }
}
