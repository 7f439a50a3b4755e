//! What a dead drillbook left running. Every program a step starts is journalled
//! (`child_started`: pid, process group, start time, boot); each dies with drillbook by its
//! parent-death signal, and what it started in its group by the guard process
//! (`connect::guard`), but a kill of the guard too (the OOM killer, a `kill -9` of it) can
//! leave one behind. A resume stops them before anything runs again, so a step is never re-run beside
//! the program of its last attempt.

use std::time::Duration;

use super::emit::Emitter;
use crate::connect::child::{self, Started};
use crate::event::Event;
use crate::state::JournalledChild;

/// Between SIGTERM and SIGKILL, as for a cancelled step.
const GRACE: Duration = Duration::from_secs(3);

/// Stops each journalled child still running (the same boot, pid and start time, or members
/// of its process group started after it) and journals it. An error when one cannot be
/// stopped: nothing may run beside it.
pub(super) async fn stop(children: &[JournalledChild], emitter: &Emitter) -> Result<(), String> {
    for journalled in children {
        let started = Started {
            pid: journalled.pid,
            pgid: journalled.pgid,
            start_time: journalled.start_time,
            boot_id: journalled.boot_id.clone(),
            program: journalled.program.clone(),
        };
        // A child from another boot is gone: nothing to say. Polling /proc blocks.
        let stopped = tokio::task::spawn_blocking(move || child::stop(&started, GRACE))
            .await
            .map_err(|e| format!("looking for programs left running failed: {e}"))?;
        let Some(stopped) = stopped else { continue };
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        tracing::warn!(
            step = journalled.step,
            pid = journalled.pid,
            "stopped `{}` left running by the previous drillbook ({} processes, SIGKILL: {})",
            journalled.program,
            stopped.processes,
            stopped.killed
        );
        emitter.emit(Event::ChildStopped {
            step: journalled.step.clone(),
            attempt: journalled.attempt,
            pid: journalled.pid,
            program: journalled.program.clone(),
            processes: count(stopped.processes),
            killed: stopped.killed,
            remaining: count(stopped.remaining),
        })?;
        if stopped.remaining > 0 {
            return Err(format!(
                "`{}` (pid {}, step `{}`) left running by the previous drillbook could not be stopped ({} processes remain in process group {}); nothing runs again beside it: stop it, then resume",
                journalled.program,
                journalled.pid,
                journalled.step,
                stopped.remaining,
                journalled.pgid
            ));
        }
    }
    Ok(())
}
