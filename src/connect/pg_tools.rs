//! Finding PostgreSQL's client and server programs (`pg_dump`, `pg_restore`, `initdb`,
//! `pg_ctl`…) and their versions. `pg_dump` refuses to dump a server newer than itself, so
//! drillbook picks a program at least as new as the server before anything starts, and says
//! which version to install when there is none.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where Debian and Ubuntu put each major version's programs.
const VERSIONED_DIRS: &str = "/usr/lib/postgresql";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor).cmp(&(other.major, other.minor))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A program and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub path: PathBuf,
    pub version: Version,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToolError {
    #[error(
        "`{program}` was not found on PATH or under {VERSIONED_DIRS}/<version>/bin: install the PostgreSQL client programs"
    )]
    Missing { program: String },
    #[error(
        "`{program}` {found} ({path}) is older than the server (PostgreSQL {needed}): install the PostgreSQL {needed} client programs"
    )]
    TooOld {
        program: String,
        found: Version,
        path: String,
        needed: u32,
    },
}

/// Reads the version out of `pg_dump --version` and friends:
/// `pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)`, `initdb (PostgreSQL) 17beta1`.
pub fn parse_version(text: &str) -> Option<Version> {
    let after = text.split(')').nth(1)?.trim_start();
    let number: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = number.split('.').filter(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some(Version { major, minor })
}

/// The version a program reports, or `None` when it cannot be run.
pub fn version_of(path: &Path) -> Option<Version> {
    let output = super::child::output_blocking(
        std::process::Command::new(path)
            .arg("--version")
            .stdin(std::process::Stdio::null()),
    )
    .ok()?;
    output
        .status
        .success()
        .then(|| parse_version(&String::from_utf8_lossy(&output.stdout)))
        .flatten()
}

/// Every copy of `program` there is: on PATH first, then the versioned directories. Each file
/// once (`/bin` is often `/usr/bin`), and without Debian's `pg_wrapper` when the versioned
/// directories have the real program: the wrapper is a Perl script that only picks one of
/// them, and running it to ask its version costs ~20 ms.
fn candidates(program: &str) -> Vec<PathBuf> {
    let found = every_copy(program);
    let mut seen = std::collections::HashSet::new();
    let real: Vec<PathBuf> = found
        .into_iter()
        .filter(|path| seen.insert(path.canonicalize().unwrap_or_else(|_| path.clone())))
        .collect();
    let versioned = real.iter().any(|p| p.starts_with(VERSIONED_DIRS));
    real.into_iter()
        .filter(|path| {
            !versioned
                || !path
                    .canonicalize()
                    .is_ok_and(|target| target.ends_with("pg_wrapper"))
        })
        .collect()
}

fn every_copy(program: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(program);
            if candidate.is_file() {
                found.push(candidate);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(VERSIONED_DIRS) {
        for entry in entries.flatten() {
            let candidate = entry.path().join("bin").join(program);
            if candidate.is_file() {
                found.push(candidate);
            }
        }
    }
    found
}

/// The newest `program` there is, refusing one older than the server's major version.
/// Newer is fine: `pg_dump` and `pg_restore` handle older servers and archives.
pub fn find(program: &str, server_major: Option<u32>) -> Result<Tool, ToolError> {
    let tools = candidates(program)
        .into_iter()
        .filter_map(|path| version_of(&path).map(|version| Tool { path, version }));
    pick(program, tools, server_major)
}

fn pick(
    program: &str,
    tools: impl Iterator<Item = Tool>,
    server_major: Option<u32>,
) -> Result<Tool, ToolError> {
    let newest = tools.max_by(|a, b| a.version.cmp(&b.version));
    match (newest, server_major) {
        (None, _) => Err(ToolError::Missing {
            program: program.to_string(),
        }),
        (Some(tool), Some(needed)) if tool.version.major < needed => Err(ToolError::TooOld {
            program: program.to_string(),
            found: tool.version,
            path: tool.path.display().to_string(),
            needed,
        }),
        (Some(tool), _) => Ok(tool),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_what_the_programs_print() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)\n"),
            Some(Version {
                major: 15,
                minor: 19
            })
        );
        assert_eq!(
            parse_version("initdb (PostgreSQL) 17beta1"),
            Some(Version {
                major: 17,
                minor: 0
            })
        );
        assert_eq!(
            parse_version("pg_restore (PostgreSQL) 9.6.24"),
            Some(Version { major: 9, minor: 6 })
        );
        assert_eq!(parse_version("bash: pg_dump: not found"), None);
    }

    fn tool(path: &str, major: u32, minor: u32) -> Tool {
        Tool {
            path: path.into(),
            version: Version { major, minor },
        }
    }

    #[test]
    fn the_newest_copy_wins_and_an_old_one_is_refused_with_the_version_needed() {
        let tools = || vec![tool("/usr/bin/pg_dump", 14, 2), tool("/opt/pg_dump", 16, 1)];
        assert_eq!(
            pick("pg_dump", tools().into_iter(), Some(15))
                .expect("found")
                .path,
            PathBuf::from("/opt/pg_dump")
        );
        let error = pick(
            "pg_dump",
            vec![tool("/usr/bin/pg_dump", 14, 2)].into_iter(),
            Some(16),
        )
        .expect_err("too old");
        assert_eq!(
            error.to_string(),
            "`pg_dump` 14.2 (/usr/bin/pg_dump) is older than the server (PostgreSQL 16): install the PostgreSQL 16 client programs"
        );
        assert!(matches!(
            pick("pg_dump", std::iter::empty(), None),
            Err(ToolError::Missing { .. })
        ));
    }

    /// Against the programs on this machine (DESIGN.md: PostgreSQL's programs are installed
    /// where tests run).
    #[test]
    fn finds_this_machines_programs() {
        let dump = find("pg_dump", None).expect("pg_dump");
        assert!(dump.version.major >= 10, "{dump:?}");
        let initdb = find("initdb", Some(dump.version.major)).expect("initdb");
        assert!(initdb.path.starts_with(VERSIONED_DIRS) || initdb.path.is_file());
        let error = find("pg_dump", Some(dump.version.major + 1)).expect_err("too old");
        assert!(matches!(error, ToolError::TooOld { .. }), "{error}");
    }
}
