//! A directory on a local (or mounted) filesystem used as an object store: key `a/b` is the
//! file `<root>/a/b`.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{ObjectInfo, PutOptions, StoreError};

/// Marks a file being written: `<key>.partial-<16 hex digits>`.
const PARTIAL: &str = ".partial-";

/// Size of the copy buffer of `put_stream`, and so the granularity of progress reports.
const CHUNK: usize = 1 << 20;
/// The smallest copy buffer, used for objects expected to be small.
const SMALL_CHUNK: usize = 64 << 10;

/// The copy buffer `put_stream` uses for an object expected to have `size` bytes (one more,
/// so the end is seen in the same buffer).
fn chunk(size: Option<u64>) -> usize {
    size.map_or(CHUNK, |size| {
        usize::try_from(size.saturating_add(1))
            .unwrap_or(CHUNK)
            .clamp(SMALL_CHUNK, CHUNK)
    })
}

/// The most memory `put_stream` holds for an object of `size` bytes: its copy buffer.
pub(crate) fn upload_memory(size: u64) -> u64 {
    chunk(Some(size)) as u64
}

#[derive(Clone)]
pub(crate) struct LocalStore {
    root: PathBuf,
    url: String,
    /// Named in temporary files: see `Store::owned_by`.
    pub(super) owner: String,
}

impl LocalStore {
    pub(crate) fn new(root: PathBuf, url: String) -> LocalStore {
        LocalStore {
            root,
            url,
            owner: String::new(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        // Keys were checked by the caller: no `..`, no leading `/`, so this stays under root.
        self.root.join(key)
    }

    fn failed(&self, action: &'static str, key: &str, error: io::Error) -> StoreError {
        StoreError::Failed {
            action,
            url: self.url.clone(),
            key: key.to_owned(),
            message: error.to_string(),
        }
    }

    pub(crate) async fn put_stream<R: AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        mut reader: R,
        options: &PutOptions,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, StoreError> {
        let path = self.path(key);
        let write_error = |error| self.failed("write", key, error);
        let parent = path.parent().unwrap_or(&self.root).to_owned();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(write_error)?;

        // Write beside the destination, so the rename cannot cross filesystems; the guard
        // removes the temporary file on error and when this future is dropped.
        let mut temporary = path.clone().into_os_string();
        if self.owner.is_empty() {
            temporary.push(format!("{PARTIAL}{:016x}", fastrand::u64(..)));
        } else {
            temporary.push(format!(
                "{PARTIAL}{}-{:016x}",
                self.owner,
                fastrand::u64(..)
            ));
        }
        let mut temporary = TemporaryFile {
            path: PathBuf::from(temporary),
            keep: false,
        };
        let mut file = tokio::fs::File::create(&temporary.path)
            .await
            .map_err(write_error)?;

        let mut buffer = vec![0; chunk(options.size_hint)];
        let mut total = 0u64;
        loop {
            let read = reader
                .read(&mut buffer)
                .await
                .map_err(|source| StoreError::Source {
                    url: self.url.clone(),
                    key: key.to_owned(),
                    source,
                })?;
            if read == 0 {
                break;
            }
            file.write_all(&buffer[..read]).await.map_err(write_error)?;
            total += read as u64;
            progress(total);
        }
        // The data must be on disk before the name is, or a crash could leave a complete-
        // looking but empty or truncated object.
        file.flush().await.map_err(write_error)?;
        file.sync_all().await.map_err(write_error)?;
        drop(file);
        tokio::fs::rename(&temporary.path, &path)
            .await
            .map_err(write_error)?;
        temporary.keep = true;
        // Make the rename itself durable. The object is already complete and visible, so a
        // failure here is only worth a warning.
        if let Err(error) = sync_directory(parent).await {
            tracing::warn!("cannot sync the directory of {}: {error}", path.display());
        }
        Ok(total)
    }

    pub(crate) async fn exists(&self) -> Result<bool, StoreError> {
        match tokio::fs::metadata(&self.root).await {
            Ok(metadata) if metadata.is_dir() => Ok(true),
            Ok(_) => Err(self.failed("open", "", io::Error::other("it is not a directory"))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(self.failed("open", "", error)),
        }
    }

    pub(crate) async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, StoreError> {
        let path = self.path(key);
        let not_found = || StoreError::NotFound {
            url: self.url.clone(),
            key: key.to_owned(),
        };
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(not_found()),
            Err(error) => return Err(self.failed("read", key, error)),
        };
        let metadata = file
            .metadata()
            .await
            .map_err(|error| self.failed("read", key, error))?;
        if metadata.is_dir() {
            return Err(not_found());
        }
        let Some(range) = range else {
            return Ok(Box::new(file));
        };
        // Like S3: a range that starts past the end is an error, one that ends past it is cut.
        if range.start > metadata.len() || (range.start == metadata.len() && !range.is_empty()) {
            return Err(StoreError::Failed {
                action: "read",
                url: self.url.clone(),
                key: key.to_owned(),
                message: format!(
                    "byte range {}..{} starts beyond the end of the object ({} bytes)",
                    range.start,
                    range.end,
                    metadata.len()
                ),
            });
        }
        file.seek(io::SeekFrom::Start(range.start))
            .await
            .map_err(|error| self.failed("read", key, error))?;
        Ok(Box::new(file.take(range.end - range.start)))
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        match tokio::fs::metadata(self.path(key)).await {
            // A directory is where keys share a prefix, not an object.
            Ok(metadata) if metadata.is_dir() => Ok(None),
            Ok(metadata) => Ok(Some(object_info(key.to_owned(), &metadata))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(self.failed("inspect", key, error)),
        }
    }

    /// Sends the objects under `prefix` in key order, a page at a time, until the receiver
    /// goes away.
    pub(crate) async fn list_pages(&self, prefix: &str, pages: super::listing::Pages) {
        let (root, prefix_owned) = (self.root.clone(), prefix.to_owned());
        let sender = pages.clone();
        let walked = tokio::task::spawn_blocking(move || {
            let mut page = Vec::with_capacity(super::listing::PAGE);
            let mut open = true;
            let result = walk_sorted(&root, &prefix_owned, &mut |file| {
                if is_partial(&file.key) {
                    return true;
                }
                page.push(object_info(file.key, &file.metadata));
                if page.len() == super::listing::PAGE {
                    open = sender.blocking_send(Ok(std::mem::take(&mut page))).is_ok();
                }
                open
            });
            if open && result.is_ok() && !page.is_empty() {
                let _ = sender.blocking_send(Ok(page));
            }
            result
        })
        .await;
        let error = match walked {
            Ok(Ok(())) => return,
            Ok(Err(error)) if error.kind() == io::ErrorKind::NotFound => StoreError::Failed {
                action: "list",
                url: self.url.clone(),
                key: prefix.to_owned(),
                message: "the store's directory does not exist".to_owned(),
            },
            Ok(Err(error)) => self.failed("list", prefix, error),
            Err(error) => self.failed("list", prefix, io::Error::other(error)),
        };
        let _ = pages.send(Err(error)).await;
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(self.failed("delete", key, error))
            }
            _ => Ok(()),
        }
    }

    pub(crate) async fn remove_incomplete(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut removed = Vec::new();
        if !self.root.exists() {
            // A store not written yet has nothing left over.
            return Ok(removed);
        }
        for file in self.walk(prefix).await? {
            if !is_partial(&file.key) {
                continue;
            }
            let started = file
                .metadata
                .modified()
                .ok()
                .and_then(|time| jiff::Timestamp::try_from(time).ok());
            if !super::removable(&self.owner, partial_owner(&file.key), started) {
                // Another run's upload, maybe still in flight.
                continue;
            }
            match tokio::fs::remove_file(&file.path).await {
                Ok(()) => removed.push(format!(
                    "removed the partial upload {} ({} bytes)",
                    file.path.display(),
                    file.metadata.len()
                )),
                // Finished or cleaned up by its writer meanwhile.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(self.failed("delete", &file.key, error)),
            }
        }
        Ok(removed)
    }

    /// Every file whose key starts with `prefix`, partial ones included.
    async fn walk(&self, prefix: &str) -> Result<Vec<File>, StoreError> {
        let root = self.root.clone();
        let owned_prefix = prefix.to_owned();
        let walked = tokio::task::spawn_blocking(move || walk(&root, &owned_prefix)).await;
        match walked {
            Ok(Ok(files)) => Ok(files),
            Ok(Err(error)) if error.kind() == io::ErrorKind::NotFound => Err(StoreError::Failed {
                action: "list",
                url: self.url.clone(),
                key: prefix.to_owned(),
                message: "the store's directory does not exist".to_owned(),
            }),
            Ok(Err(error)) => Err(self.failed("list", prefix, error)),
            Err(error) => Err(self.failed("list", prefix, io::Error::other(error))),
        }
    }
}

pub(super) struct File {
    key: String,
    path: PathBuf,
    metadata: std::fs::Metadata,
}

fn object_info(key: String, metadata: &std::fs::Metadata) -> ObjectInfo {
    ObjectInfo {
        key,
        size: metadata.len(),
        modified: metadata
            .modified()
            .ok()
            .and_then(|time| jiff::Timestamp::try_from(time).ok()),
    }
}

/// Whether `key` is a temporary file of `put_stream`: ends in `.partial-`, optionally its
/// owner and `-`, and 16 hex digits.
fn is_partial(key: &str) -> bool {
    key.rsplit_once(PARTIAL).is_some_and(|(_, suffix)| {
        let random = match suffix.rsplit_once('-') {
            Some((owner, random)) if !owner.is_empty() => random,
            _ => suffix,
        };
        random.len() == 16 && random.bytes().all(|byte| byte.is_ascii_hexdigit())
    })
}

/// The owner a temporary file names, if any.
fn partial_owner(key: &str) -> Option<&str> {
    let (_, suffix) = key.rsplit_once(PARTIAL)?;
    suffix.rsplit_once('-').map(|(owner, _)| owner)
}

/// Blocking walk of `root`, starting from the deepest directory the prefix names so a listing
/// of `prod/` does not read the rest of the tree.
fn walk(root: &Path, prefix: &str) -> io::Result<Vec<File>> {
    let mut files = Vec::new();
    walk_sorted(root, prefix, &mut |file| {
        files.push(file);
        true
    })?;
    Ok(files)
}

/// Hands every file whose key starts with `prefix` to `each`, in bytewise key order (as S3
/// lists), until `each` says stop. A directory's entries are sorted as their keys sort: a
/// directory `a` as `a/`, so `a.txt` comes before `a/b`. Only the directories on the way
/// down are held, each with its own entries.
pub(super) fn walk_sorted(
    root: &Path,
    prefix: &str,
    each: &mut dyn FnMut(File) -> bool,
) -> io::Result<()> {
    // The root must exist (it is the "bucket"); a missing subdirectory just means no keys.
    std::fs::metadata(root)?;
    let start = match prefix.rfind('/') {
        Some(slash) => &prefix[..slash],
        None => "",
    };
    let mut pending = vec![sorted_entries(&root.join(start), start, prefix)?.into_iter()];
    while let Some(entries) = pending.last_mut() {
        let Some(entry) = entries.next() else {
            pending.pop();
            continue;
        };
        if entry.directory {
            pending.push(sorted_entries(&entry.path, &entry.key, prefix)?.into_iter());
            continue;
        }
        if !entry.key.starts_with(prefix) {
            continue;
        }
        // Follows symbolic links to files; links to directories are skipped (no loops).
        let metadata = match std::fs::metadata(&entry.path) {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        let file = File {
            key: entry.key,
            path: entry.path,
            metadata,
        };
        if !each(file) {
            break;
        }
    }
    Ok(())
}

struct Entry {
    /// A directory's ends in `/` (its sort order), stripped when descending.
    sort: String,
    key: String,
    path: PathBuf,
    directory: bool,
}

/// The entries of `directory` (whose key is `key_prefix`) that may hold keys under `prefix`,
/// sorted as their keys sort. A directory gone meanwhile has none.
fn sorted_entries(directory: &Path, key_prefix: &str, prefix: &str) -> io::Result<Vec<Entry>> {
    let read = match std::fs::read_dir(directory) {
        Ok(read) => read,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!("skipping {}: the name is not UTF-8", entry.path().display());
            continue;
        };
        let key = if key_prefix.is_empty() {
            name
        } else {
            format!("{key_prefix}/{name}")
        };
        let directory = entry.file_type()?.is_dir();
        if directory {
            // Only descend where keys could still match the prefix.
            if !(key.starts_with(prefix) || prefix.starts_with(&format!("{key}/"))) {
                continue;
            }
        } else if !key.starts_with(prefix) {
            continue;
        }
        let sort = if directory {
            format!("{key}/")
        } else {
            key.clone()
        };
        entries.push(Entry {
            sort,
            key,
            path: entry.path(),
            directory,
        });
    }
    entries.sort_unstable_by(|a, b| a.sort.cmp(&b.sort));
    Ok(entries)
}

async fn sync_directory(directory: PathBuf) -> io::Result<()> {
    tokio::task::spawn_blocking(move || std::fs::File::open(directory)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

/// Deletes the file when dropped unless kept: covers errors and cancelled futures alike.
struct TemporaryFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        if !self.keep {
            // Synchronous on purpose: Drop cannot await, and unlinking one file is quick.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Conditional writes in a directory, for processes of one machine.
impl LocalStore {
    pub(crate) async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: &super::Condition,
    ) -> Result<super::Put, StoreError> {
        let path = self.path(key);
        let condition = condition.clone();
        let result =
            tokio::task::spawn_blocking(move || put_if_blocking(&path, &bytes, &condition))
                .await
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|r| r);
        result.map_err(|error| self.failed("write", key, error))
    }

    pub(crate) async fn get_tagged(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, super::Tag)>, StoreError> {
        match tokio::fs::read(self.path(key)).await {
            Ok(bytes) => {
                let tag = content_tag(&bytes);
                Ok(Some((bytes, tag)))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(self.failed("read", key, error)),
        }
    }
}

fn content_tag(bytes: &[u8]) -> super::Tag {
    use sha2::Digest;
    super::Tag(crate::format::hex(&sha2::Sha256::digest(bytes)))
}

fn put_if_blocking(
    path: &std::path::Path,
    bytes: &[u8],
    condition: &super::Condition,
) -> io::Result<super::Put> {
    use std::io::Write;
    let parent = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent)?;
    // Beside the destination (one filesystem), removed whatever happens unless renamed.
    let mut name = path.as_os_str().to_owned();
    name.push(format!("{PARTIAL}{:016x}", fastrand::u64(..)));
    let temp = TemporaryFile {
        path: PathBuf::from(name),
        keep: false,
    };
    let mut file = std::fs::File::create(&temp.path)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    match condition {
        // A hard link fails when the name exists: creation with the whole content, or nothing.
        super::Condition::Absent => match std::fs::hard_link(&temp.path, path) {
            Ok(()) => Ok(super::Put::Written(content_tag(bytes))),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(super::Put::Refused),
            Err(error) => Err(error),
        },
        super::Condition::Unchanged(tag) => loop {
            let Ok(current) = std::fs::File::open(path) else {
                return Ok(super::Put::Refused);
            };
            current.lock()?;
            // Replaced while we waited for the lock: look again at what the name holds now.
            let same = std::fs::metadata(path).ok().is_some_and(|now| {
                use std::os::unix::fs::MetadataExt;
                current
                    .metadata()
                    .is_ok_and(|held| held.ino() == now.ino() && held.dev() == now.dev())
            });
            if !same {
                continue;
            }
            if content_tag(&std::fs::read(path)?) != *tag {
                return Ok(super::Put::Refused);
            }
            std::fs::rename(&temp.path, path)?;
            return Ok(super::Put::Written(content_tag(bytes)));
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_partial_files() {
        assert!(is_partial("a/x.dump.partial-0123456789abcdef"));
        assert!(is_partial("a/x.dump.partial-0192_run-0123456789abcdef"));
        assert_eq!(
            partial_owner("a/x.dump.partial-0192_run-0123456789abcdef"),
            Some("0192_run")
        );
        assert!(!is_partial("a/x.dump"));
        assert!(!is_partial("a/x.partial-notes.txt"));
    }
}
