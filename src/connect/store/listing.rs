//! A store's objects as a stream in key order: pages of a listing, read while the next page is
//! fetched (or the next directories walked), a few pages buffered at most. `sync` and
//! `verify` merge such streams with each other and with a checksum report in one pass, so
//! memory does not grow with the number of objects.

use tokio::sync::mpsc;

use super::{Backend, ObjectInfo, Store, StoreError, check_prefix};

/// Objects a page (a local walk's; S3 pages are the server's, 1,000 by default).
pub(super) const PAGE: usize = 1000;
/// Pages fetched ahead of the reader.
const AHEAD: usize = 4;

/// Where a listing task sends its pages.
pub(crate) type Pages = mpsc::Sender<Result<Vec<ObjectInfo>, StoreError>>;

/// The objects under a prefix, in bytewise key order (checked: a store that lists out of
/// order fails the listing rather than have a merge misread it).
pub struct Listing {
    url: String,
    pages: mpsc::Receiver<Result<Vec<ObjectInfo>, StoreError>>,
    page: std::vec::IntoIter<ObjectInfo>,
    peeked: Option<ObjectInfo>,
    last: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Store {
    /// Every object whose key starts with `prefix` ("" = all), recursively, as a stream in
    /// bytewise key order: a bucket listed flat, or a level at a time when its URL says
    /// `listing=walk` (a whole bucket, for `sync` and `verify`).
    pub fn list_sorted(&self, prefix: &str) -> Result<Listing, StoreError> {
        self.listing(prefix, true)
    }

    /// As [`Store::list_sorted`], always flat on S3 (`walk: false`): the prefixes other
    /// commands list are small, and a walk costs a request per prefix.
    pub(super) fn listing(&self, prefix: &str, walk: bool) -> Result<Listing, StoreError> {
        check_prefix(&self.url, prefix)?;
        let (sender, pages) = mpsc::channel(AHEAD);
        let (store, prefix) = (self.clone(), prefix.to_owned());
        let task = tokio::spawn(async move {
            match &store.backend {
                Backend::Local(local) => local.list_pages(&prefix, sender).await,
                Backend::S3(s3) if walk && s3.walks() => s3.walk_pages(&prefix, sender).await,
                Backend::S3(s3) => s3.list_pages(&prefix, sender).await,
            }
        });
        Ok(Listing {
            url: self.url.clone(),
            pages,
            page: Vec::new().into_iter(),
            peeked: None,
            last: None,
            task,
        })
    }
}

impl Listing {
    /// The next object, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<ObjectInfo>, StoreError> {
        if let Some(object) = self.peeked.take() {
            return Ok(Some(object));
        }
        loop {
            if let Some(object) = self.page.next() {
                if let Some(last) = &self.last
                    && object.key.as_str() <= last.as_str()
                {
                    return Err(StoreError::Failed {
                        action: "list",
                        url: self.url.clone(),
                        key: object.key,
                        message: format!(
                            "the store listed this key after {last:?}, out of bytewise order: objects are compared by merging listings in key order, so nothing is decided from this one"
                        ),
                    });
                }
                self.last = Some(object.key.clone());
                return Ok(Some(object));
            }
            match self.pages.recv().await {
                Some(page) => self.page = page?.into_iter(),
                None => return Ok(None),
            }
        }
    }

    /// The next object, left to be taken by [`Listing::next`].
    pub async fn peek(&mut self) -> Result<Option<&ObjectInfo>, StoreError> {
        if self.peeked.is_none() {
            self.peeked = self.next().await?;
        }
        Ok(self.peeked.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_is_listed_in_bytewise_key_order() {
        let base = tempfile::tempdir().expect("tempdir");
        // Sorted by name, `a` (a directory) would come before `a.txt`; by key, `a.txt` comes
        // before `a/b` ('.' < '/'), and `a0` after it ('0' > '/').
        for key in ["a/b", "a/c/d", "a.txt", "a0", "B", "a/c.e", "z"] {
            let path = base.path().join(key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, key).expect("write");
        }
        let store = Store::open(&base.path().display().to_string())
            .await
            .expect("open");
        let mut listing = store.list_sorted("").expect("listing");
        let mut keys = Vec::new();
        while let Some(object) = listing.next().await.expect("next") {
            keys.push(object.key);
        }
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys, ["B", "a.txt", "a/b", "a/c.e", "a/c/d", "a0", "z"]);
        let under: Vec<String> = store
            .list("a/c")
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(under, ["a/c.e", "a/c/d"]);
    }

    #[tokio::test]
    async fn a_listing_out_of_order_is_an_error_not_a_wrong_answer() {
        let (sender, pages) = mpsc::channel(AHEAD);
        let object = |key: &str| ObjectInfo {
            key: key.to_owned(),
            size: 1,
            modified: None,
        };
        sender
            .send(Ok(vec![object("a"), object("c")]))
            .await
            .expect("send");
        sender.send(Ok(vec![object("b")])).await.expect("send");
        drop(sender);
        let mut listing = Listing {
            url: "s3://bucket".into(),
            pages,
            page: Vec::new().into_iter(),
            peeked: None,
            last: None,
            task: tokio::spawn(async {}),
        };
        assert_eq!(
            listing.next().await.expect("a").map(|o| o.key),
            Some("a".into())
        );
        assert_eq!(
            listing.peek().await.expect("c").map(|o| o.key.clone()),
            Some("c".into())
        );
        listing.next().await.expect("c");
        let error = listing.next().await.expect_err("b after c").to_string();
        assert!(
            error.contains("\"c\"") && error.contains("out of bytewise order"),
            "{error}"
        );
    }
}
