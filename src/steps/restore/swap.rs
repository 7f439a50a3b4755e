//! The swap: a restore into a PostgreSQL target goes into a new scratch database on the
//! target's server, is checked there, and replaces the target by two renames in one
//! transaction (`ALTER DATABASE … RENAME` is transactional), so the target is either as it was
//! or wholly the restored copy. The database it replaced is kept under `<db>_before_<time>`.
//!
//! Order: refuse (missing privileges, open sessions, another restore's scratch database)
//! before changing anything; drop this step's leftovers; create the scratch database like the
//! target (encoding, locale); pg_restore into it; compare its counts with the manifest; give
//! it the target's owner, privileges and settings; swap; drop previous databases beyond
//! `keep_previous`. Any failure before the swap drops the scratch database and leaves the
//! target untouched; a killed drillbook leaves a scratch database that the next attempt of the
//! step (resume) or a later run drops.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::carry::{self, Properties, literal};
use super::catalog::{
    counts, databases, drop_database, existing, free_name, kept, maintenance, open_sessions,
    privileges, retain, sessions, terminate, transaction,
};
use super::names::{self, Leftover, Mark, Me, PreviousMark, ScratchMark};
use super::{CONNECT_TIMEOUT, Prepared, Restore, Restored};
use crate::connect::pg_tools::Version;
use crate::connect::postgres::{self, Target, quote_ident};
use crate::steps::{StepContext, StepFailure};

/// The target's server, as found before anything is changed.
pub(super) struct Server {
    target: Target,
    /// The same server's `postgres` (or `template1`): databases are created, renamed and
    /// dropped from there, never from a connection to themselves.
    maintenance: Target,
    pub version: Version,
    role: String,
    /// The target's own properties; `None` when it does not exist yet.
    properties: Option<Properties>,
    /// Scratch databases earlier restores left, with why each is known to be one.
    leftovers: Vec<(String, String)>,
    run: String,
}

pub(super) enum Ready {
    Swap(Box<Server>),
    /// An earlier attempt of this step made the swap before drillbook died.
    Done(Restored),
}

/// The run's id: its directory's name.
fn run_id(ctx: &StepContext<'_>) -> String {
    ctx.run_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks everything the swap needs and refuses what it cannot do, changing nothing.
pub(super) async fn inspect(
    target: Target,
    step: &Restore,
    ctx: &StepContext<'_>,
    key: &str,
) -> Result<Ready, StepFailure> {
    let (maintenance, client) = maintenance(&target).await?;
    let query = |e: tokio_postgres::Error| StepFailure::of(maintenance.error(&e));
    let version = postgres::server_version(&maintenance, &client)
        .await
        .map_err(StepFailure::of)?;
    let db = target.database().to_string();
    let run = run_id(ctx);
    let privileges = privileges(&client, &db).await.map_err(query)?;
    if let Some(missing) = privileges.missing(&db) {
        let mut failure = StepFailure::new(missing);
        failure.permanent = true;
        return Err(failure);
    }
    let role = privileges.role;
    let kept = kept(&client, &db).await.map_err(query)?;
    if let Some((name, mark)) = kept
        .into_iter()
        .find(|(_, mark)| mark.run == run && mark.step == ctx.id && mark.backup == key)
    {
        return Ok(Ready::Done(Restored {
            evidence: vec![format!(
                "an earlier attempt of this step swapped {key} into {db} at {} (the database it replaced is kept as {name}): not restored again",
                mark.replaced_at
            )],
            ignored: mark.errors_ignored,
            previous: name,
            scratch: mark.scratch,
        }));
    }
    let properties = carry::read(&client, version, &db).await.map_err(query)?;
    if properties.is_some() && !step.terminate_connections {
        let open = sessions(&client, &db).await.map_err(query)?;
        if !open.is_empty() {
            return Err(StepFailure::new(format!(
                "{} nothing was changed. Close them, or set `terminate_connections: true` to end them right before the swap",
                open_sessions(&db, &open)
            )));
        }
    }
    let me = Me {
        target: &db,
        run: &run,
        step: ctx.id,
        host: &names::host(),
    };
    let mut leftovers = Vec::new();
    for found in databases(&client).await.map_err(query)? {
        match names::leftover(&found, &me, names::alive) {
            Leftover::NotOurs => {}
            Leftover::Ours => {
                leftovers.push((found.name, "left by an earlier attempt of this step".into()))
            }
            Leftover::Orphaned(mark) => leftovers.push((
                found.name,
                format!(
                    "left by run {} (pid {} on {}, no longer running)",
                    mark.run, mark.pid, mark.host
                ),
            )),
            Leftover::Busy(mark) => {
                return Err(StepFailure::new(format!(
                    "another restore into {db} may be running: the scratch database {} belongs to run {}, step `{}` (pid {} on {}); nothing was changed. If that restore is over, drop it: DROP DATABASE {};",
                    found.name,
                    mark.run,
                    mark.step,
                    mark.pid,
                    mark.host,
                    quote_ident(&found.name)
                )));
            }
        }
    }
    Ok(Ready::Swap(Box::new(Server {
        target,
        maintenance,
        version,
        role,
        properties,
        leftovers,
        run,
    })))
}

/// Restores into a scratch database, checks it and swaps it in.
pub(super) async fn restore(
    step: &Restore,
    ctx: &StepContext<'_>,
    server: Server,
    prepared: &Prepared,
    allowed: &[regex::Regex],
) -> Result<Restored, StepFailure> {
    let db = server.target.database().to_string();
    let force = server.version.major >= 13;
    let mut evidence = Vec::new();
    let client = server.admin().await?;
    for (name, why) in &server.leftovers {
        drop_database(&client, name, force).await.map_err(|e| {
            StepFailure::new(format!(
                "cannot drop the leftover scratch database {name} ({why}): {}; {db} was not touched",
                server.maintenance.error(&e)
            ))
        })?;
        evidence.push(format!(
            "dropped the leftover scratch database {name} ({why})"
        ));
    }

    let name = names::scratch_name(&db, &server.run, ctx.id, ctx.attempt);
    let options = server
        .properties
        .as_ref()
        .map_or_else(|| " TEMPLATE template0".into(), Properties::create_options);
    client
        .batch_execute(&format!("CREATE DATABASE {}{options}", quote_ident(&name)))
        .await
        .map_err(|e| {
            StepFailure::new(format!(
                "cannot create the scratch database {name}: {}; {db} was not touched",
                server.maintenance.error(&e)
            ))
        })?;
    let mut scratch = Scratch {
        maintenance: server.maintenance.clone(),
        name: name.clone(),
        force,
        armed: true,
    };
    let mark = ScratchMark {
        target: db.clone(),
        run: server.run.clone(),
        step: ctx.id.to_string(),
        attempt: ctx.attempt,
        host: names::host(),
        pid: std::process::id(),
    };
    let marked = client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(&name),
            literal(&mark.comment())
        ))
        .await;
    drop(client);
    evidence.push(format!(
        "restoring into the scratch database {name} on the target's server: {db} stays as it is until the swap"
    ));

    let checked = async {
        marked.map_err(|e| StepFailure::of(server.maintenance.error(&e)))?;
        let into = server.target.with_database(&name);
        let ran = step
            .pg_restore(ctx, prepared, &into, server.version, allowed)
            .await?;
        let mut notes = vec![ran.line.clone()];
        notes.extend(ran.allowed_note());
        if let Some(mut failure) = ran.failure(|_| String::new()) {
            failure.evidence.splice(0..0, notes);
            return Err(failure);
        }
        let checks = async {
            let mut checks = Vec::new();
            if step.row_counts {
                checks.push(counts(&into, &prepared.manifest).await?);
            }
            if let Some(properties) = &server.properties {
                let client = server.admin().await?;
                for statement in properties.statements(&name, &server.role) {
                    client.batch_execute(&statement).await.map_err(|e| {
                        StepFailure::new(format!(
                            "cannot give the scratch database what {db} has ({statement}): {}",
                            server.maintenance.error(&e)
                        ))
                    })?;
                }
                checks.push(format!("carried over from {db}: {}", properties.summary()));
            }
            Ok::<_, StepFailure>(checks)
        };
        match checks.await {
            Ok(checks) => notes.extend(checks),
            Err(mut failure) => {
                failure.evidence.splice(0..0, notes);
                return Err(failure);
            }
        }
        Ok((notes, ran.ignored.len()))
    };
    let checked = tokio::select! {
        checked = checked => checked,
        _ = ctx.cancel.cancelled() => Err(StepFailure::cancelled()),
    };
    let (notes, ignored) = match checked {
        Ok(checked) => checked,
        Err(failure) => return Err(scratch.fail(failure, Some(&db), evidence).await),
    };
    evidence.extend(notes);

    let swapped = match server.swap(step, ctx, &name, prepared, ignored).await {
        Ok(swapped) => swapped,
        Err((failure, untouched)) => {
            return Err(scratch
                .fail(failure, untouched.then_some(db.as_str()), evidence)
                .await);
        }
    };
    scratch.armed = false;
    evidence.extend(swapped.evidence);
    Ok(Restored {
        evidence,
        ignored,
        previous: swapped.previous,
        scratch: name,
    })
}

/// What the swap did, for the evidence and outputs.
struct Swapped {
    evidence: Vec<String>,
    /// The name the replaced target is kept under, or empty.
    previous: String,
}

impl Server {
    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    async fn admin(&self) -> Result<Client, StepFailure> {
        self.maintenance
            .connect(CONNECT_TIMEOUT)
            .await
            .map_err(StepFailure::of)
    }

    /// Renames the target away and the scratch database into its place, in one transaction,
    /// then applies the retention. An error comes with whether the target is known to be as
    /// it was.
    async fn swap(
        &self,
        step: &Restore,
        ctx: &StepContext<'_>,
        scratch: &str,
        prepared: &Prepared,
        ignored: usize,
    ) -> Result<Swapped, (StepFailure, bool)> {
        let db = self.target.database();
        let fail = |message: String| (StepFailure::new(message), true);
        let query = |e: &tokio_postgres::Error| self.maintenance.error(e).to_string();
        let mut client = self.admin().await.map_err(|f| (f, true))?;
        let now = jiff::Timestamp::now();
        let stamp = names::stamp(now);
        let previous = match &self.properties {
            None => None,
            Some(_) => Some(
                free_name(&client, db, &stamp)
                    .await
                    .map_err(|e| fail(query(&e)))?,
            ),
        };
        let mark = self.properties.as_ref().map(|properties| PreviousMark {
            target: db.to_string(),
            run: self.run.clone(),
            step: ctx.id.to_string(),
            replaced_at: now,
            comment: properties.comment.clone(),
            backup: prepared.key.clone(),
            scratch: scratch.to_string(),
            errors_ignored: ignored,
        });
        let comment = self.properties.as_ref().and_then(|p| p.comment.clone());
        let mut evidence = Vec::new();
        let mut terminated = 0;
        for round in 1.. {
            if step.terminate_connections && previous.is_some() {
                terminated += terminate(&client, db, self.version)
                    .await
                    .map_err(|e| fail(format!("cannot end the sessions on {db}: {}", query(&e))))?;
            }
            let renames = previous.as_deref().zip(mark.as_ref());
            match transaction(&mut client, db, scratch, renames, comment.as_deref()).await {
                Ok(()) => break,
                Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) => {
                    if step.terminate_connections && round < 3 {
                        continue; // Someone reconnected between the termination and the swap.
                    }
                    // The transaction rolled back: say who was in the way.
                    let mut in_use = Vec::new();
                    for name in [db, scratch] {
                        let open = sessions(&client, name).await.unwrap_or_default();
                        if !open.is_empty() {
                            in_use.push(open_sessions(name, &open));
                        }
                    }
                    if in_use.is_empty() {
                        in_use.push(format!("{};", query(&e)));
                    }
                    return Err(fail(format!(
                        "{} so the swap was rolled back",
                        in_use.join(" ")
                    )));
                }
                Err(e) => {
                    // Renames are transactional: unless the commit's answer was lost, nothing
                    // happened. The server says which.
                    let names = [Some(db), previous.as_deref(), Some(scratch)];
                    let found = match self.admin().await {
                        Ok(client) => existing(&client, &names).await.ok(),
                        Err(_) => None,
                    };
                    let has =
                        |name: &str| found.as_ref().is_some_and(|f| f.iter().any(|n| n == name));
                    if found.is_some()
                        && !has(scratch)
                        && has(db)
                        && previous.as_deref().is_none_or(has)
                    {
                        evidence.push(format!(
                            "the swap's commit answered with an error ({}), yet the server shows it made",
                            query(&e)
                        ));
                        break;
                    }
                    let state = match &found {
                        Some(_) if has(scratch) && has(db) => "it was rolled back".to_string(),
                        Some(found) => format!(
                            "of {}, the server now has {}: check by hand",
                            names.iter().flatten().copied().collect::<Vec<_>>().join(", "),
                            if found.is_empty() { "none".into() } else { found.join(", ") }
                        ),
                        None => "the server cannot be asked what it did: check by hand which databases exist".into(),
                    };
                    let known = found.is_some() && has(scratch) && has(db);
                    return Err((
                        StepFailure::new(format!("the swap failed ({}); {state}", query(&e))),
                        known,
                    ));
                }
            }
        }
        if terminated > 0 {
            evidence.push(format!(
                "terminated {terminated} session(s) on {db} right before the swap (terminate_connections)"
            ));
        }
        let Some(previous) = previous else {
            evidence.push(format!("{db} did not exist: {scratch} was renamed to {db}"));
            return Ok(Swapped {
                evidence,
                previous: String::new(),
            });
        };
        evidence.push(format!(
            "swapped in one transaction: {db} renamed to {previous}, {scratch} renamed to {db}"
        ));
        // The commit's answer may have been lost with the connection: the retention needs one.
        let retaining = if client.is_closed() {
            self.admin().await.ok()
        } else {
            Some(client)
        };
        let (notes, dropped) = match &retaining {
            Some(client) => retain(client, db, step.keep_previous, &query).await,
            None => (
                vec!["previous databases not pruned: no connection after the swap".into()],
                Vec::new(),
            ),
        };
        evidence.extend(notes);
        if dropped.contains(&previous) {
            return Ok(Swapped {
                evidence,
                previous: String::new(),
            });
        }
        evidence.push(format!(
            "to roll back: ALTER DATABASE {} RENAME TO {}; ALTER DATABASE {} RENAME TO {};",
            quote_ident(db),
            quote_ident(&names::undone_name(db, &stamp)),
            quote_ident(&previous),
            quote_ident(db)
        ));
        Ok(Swapped { evidence, previous })
    }
}

/// The scratch database of this attempt: dropped when the restore fails, is cancelled, or
/// times out (the step's future dropped).
struct Scratch {
    maintenance: Target,
    name: String,
    force: bool,
    armed: bool,
}

impl Scratch {
    /// Drops it and completes the failure's message with what became of target and scratch;
    /// `untouched` is the target when it is known to be as it was.
    async fn fail(
        &mut self,
        mut failure: StepFailure,
        untouched: Option<&str>,
        evidence: Vec<String>,
    ) -> StepFailure {
        self.armed = false;
        let dropped = match self.maintenance.connect(CONNECT_TIMEOUT).await {
            Ok(client) => drop_database(&client, &self.name, self.force)
                .await
                .map_err(|e| self.maintenance.error(&e)),
            Err(e) => Err(e),
        };
        let target = untouched
            .map(|db| format!("{db} was not touched and "))
            .unwrap_or_default();
        let state = match dropped {
            Ok(()) => format!("{target}the scratch database {} was dropped", self.name),
            Err(e) => format!(
                "{target}the scratch database {} could not be dropped ({e}): the next attempt of this step drops it, or DROP DATABASE {};",
                self.name,
                quote_ident(&self.name)
            ),
        };
        if failure.cancelled {
            failure.evidence.push(state);
        } else {
            failure.message = format!("{}; {state}", failure.message);
        }
        failure.evidence.splice(0..0, evidence);
        failure
    }
}

impl Drop for Scratch {
    /// The step's future was dropped (its timeout) with the scratch database still there:
    /// it is dropped before the step is over, the worker thread waiting for it.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (maintenance, name, force) = (self.maintenance.clone(), self.name.clone(), self.force);
        let dropping = async move {
            if let Ok(client) = maintenance.connect(CONNECT_TIMEOUT).await {
                let _ = drop_database(&client, &name, force).await;
            }
        };
        let dropping = tokio::time::timeout(2 * CONNECT_TIMEOUT, dropping);
        if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            tokio::task::block_in_place(|| runtime.block_on(dropping)).ok();
        } else {
            runtime.spawn(dropping);
        }
    }
}
