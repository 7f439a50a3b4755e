//! The catalog queries and statements of the swap: who the role is and what it may do,
//! sessions, the databases drillbook made (found by name and mark), the renames, drops and
//! the retention, and the restored copy's counts against the manifest.

use tokio_postgres::Client;

use super::CONNECT_TIMEOUT;
use super::carry::literal;
use super::names::{self, Found, Mark, PreviousMark};
use crate::connect::pg_tools::Version;
use crate::connect::postgres::{Target, quote_ident};
use crate::manifest::Manifest;
use crate::steps::StepFailure;

/// Connects to the server's maintenance database: `postgres`, or `template1`.
pub(super) async fn maintenance(target: &Target) -> Result<(Target, Client), StepFailure> {
    let mut first = None;
    for name in ["postgres", "template1"] {
        if name == target.database() {
            continue;
        }
        let candidate = target.with_database(name);
        match candidate.connect(CONNECT_TIMEOUT).await {
            Ok(client) => return Ok((candidate, client)),
            Err(error) => {
                first.get_or_insert(error);
            }
        }
    }
    Err(StepFailure::new(format!(
        "{}: the swap creates and renames databases from the server's maintenance database (postgres or template1); or set `in_place: true`",
        first.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// The role drillbook connects as, and what it may do with the target.
pub(super) struct Privileges {
    pub(super) role: String,
    superuser: bool,
    createdb: bool,
    /// The target's owner, when it exists.
    owner: Option<String>,
    /// Has the owner's privileges (renames it) and may become the owner (gives it away).
    owns: bool,
}

pub(super) async fn privileges(
    client: &Client,
    db: &str,
) -> Result<Privileges, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_user::text, r.rolsuper, r.rolcreatedb, pg_get_userbyid(d.datdba)::text,
                    coalesce(pg_has_role(current_user, d.datdba, 'USAGE')
                         AND pg_has_role(current_user, d.datdba, 'MEMBER'), false)
               FROM pg_roles r LEFT JOIN pg_database d ON d.datname = $1
              WHERE r.rolname = current_user",
            &[&db],
        )
        .await?;
    Ok(Privileges {
        role: row.get(0),
        superuser: row.get(1),
        createdb: row.get(2),
        owner: row.get(3),
        owns: row.get(4),
    })
}

impl Privileges {
    /// What the role lacks for the swap, worded with the grants that give it.
    pub(super) fn missing(&self, db: &str) -> Option<String> {
        let role = quote_ident(&self.role);
        let mut lacks = Vec::new();
        if !(self.superuser || self.createdb) {
            lacks.push(format!("CREATEDB (ALTER ROLE {role} CREATEDB)"));
        }
        if let Some(owner) = self.owner.as_deref().filter(|_| !self.owns) {
            lacks.push(format!(
                "the ownership of {db}, which {owner} owns (GRANT {} TO {role})",
                quote_ident(owner)
            ));
        }
        (!lacks.is_empty()).then(|| {
            format!(
                "restoring into {db} means creating a scratch database and renaming it into place, and the role {} may not: it lacks {}; nothing was changed. Grant it, or set `in_place: true` to pg_restore into {db} itself (a failed restore then leaves it partly restored)",
                self.role,
                lacks.join(" and ")
            )
        })
    }
}

/// The sessions on `db` but this one, as `pid 123: app from 10.0.0.5, psql` (the address
/// only where the role may see it).
pub(super) async fn sessions(
    client: &Client,
    db: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT pid, coalesce(usename::text, '?'), host(client_addr),
                    coalesce(nullif(application_name, ''), backend_type, '?')
               FROM pg_stat_activity
              WHERE datname = $1 AND pid <> pg_backend_pid()
                AND backend_type IS DISTINCT FROM 'autovacuum worker'
              ORDER BY pid",
            &[&db],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (pid, user, from, application): (i32, String, Option<String>, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let from = from
                .map(|address| format!(" from {address}"))
                .unwrap_or_default();
            format!("pid {pid}: {user}{from}, {application}")
        })
        .collect())
}

/// `app has 2 open session(s) (…): the swap renames …`.
pub(super) fn open_sessions(db: &str, open: &[String]) -> String {
    let mut shown = open.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
    if open.len() > 3 {
        shown.push_str(&format!("; and {} more", open.len() - 3));
    }
    format!(
        "{db} has {} open session(s) ({shown}): the swap renames the database, which PostgreSQL allows only with nobody connected to it;",
        open.len()
    )
}

/// Ends the sessions on `db` (waiting up to 5 s for each to go, where the server can);
/// returns how many were ended.
pub(super) async fn terminate(
    client: &Client,
    db: &str,
    version: Version,
) -> Result<usize, tokio_postgres::Error> {
    let call = if version.major >= 14 {
        "pg_terminate_backend(pid, 5000)"
    } else {
        "pg_terminate_backend(pid)"
    };
    let rows = client
        .query(
            &format!(
                "SELECT {call} FROM pg_stat_activity
                  WHERE datname = $1 AND pid <> pg_backend_pid()
                    AND backend_type IS DISTINCT FROM 'autovacuum worker'"
            ),
            &[&db],
        )
        .await?;
    Ok(rows.iter().filter(|r| r.get::<_, bool>(0)).count())
}

/// The renames (and the comments that say what each database is), all or nothing.
pub(super) async fn transaction(
    client: &mut Client,
    db: &str,
    scratch: &str,
    previous: Option<(&str, &PreviousMark)>,
    comment: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    if let Some((previous, mark)) = previous {
        transaction
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}; COMMENT ON DATABASE {} IS {}",
                quote_ident(db),
                quote_ident(previous),
                quote_ident(previous),
                literal(&mark.comment())
            ))
            .await?;
    }
    transaction
        .batch_execute(&format!(
            "ALTER DATABASE {} RENAME TO {}; COMMENT ON DATABASE {} IS {}",
            quote_ident(scratch),
            quote_ident(db),
            quote_ident(db),
            comment.map_or("NULL".into(), literal)
        ))
        .await?;
    transaction.commit().await
}

/// Drops a database this restore made; `force` (PostgreSQL 13+) ends its sessions first
/// (a killed pg_restore's backend may linger a moment).
pub(super) async fn drop_database(
    client: &Client,
    name: &str,
    force: bool,
) -> Result<(), tokio_postgres::Error> {
    if !force {
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .await?;
    }
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {}{}",
            quote_ident(name),
            if force { " WITH (FORCE)" } else { "" }
        ))
        .await
}

/// Every database with its comment and whether the current role owns it.
pub(super) async fn databases(client: &Client) -> Result<Vec<Found>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT datname::text, shobj_description(oid, 'pg_database'),
                    datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user)
               FROM pg_database",
            &[],
        )
        .await?
        .iter()
        .map(|r| Found {
            name: r.get(0),
            comment: r.get(1),
            owned: r.get(2),
        })
        .collect())
}

/// The previous databases of `db` drillbook kept (name pattern and mark), newest first.
pub(super) async fn kept(
    client: &Client,
    db: &str,
) -> Result<Vec<(String, PreviousMark)>, tokio_postgres::Error> {
    let prefix = names::previous_prefix(db);
    let mut kept: Vec<(String, PreviousMark)> = databases(client)
        .await?
        .into_iter()
        .filter(|found| found.name.starts_with(&prefix))
        .filter_map(|found| {
            PreviousMark::parse(found.comment.as_deref())
                .filter(|mark| mark.target == db)
                .map(|mark| (found.name, mark))
        })
        .collect();
    kept.sort_by(|a, b| (b.1.replaced_at, &b.0).cmp(&(a.1.replaced_at, &a.0)));
    Ok(kept)
}

/// `<db>_before_<stamp>`, or with `_2`, `_3` … when a swap in the same second took it.
pub(super) async fn free_name(
    client: &Client,
    db: &str,
    stamp: &str,
) -> Result<String, tokio_postgres::Error> {
    for n in 1.. {
        let name = names::previous_name(db, stamp, n);
        if existing(client, &[Some(&name)]).await?.is_empty() {
            return Ok(name);
        }
    }
    unreachable!("some suffix is free")
}

/// Which of `names` exist.
pub(super) async fn existing(
    client: &Client,
    names: &[Option<&str>],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let names: Vec<&str> = names.iter().flatten().copied().collect();
    Ok(client
        .query(
            "SELECT datname::text FROM pg_database WHERE datname = ANY($1) ORDER BY 1",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Drops the previous databases of `db` beyond the `keep` newest; a database somebody is
/// connected to is kept (never their sessions ended). Returns the notes and what was dropped.
pub(super) async fn retain(
    client: &Client,
    db: &str,
    keep: u32,
    query: &(dyn Fn(&tokio_postgres::Error) -> String + Sync),
) -> (Vec<String>, Vec<String>) {
    let mut notes = Vec::new();
    let mut dropped = Vec::new();
    let kept = match kept(client, db).await {
        Ok(kept) => kept,
        Err(e) => {
            return (
                vec![format!("previous databases not pruned: {}", query(&e))],
                dropped,
            );
        }
    };
    for (name, _) in kept.into_iter().skip(keep as usize) {
        match client
            .batch_execute(&format!("DROP DATABASE {}", quote_ident(&name)))
            .await
        {
            Ok(()) => dropped.push(name),
            Err(e) => notes.push(format!(
                "kept {name} although keep_previous is {keep}: {}",
                query(&e)
            )),
        }
    }
    if !dropped.is_empty() {
        notes.push(format!(
            "dropped {} previous database(s) of {db} beyond keep_previous: {keep}: {}",
            dropped.len(),
            dropped.join(", ")
        ));
    }
    (notes, dropped)
}

/// Every table's rows and the large objects in the restored copy, against the manifest.
pub(super) async fn counts(into: &Target, manifest: &Manifest) -> Result<String, StepFailure> {
    let client = into
        .connect(CONNECT_TIMEOUT)
        .await
        .map_err(StepFailure::of)?;
    let failed = |e: tokio_postgres::Error| {
        StepFailure::new(format!(
            "checking the restored copy against the manifest: {}",
            into.error(&e)
        ))
    };
    let mut wrong = Vec::new();
    let mut rows = 0u64;
    if !manifest.tables.is_empty() {
        let union = manifest
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                format!(
                    "SELECT {i}, count(*) FROM {}.{}",
                    quote_ident(&t.schema),
                    quote_ident(&t.table)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for row in client.query(&union, &[]).await.map_err(failed)? {
            let (i, found): (i32, i64) = (row.get(0), row.get(1));
            let found = found.max(0) as u64;
            rows += found;
            if let Some(table) = manifest.tables.get(i as usize).filter(|t| t.rows != found) {
                wrong.push(format!(
                    "{}.{} has {found} rows, the backup {}",
                    table.schema, table.table, table.rows
                ));
            }
        }
    }
    let objects: i64 = client
        .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
        .await
        .map_err(failed)?
        .get(0);
    if objects.max(0) as u64 != manifest.large_objects {
        wrong.push(format!(
            "{objects} large objects, the backup {}",
            manifest.large_objects
        ));
    }
    if !wrong.is_empty() {
        return Err(StepFailure::new(format!(
            "the restored copy differs from the backup's manifest: {}",
            wrong.join("; ")
        )));
    }
    Ok(format!(
        "checked against the manifest: {} tables, {rows} rows, {objects} large objects",
        manifest.tables.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_privileges_are_named_with_the_grants_that_give_them() {
        let privileges = Privileges {
            role: "app".into(),
            superuser: false,
            createdb: false,
            owner: Some("dba".into()),
            owns: false,
        };
        assert_eq!(
            privileges.missing("orders").as_deref(),
            Some(
                "restoring into orders means creating a scratch database and renaming it into place, and the role app may not: it lacks CREATEDB (ALTER ROLE \"app\" CREATEDB) and the ownership of orders, which dba owns (GRANT \"dba\" TO \"app\"); nothing was changed. Grant it, or set `in_place: true` to pg_restore into orders itself (a failed restore then leaves it partly restored)"
            )
        );
        let enough = Privileges {
            createdb: true,
            owns: true,
            ..privileges
        };
        assert_eq!(enough.missing("orders"), None);
        let new_target = Privileges {
            owner: None,
            owns: false,
            ..enough
        };
        assert_eq!(new_target.missing("orders"), None);
    }

    #[test]
    fn open_sessions_are_counted_and_a_few_shown() {
        let open: Vec<String> = (1..=5)
            .map(|i| format!("pid {i}: app from local, psql"))
            .collect();
        let text = open_sessions("orders", &open);
        assert!(
            text.starts_with("orders has 5 open session(s) (pid 1: app from local, psql; "),
            "{text}"
        );
        assert!(text.contains("; and 2 more)"), "{text}");
    }
}
