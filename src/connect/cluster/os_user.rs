//! The OS user the server programs run as: ourselves, or `postgres` when drillbook runs as root
//! (initdb and postgres refuse root), who must be able to reach the cluster's directory.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{ClusterError, io_error};

/// The OS user the server programs run as when drillbook runs as root.
pub(super) const SERVER_OS_USER: &str = "postgres";

/// The OS user the server programs run as, when it is not ourselves.
#[derive(Clone, Copy)]
pub(crate) struct ServerUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Who the server programs run as: ourselves, unless we are root (initdb and postgres refuse).
pub(crate) fn server_user() -> Result<Option<ServerUser>, ClusterError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    lookup_user(SERVER_OS_USER)
        .map(Some)
        .ok_or_else(|| ClusterError::NoServerUser(SERVER_OS_USER.to_string()))
}

/// The ids of the OS user `name`, if it exists.
pub(crate) fn lookup_user(name: &str) -> Option<ServerUser> {
    let name = CString::new(name).ok()?;
    // SAFETY: passwd is plain data; all-zero is a valid value that getpwnam_r overwrites.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes only into `entry` and `buffer`, whose sizes we pass; we read
    // only the numeric ids afterwards.
    let status = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    (status == 0 && !found.is_null()).then_some(ServerUser {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
    })
}

/// The server's user needs to search every directory down to the cluster's. Judged from the
/// mode bits with the user's primary group only, which is what the programs we start have.
pub(super) fn check_traversable(path: &Path, user: ServerUser) -> Result<(), ClusterError> {
    for directory in path.ancestors() {
        let metadata = fs::metadata(directory).map_err(io_error("inspect", directory))?;
        let mode = metadata.mode();
        let search = if metadata.uid() == user.uid {
            0o100
        } else if metadata.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        if mode & search == 0 {
            return Err(ClusterError::NotTraversable {
                path: directory.to_path_buf(),
                user: SERVER_OS_USER.to_string(),
                mode: mode & 0o7777,
            });
        }
    }
    Ok(())
}

/// Hands a path we created (as root) to the server's user.
pub(super) fn give(path: &Path, user: Option<ServerUser>) -> Result<(), ClusterError> {
    match user {
        Some(user) => std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(io_error("change the owner of", path)),
        None => Ok(()),
    }
}
