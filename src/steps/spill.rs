//! Lists too long to hold: written to an unnamed temporary file as JSON Lines while a merge
//! produces them, read back in the same order. `sync` keeps its plan (what to copy, what to
//! delete) this way and `verify` what to hash, so memory does not grow with the bucket.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Items of type `T`, in the order pushed.
pub(crate) struct Spill<T> {
    file: BufWriter<File>,
    len: usize,
    item: PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned> Spill<T> {
    /// In the system's temporary directory, removed when dropped (or the process dies).
    pub(crate) fn new() -> io::Result<Spill<T>> {
        Ok(Spill {
            file: BufWriter::with_capacity(64 << 10, tempfile::tempfile()?),
            len: 0,
            item: PhantomData,
        })
    }

    pub(crate) fn push(&mut self, item: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.file, item)?;
        self.file.write_all(b"\n")?;
        self.len += 1;
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The items, from the first.
    pub(crate) fn read(self) -> io::Result<Items<T>> {
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        Ok(Items {
            lines: BufReader::with_capacity(64 << 10, file),
            line: String::new(),
            item: PhantomData,
        })
    }
}

/// A spill read back.
pub(crate) struct Items<T> {
    lines: BufReader<File>,
    line: String,
    item: PhantomData<T>,
}

impl<T: DeserializeOwned> Iterator for Items<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        self.line.clear();
        match self.lines.read_line(&mut self.line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&self.line).map_err(io::Error::other)),
            Err(error) => Some(Err(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_back_what_was_pushed_in_order() {
        let mut spill = Spill::<(String, u64)>::new().expect("spill");
        for i in 0..10_000u64 {
            spill.push(&(format!("key-{i}"), i)).expect("push");
        }
        assert_eq!(spill.len(), 10_000);
        let items: Vec<(String, u64)> = spill
            .read()
            .expect("read")
            .collect::<io::Result<_>>()
            .expect("items");
        assert_eq!(items.len(), 10_000);
        assert_eq!(items[9_999], ("key-9999".to_owned(), 9_999));
        assert!(items.windows(2).all(|w| w[0].1 + 1 == w[1].1));
    }
}
