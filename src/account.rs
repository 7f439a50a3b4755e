//! The OS account drillbook runs as, from the password database: cron and containers often set
//! no `USER` or `HOME`, and libpq reads the account, not the variables.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// An account of this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) name: String,
    pub(crate) home: PathBuf,
}

/// The account and host a decision is recorded with: whoever started this process.
pub fn os_account() -> crate::event::OsAccount {
    // SAFETY: getuid has no preconditions and cannot fail.
    os_account_of(unsafe { libc::getuid() })
}

/// The account with user id `uid`, on this host (`uid N` when it has no name).
pub fn os_account_of(uid: u32) -> crate::event::OsAccount {
    crate::event::OsAccount {
        user: of(uid).map_or_else(|| format!("uid {uid}"), |account| account.name),
        uid,
        host: host(),
        via: None,
    }
}

/// This machine's host name, or `unknown host`.
pub fn host() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name) if status == 0 && !name.is_empty() => name.to_string(),
        _ => "unknown host".into(),
    }
}

/// Whoever started drillbook (the real user id).
pub(crate) fn real() -> Option<Account> {
    // SAFETY: getuid has no preconditions and cannot fail.
    of(unsafe { libc::getuid() })
}

/// Whose rights drillbook runs with (the effective user id), as libpq picks its default user.
pub(crate) fn effective() -> Option<Account> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    of(unsafe { libc::geteuid() })
}

fn of(uid: libc::uid_t) -> Option<Account> {
    // SAFETY: passwd is plain data; all-zero is a valid value that getpwuid_r overwrites.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes only into `entry` and `buffer`, whose sizes we pass; the
    // strings it returns point into `buffer`, which outlives the reads below.
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() || entry.pw_name.is_null() || entry.pw_dir.is_null() {
        return None;
    }
    // SAFETY: on success both are NUL-terminated strings inside `buffer`.
    let (name, home) = unsafe { (CStr::from_ptr(entry.pw_name), CStr::from_ptr(entry.pw_dir)) };
    let name = name.to_string_lossy().into_owned();
    let home = PathBuf::from(OsStr::from_bytes(home.to_bytes()));
    (!name.is_empty()).then_some(Account { name, home })
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_an_account() {
        let account = super::effective().expect("an account");
        assert!(!account.name.is_empty());
        assert!(super::real().is_some());
    }
}
