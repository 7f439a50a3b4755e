//! `wal push` and `wal fetch`: PostgreSQL's `archive_command` and `restore_command`.
//!
//! PostgreSQL's archiver stops (and the server restarts it) when its command exits with 128 or
//! more, which is what a shell reports for a process killed by a signal; its startup process
//! aborts recovery likewise. So nothing here may end that way short of SIGKILL: a panic is
//! caught and exits 1, and SIGTERM, SIGINT, SIGHUP and SIGQUIT stop the work (removing what it
//! had half-written) and exit 1.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tokio::signal::unix::{SignalKind, signal};

use super::args::{WalArgs, WalCommand};
use crate::outcome::Outcome;
use crate::wal::{self, Archive, WalConfig, WalError};

pub(super) fn wal(args: WalArgs, verbose: u8) -> Outcome {
    let what = match &args.command {
        WalCommand::Push { .. } => "wal push",
        WalCommand::Fetch { .. } => "wal fetch",
    };
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("drillbook {what}: internal error, nothing was changed: {info}");
    }));
    let code = catch_unwind(AssertUnwindSafe(|| run(args, verbose))).unwrap_or(1);
    match code {
        0 => Outcome::Succeeded,
        2 => Outcome::Invalid,
        _ => Outcome::Failed,
    }
}

fn run(args: WalArgs, verbose: u8) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("drillbook: cannot start: {error}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let work = async {
            let config = WalConfig::load(args.store, args.config.as_deref(), |name| {
                std::env::var(name).ok()
            })?;
            let archive = Archive::open(&config).await?;
            match &args.command {
                WalCommand::Push { path } => wal::push(&archive, path)
                    .await
                    .map(|pushed| pushed.to_string()),
                WalCommand::Fetch { name, path } => {
                    wal::fetch(&archive, name, path).await.map(|fetched| {
                        format!(
                            "restored {} ({} bytes) to {}",
                            fetched.name,
                            fetched.size,
                            path.display()
                        )
                    })
                }
            }
        };
        let result: Result<String, WalError> = tokio::select! {
            result = work => result,
            name = stopped() => {
                eprintln!("drillbook: stopped by {name}; nothing was written");
                return 1;
            }
        };
        match result {
            Ok(done) => {
                if verbose > 0 {
                    eprintln!("{done}");
                }
                0
            }
            Err(error) => {
                if !error.is_quiet() {
                    eprintln!("drillbook: {error}");
                }
                error.exit_code()
            }
        }
    })
}

/// Waits for a signal that would otherwise kill the process; its name. If the handlers cannot
/// be installed this never returns, and the signals keep their default action.
async fn stopped() -> &'static str {
    let kinds = [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
    ];
    let mut waiting = Vec::new();
    for (kind, name) in kinds {
        if let Ok(mut stream) = signal(kind) {
            waiting.push(Box::pin(async move {
                stream.recv().await;
                name
            }));
        }
    }
    if waiting.is_empty() {
        return std::future::pending().await;
    }
    futures_select_all(waiting).await
}

/// The first of `futures` to finish.
async fn futures_select_all<F>(mut futures: Vec<std::pin::Pin<Box<F>>>) -> &'static str
where
    F: std::future::Future<Output = &'static str>,
{
    std::future::poll_fn(move |cx| {
        for future in futures.iter_mut() {
            if let std::task::Poll::Ready(name) = future.as_mut().poll(cx) {
                return std::task::Poll::Ready(name);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
