//! A file or directory as the file system knows it: the absolute path with `~/` expanded and
//! every symbolic link followed (also in the part that does not exist yet, since writing
//! through a dangling link creates its target), and the device and inode of what exists, so
//! that a hard link or a second mount of the same directory is recognized.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::Env;
use crate::connect::store::{Location, S3Settings, locate};

/// A device and inode number.
type Inode = (u64, u64);

/// How many links a path may go through, as Linux allows (`ELOOP` beyond).
const MAX_LINKS: u32 = 40;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct File {
    path: PathBuf,
    directory: bool,
    /// The file's own inode, when it exists.
    inode: Option<Inode>,
    /// The inodes of the file (when it exists) and of every existing directory above it.
    within: BTreeSet<Inode>,
}

impl File {
    /// A path or a `file://` URL, as a local-directory store reads it.
    pub(crate) fn of_value(value: &str, env: &Env) -> Result<File, String> {
        super::allow_schemes(value, &["file"], "a file")?;
        match locate(value, &S3Settings::default()).map_err(super::store::reason)? {
            (Location::Local(path), ..) => File::of_path(&path, env),
            (Location::S3 { .. }, ..) => Err("an s3:// URL is not a file".to_string()),
        }
    }

    /// `path`, relative to the working directory unless absolute.
    pub(crate) fn of_path(path: &Path, env: &Env) -> Result<File, String> {
        let path = match path.strip_prefix("~") {
            Ok(rest) => env
                .home()
                .ok_or("`~` names the home directory, and none is known here")?
                .join(rest),
            Err(_) => path.to_path_buf(),
        };
        let path = real_path(&env.working_dir().join(path));
        let inode = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|metadata| (metadata.dev(), metadata.ino()))
        };
        Ok(File {
            directory: path.is_dir(),
            inode: inode(&path),
            within: path.ancestors().filter_map(inode).collect(),
            path,
        })
    }

    /// The same path, one inside the other, or the same file or directory under another name.
    pub(crate) fn overlaps(&self, other: &File) -> bool {
        self.path.starts_with(&other.path)
            || other.path.starts_with(&self.path)
            || self
                .inode
                .is_some_and(|inode| other.within.contains(&inode))
            || other
                .inode
                .is_some_and(|inode| self.within.contains(&inode))
    }
}

/// `file /etc/app/env`, `directory /var/backups`.
impl fmt::Display for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.directory { "directory" } else { "file" };
        write!(f, "{noun} {}", self.path.display())
    }
}

/// `path` (absolute) with `.` and `..` applied and every symbolic link followed, whether or
/// not the file exists, the way the kernel walks it when a program creates the file.
pub(crate) fn real_path(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let mut resolved = PathBuf::from("/");
    // Still to walk, last first.
    let mut rest: Vec<OsString> = parts(path);
    let mut links = 0;
    while let Some(part) = rest.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let next = resolved.join(&part);
        // Only a symbolic link has a target to read.
        match std::fs::read_link(&next) {
            Ok(target) if links < MAX_LINKS => {
                links += 1;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                rest.extend(parts(&target));
            }
            _ => resolved = next,
        }
    }
    resolved
}

/// The names and `..` of a path, last first (`/` and `.` dropped).
fn parts(path: &Path) -> Vec<OsString> {
    let mut parts: Vec<OsString> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    parts.reverse();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir {
        _temp: tempfile::TempDir,
        path: PathBuf,
        env: Env,
    }

    fn dir() -> Dir {
        let temp = tempfile::tempdir().expect("tempdir");
        // The temporary directory itself may sit behind a link (/tmp on some systems).
        let path = temp.path().canonicalize().expect("real tempdir");
        std::fs::create_dir_all(path.join("etc/app")).expect("mkdir");
        std::fs::create_dir_all(path.join("work/x")).expect("mkdir");
        std::fs::write(path.join("etc/app/live.env"), "").expect("write");
        let env = Env::new(path.join("etc/app"), "alice").with_home(path.join("work"));
        Dir {
            _temp: temp,
            path,
            env,
        }
    }

    fn file(dir: &Dir, value: &str) -> File {
        File::of_value(value, &dir.env).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    #[test]
    fn relative_absolute_file_url_and_home_spellings_are_one_file() {
        let dir = dir();
        let live = file(
            &dir,
            &dir.path.join("etc/app/live.env").display().to_string(),
        );
        let root = dir.path.display();
        for spelling in [
            "live.env".to_string(),
            "./live.env".into(),
            "../app/live.env".into(),
            "../../work/../etc/app/live.env".into(),
            format!("{root}/etc//app/./live.env"),
            format!("file://{root}/etc/app/live.env"),
            format!("file://localhost{root}/etc/app/live.env"),
            "~/../etc/app/live.env".into(),
        ] {
            assert!(file(&dir, &spelling).overlaps(&live), "{spelling}");
        }
        assert_eq!(
            file(&dir, "live.env").to_string(),
            format!("file {root}/etc/app/live.env")
        );
        for other in ["other.env", "live.env.bak", "~/live.env", "../live.env"] {
            assert!(!file(&dir, other).overlaps(&live), "{other}");
        }
    }

    #[test]
    fn a_directory_holds_what_is_in_it() {
        let dir = dir();
        let etc = file(&dir, "..");
        assert_eq!(
            etc.to_string(),
            format!("directory {}/etc", dir.path.display())
        );
        assert!(etc.overlaps(&file(&dir, "live.env")));
        assert!(file(&dir, "new/deeper/file").overlaps(&file(&dir, "new")));
        assert!(!etc.overlaps(&file(&dir, "~/x")));
    }

    #[test]
    fn symbolic_and_hard_links_are_the_file_they_name() {
        let dir = dir();
        let live = file(&dir, "live.env");
        let work = dir.path.join("work");
        std::os::unix::fs::symlink(dir.path.join("etc/app/live.env"), work.join("soft.env"))
            .expect("symlink");
        std::fs::hard_link(dir.path.join("etc/app/live.env"), work.join("hard.env"))
            .expect("hard link");
        std::os::unix::fs::symlink(dir.path.join("etc/app"), work.join("app")).expect("symlink");
        // A link to a file that does not exist yet: writing through it creates the target.
        std::os::unix::fs::symlink(dir.path.join("etc/app/next.env"), work.join("dangling"))
            .expect("symlink");
        assert!(file(&dir, "~/soft.env").overlaps(&live));
        assert!(file(&dir, "~/hard.env").overlaps(&live));
        assert!(file(&dir, "~/app/live.env").overlaps(&live));
        assert!(file(&dir, "~/app/../app/live.env").overlaps(&live));
        assert!(file(&dir, "~/dangling").overlaps(&file(&dir, "next.env")));
        assert!(!file(&dir, "~/dangling").overlaps(&live));
        let copy = work.join("copy.env");
        std::fs::copy(dir.path.join("etc/app/live.env"), &copy).expect("copy");
        assert!(!file(&dir, "~/copy.env").overlaps(&live));
    }

    #[test]
    fn a_link_loop_ends() {
        let dir = dir();
        let work = dir.path.join("work");
        std::os::unix::fs::symlink(work.join("b"), work.join("a")).expect("symlink");
        std::os::unix::fs::symlink(work.join("a"), work.join("b")).expect("symlink");
        let looped = file(&dir, "~/a/x");
        assert!(!looped.overlaps(&file(&dir, "live.env")));
    }

    #[test]
    fn urls_that_are_not_files_are_refused() {
        let dir = dir();
        for (value, problem) in [
            ("s3://bucket/x", "not a file"),
            ("http://host/x", "not a file"),
            ("file://otherhost/x", "absolute path"),
            ("file:///bad%zz", "%-escape"),
        ] {
            let error = File::of_value(value, &dir.env).expect_err(value);
            assert!(error.contains(problem), "{value}: {error}");
        }
        let homeless = Env::new("/", "alice");
        assert!(File::of_value("~/x", &homeless).is_err());
    }
}
