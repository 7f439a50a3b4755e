//! A bucket's objects in bytewise key order, a page at a time: flat (ListObjectsV2, a request
//! per 1,000 keys, the default), or walked a level at a time (`?listing=walk`): each request
//! lists one "directory" (`/` as the delimiter), its objects and its sub-prefixes merged in key
//! order, and a sub-prefix is walked whole where it falls among them; only the levels on the
//! way down are held, a page each.
//!
//! Why walk: a server that keeps objects as files (s3s-fs, the test server, does) walks the
//! whole bucket for every page of a flat listing, so listing N objects costs it N²/1,000 file
//! lookups; a level's listing walks only that level's subtree. AWS and servers that index keys
//! answer either in time proportional to the page, and a walk costs them a request per prefix
//! (a million for `users/<id>/avatar.png`): flat is their default.

use std::collections::VecDeque;

use super::incomplete::MARKER_DIR;
use super::{S3Store, timestamp};
use crate::connect::store::ObjectInfo;
use crate::connect::store::listing::{PAGE, Pages};

/// One entry of a level's listing, by bucket key.
enum Item {
    Object(ObjectInfo),
    Prefix(String),
}

/// A prefix being listed: what its last page gave that was not taken yet, and where the next
/// page starts.
struct Level {
    prefix: String,
    items: VecDeque<Item>,
    continuation: Option<String>,
    more: bool,
}

impl Level {
    fn new(prefix: String) -> Level {
        Level {
            prefix,
            items: VecDeque::new(),
            continuation: None,
            more: true,
        }
    }
}

impl S3Store {
    /// Whether `sync` and `verify` walk this bucket a level at a time.
    pub(crate) fn walks(&self) -> bool {
        self.walk
    }

    /// Sends the objects under `prefix` a page at a time, as the server lists them flat
    /// (bytewise by key), until the receiver goes away.
    pub(crate) async fn list_pages(&self, prefix: &str, pages: Pages) {
        let mut level = Level::new(self.full_key(prefix));
        while level.more {
            if let Err(error) = self.next_page(&mut level, prefix, false).await {
                let _ = pages.send(Err(error)).await;
                return;
            }
            let objects = level
                .items
                .drain(..)
                .filter_map(|item| match item {
                    Item::Object(object) => Some(object),
                    Item::Prefix(_) => None,
                })
                .collect();
            if pages.send(Ok(objects)).await.is_err() {
                return;
            }
        }
    }

    /// Sends the objects under `prefix` in bytewise key order, walked a level at a time, a
    /// page at a time, until the receiver goes away.
    pub(crate) async fn walk_pages(&self, prefix: &str, pages: Pages) {
        let mut levels = vec![Level::new(self.full_key(prefix))];
        let mut page = Vec::with_capacity(PAGE);
        while let Some(level) = levels.last_mut() {
            let Some(item) = level.items.pop_front() else {
                if !level.more {
                    levels.pop();
                } else if let Err(error) = self.next_page(level, prefix, true).await {
                    let _ = pages.send(Err(error)).await;
                    return;
                }
                continue;
            };
            match item {
                Item::Object(object) => {
                    page.push(object);
                    if page.len() == PAGE
                        && pages.send(Ok(std::mem::take(&mut page))).await.is_err()
                    {
                        return;
                    }
                }
                Item::Prefix(prefix) => levels.push(Level::new(prefix)),
            }
        }
        if !page.is_empty() {
            let _ = pages.send(Ok(page)).await;
        }
    }

    /// Fetches `level`'s next page: its objects and, walking (`/` as the delimiter), its
    /// sub-prefixes, merged in key order.
    async fn next_page(
        &self,
        level: &mut Level,
        prefix: &str,
        walk: bool,
    ) -> Result<(), crate::connect::store::StoreError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&level.prefix)
            .set_delimiter(walk.then(|| "/".to_owned()))
            .set_continuation_token(level.continuation.take())
            .send()
            .await
            .map_err(|error| self.sdk_error("list", prefix, &error))?;
        let objects = page.contents().iter().filter_map(|object| {
            let key = object.key()?;
            // Zero-byte "folder" placeholders (made by web consoles) are not objects a key can
            // name; our markers are bookkeeping, not data.
            if key.ends_with('/') || key.starts_with(MARKER_DIR) {
                return None;
            }
            Some(ObjectInfo {
                key: key.strip_prefix(&self.prefix)?.to_owned(),
                size: object.size().unwrap_or(0).max(0) as u64,
                modified: object.last_modified().and_then(timestamp),
            })
        });
        let prefixes = page.common_prefixes().iter().filter_map(|common| {
            let prefix = common.prefix()?;
            // Longer than the level's own (so the walk ends), and not our markers.
            (prefix.len() > level.prefix.len() && !prefix.starts_with(MARKER_DIR))
                .then(|| prefix.to_owned())
        });
        let mut objects = objects.peekable();
        let mut prefixes = prefixes.peekable();
        loop {
            // An object's key against a prefix, both as bucket keys: the object is relative
            // to the store's prefix, which every key here starts with.
            let object_first = match (objects.peek(), prefixes.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(object), Some(next)) => next
                    .strip_prefix(&self.prefix)
                    .is_none_or(|next| object.key.as_str() < next),
            };
            let item = if object_first {
                objects.next().map(Item::Object)
            } else {
                prefixes.next().map(Item::Prefix)
            };
            level.items.extend(item);
        }
        match page.next_continuation_token() {
            Some(token) if page.is_truncated() == Some(true) => {
                level.continuation = Some(token.to_owned());
            }
            _ => level.more = false,
        }
        Ok(())
    }
}
