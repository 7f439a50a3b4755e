//! Reading a stored report as a stream: the generation's entries and its segments merged in
//! key order (a later segment's line wins), one line of each file held at a time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, btree_map};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::Entry;
use super::stored::{Line, ReadError, SegmentHead};
use crate::connect::store::Store;

/// Bytes buffered per file read.
const BUFFER: usize = 64 << 10;

/// A report's entries in bytewise key order.
pub struct Entries {
    inner: Inner,
    peeked: Option<(String, Entry)>,
}

enum Inner {
    /// The first format, read whole.
    Whole(btree_map::IntoIter<String, Entry>),
    Merged(Merge),
}

struct Merge {
    files: Vec<File>,
    /// The next key of each file not yet at its end, by file index.
    heap: BinaryHeap<Reverse<(String, usize)>>,
    /// Entries from files before this one were written for another source than the report's
    /// now: their source times are dropped.
    times_from: usize,
}

/// One file of a report, read a line at a time.
pub(super) struct File {
    key: String,
    reader: BufReader<Box<dyn AsyncRead + Send + Unpin>>,
    line: Vec<u8>,
    number: u64,
    pub(super) bytes: u64,
    /// Its next line, parsed: the key and the entry (`None` for a removal).
    next: Option<(String, Option<Entry>)>,
    /// The last key read: lines must ascend.
    last: Option<String>,
}

impl File {
    pub(super) async fn open(store: &Store, key: &str) -> Result<File, ReadError> {
        let reader = store.get(key, None).await?;
        Ok(File {
            key: key.to_owned(),
            reader: BufReader::with_capacity(BUFFER, reader),
            line: Vec::new(),
            number: 0,
            bytes: 0,
            next: None,
            last: None,
        })
    }

    /// Reads the next non-empty line into `line` (its newline taken off); `false` at the end.
    async fn raw(&mut self) -> Result<bool, ReadError> {
        loop {
            self.line.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.line)
                .await
                .map_err(|e| ReadError::Format(format!("{}: {e}", self.key)))?;
            if read == 0 {
                return Ok(false);
            }
            self.bytes += read as u64;
            self.number += 1;
            if self.line.last() == Some(&b'\n') {
                self.line.pop();
            }
            if !self.line.is_empty() {
                return Ok(true);
            }
        }
    }

    /// A segment's first line.
    pub(super) async fn segment_head(&mut self) -> Result<SegmentHead, ReadError> {
        if !self.raw().await? {
            return Err(ReadError::Format(format!(
                "{}: empty, not a segment",
                self.key
            )));
        }
        serde_json::from_slice(&self.line).map_err(|e| {
            ReadError::Format(format!(
                "{} line {}: not a segment's first line: {e}",
                self.key, self.number
            ))
        })
    }

    /// Reads the next entry or removal into `next`; checks the file is sorted.
    async fn advance(&mut self) -> Result<(), ReadError> {
        self.next = None;
        if !self.raw().await? {
            return Ok(());
        }
        let (key, number) = (&self.key, self.number);
        let line: Line = serde_json::from_slice(&self.line).map_err(|e| {
            ReadError::Format(format!(
                "{key} line {number}: not a checksum report line ({{\"key\":…,\"size\":…,\"sha256\":…}} or {{\"key\":…,\"removed\":true}}): {e}"
            ))
        })?;
        let (entry_key, entry) = line.into_owned();
        if self
            .last
            .as_ref()
            .is_some_and(|last| last.as_str() >= entry_key.as_str())
        {
            return Err(ReadError::Format(format!(
                "{key} line {number}: {entry_key:?} is out of order (lines are sorted by key)"
            )));
        }
        self.last = Some(entry_key.clone());
        self.next = Some((entry_key, entry));
        Ok(())
    }
}

impl Entries {
    pub(super) fn whole(objects: std::collections::BTreeMap<String, Entry>) -> Entries {
        Entries {
            inner: Inner::Whole(objects.into_iter()),
            peeked: None,
        }
    }

    /// `files`: the generation's entries, then its segments in order (their heads read).
    /// `times_from`: the first file written for the report's current source.
    pub(super) async fn merged(
        mut files: Vec<File>,
        times_from: usize,
    ) -> Result<Entries, ReadError> {
        let mut heap = BinaryHeap::new();
        for (index, file) in files.iter_mut().enumerate() {
            file.advance().await?;
            if let Some((key, _)) = &file.next {
                heap.push(Reverse((key.clone(), index)));
            }
        }
        Ok(Entries {
            inner: Inner::Merged(Merge {
                files,
                heap,
                times_from,
            }),
            peeked: None,
        })
    }

    /// The next entry, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<(String, Entry)>, ReadError> {
        if let Some(next) = self.peeked.take() {
            return Ok(Some(next));
        }
        match &mut self.inner {
            Inner::Whole(entries) => Ok(entries.next()),
            Inner::Merged(merge) => merge.next().await,
        }
    }

    /// The next entry, left to be taken by [`Entries::next`].
    pub async fn peek(&mut self) -> Result<Option<&(String, Entry)>, ReadError> {
        if self.peeked.is_none() {
            self.peeked = self.next().await?;
        }
        Ok(self.peeked.as_ref())
    }

    /// The entry for `key`, skipping those before it (keys asked for must ascend).
    pub async fn find(&mut self, key: &str) -> Result<Option<Entry>, ReadError> {
        while let Some((next, _)) = self.peek().await? {
            match next.as_str().cmp(key) {
                std::cmp::Ordering::Less => {
                    self.next().await?;
                }
                std::cmp::Ordering::Equal => return Ok(self.next().await?.map(|(_, entry)| entry)),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }
}

impl Merge {
    async fn next(&mut self) -> Result<Option<(String, Entry)>, ReadError> {
        loop {
            let Some(Reverse((key, first))) = self.heap.pop() else {
                return Ok(None);
            };
            // Every file with this key: the last one's line wins.
            let mut winner = (first, self.take(first).await?);
            while let Some(Reverse((next, index))) = self.heap.peek()
                && *next == key
            {
                let index = *index;
                self.heap.pop();
                let entry = self.take(index).await?;
                if index > winner.0 {
                    winner = (index, entry);
                }
            }
            if let (index, Some(mut entry)) = winner {
                if index < self.times_from {
                    entry.source_modified = None;
                }
                return Ok(Some((key, entry)));
            }
        }
    }

    /// File `index`'s current line, moving it on to its next.
    async fn take(&mut self, index: usize) -> Result<Option<Entry>, ReadError> {
        let file = &mut self.files[index];
        let entry = file.next.take().and_then(|(_, entry)| entry);
        file.advance().await?;
        if let Some((key, _)) = &file.next {
            self.heap.push(Reverse((key.clone(), index)));
        }
        Ok(entry)
    }
}
