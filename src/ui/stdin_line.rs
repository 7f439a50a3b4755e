//! One line typed at the terminal, read in slices so that the wait can be given up: a
//! question answered from another shell stops being asked. Bytes are read from the file
//! descriptor itself (no buffered reader holding a line that `poll` cannot see), and what
//! follows a line stays for the next read.

use std::sync::{Mutex, PoisonError};

use crate::human::Withdrawn;

/// How long one wait for input lasts before the flag is looked at again.
const SLICE_MS: i32 = 100;

/// Bytes read past the last line given out.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// The next line without its line end; `None` at end of input, on an error, or once
/// `withdrawn` is raised.
pub(crate) fn read(withdrawn: &Withdrawn) -> Option<String> {
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            return Some(text.trim_end_matches('\r').to_string());
        }
        if withdrawn.is_raised() {
            return None;
        }
        let mut poll = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, SLICE_MS) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        if ready == 0 {
            continue;
        }
        let mut buf = [0u8; 1024];
        // SAFETY: reads at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => {
                // End of input: a last line without its newline still counts.
                if pending.is_empty() {
                    return None;
                }
                let line: Vec<u8> = std::mem::take(&mut *pending);
                return Some(String::from_utf8_lossy(&line).trim_end().to_string());
            }
            n if n < 0 => {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return None;
            }
            n => pending.extend_from_slice(&buf[..n as usize]),
        }
    }
}
