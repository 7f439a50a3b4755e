//! pgBackRest, for teams that already run it: its `info --output=json` (backups, the archive's
//! first and last segment), `restore` into an empty data directory, and one WAL segment
//! straight from the repository (`repo-ls`, `repo-get`). It runs
//! as the PostgreSQL server's OS user when drillbook runs as root, as pgBackRest expects (its
//! repository and lock files are that user's).
//!
//! pgBackRest's `info` gives no commit time: what the archive holds up to is read from its
//! newest segments with `pg_waldump`, as for drillbook's own archive (`wal::last_commit`).

use std::path::Path;
use std::process::Stdio;

use jiff::Timestamp;
use serde::Deserialize;

use super::cluster::server_user;

/// A stanza, and the configuration file that describes it.
#[derive(Clone, Debug)]
pub struct PgBackRest {
    pub stanza: String,
    /// `--config`; pgBackRest's default (`/etc/pgbackrest/pgbackrest.conf`) when `None`.
    pub config: Option<String>,
}

/// One backup in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    pub label: String,
    /// `full`, `diff` or `incr`.
    pub kind: String,
    pub started_at: Timestamp,
    /// It restores to no moment before this.
    pub stopped_at: Timestamp,
    /// The first and last WAL segment it needs.
    pub archive_start: String,
    pub archive_stop: String,
    /// The database's size, and what the backup holds in the repository.
    pub size: u64,
    pub repository_size: u64,
}

/// What `info` says about the stanza.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// Oldest first, as pgBackRest lists them.
    pub backups: Vec<Backup>,
    /// The archive's id (`15-1`) and its first and last segment, of the current database.
    pub archive_id: Option<String>,
    pub archive_min: Option<String>,
    pub archive_max: Option<String>,
    /// The PostgreSQL major version the stanza holds (`15`).
    pub major: Option<u32>,
}

impl PgBackRest {
    /// Run from `/`, a directory the server's user can enter.
    fn command(&self, args: &[&str]) -> Result<tokio::process::Command, String> {
        let mut command = std::process::Command::new("pgbackrest");
        if let Some(config) = &self.config {
            command.arg(format!("--config={config}"));
        }
        command
            .arg(format!("--stanza={}", self.stanza))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(user) = server_user().map_err(|e| e.to_string())? {
            use std::os::unix::process::CommandExt;
            command.uid(user.uid).gid(user.gid);
        }
        command.current_dir("/");
        Ok(tokio::process::Command::from(command))
    }

    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut command = self.command(args)?;
        let output = super::child::output(&mut command)
            .await
            .map_err(|e| format!("cannot run pgbackrest (is it installed?): {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "pgbackrest {} failed ({}): {}",
                args.first().copied().unwrap_or_default(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub async fn info(&self) -> Result<Info, String> {
        let text = self.run(&["info", "--output=json"]).await?;
        parse_info(&text, &self.stanza)
    }

    /// Restores backup `set` into `data` (empty, the server's user's), with pgBackRest's own
    /// `restore_command` and `recovery.signal` written; the recovery target is the caller's.
    pub async fn restore(&self, set: &str, data: &Path) -> Result<(), String> {
        let pg1 = format!("--pg1-path={}", data.display());
        let set = format!("--set={set}");
        self.run(&[&pg1, &set, "--type=default", "restore"])
            .await
            .map(|_| ())
    }

    /// `restore_command` for a cluster restored into `data`.
    pub fn restore_command(&self, data: &Path) -> String {
        let quote = |text: &str| format!("'{}'", text.replace('\'', "'\\''"));
        let mut command = String::from("pgbackrest");
        if let Some(config) = &self.config {
            command.push_str(&format!(" --config={}", quote(config)));
        }
        command.push_str(&format!(
            " --pg1-path={} --stanza={} archive-get %f \"%p\"",
            quote(&data.to_string_lossy()),
            quote(&self.stanza)
        ));
        command
    }

    /// Fetches one WAL segment of archive `archive_id` (`15-1`) into `path`, straight from the
    /// repository (`repo-ls`, `repo-get`, then the file's own compression undone with its
    /// program: gzip, zstd, lz4 or bzip2); `false` when the archive does not hold it.
    /// (`archive-get` would need a data directory with a `pg_control` to check against.)
    pub async fn fetch_segment(
        &self,
        archive_id: &str,
        segment: &str,
        path: &Path,
    ) -> Result<bool, String> {
        let directory = format!(
            "archive/{}/{archive_id}/{}",
            self.stanza,
            segment.get(..16).unwrap_or(segment)
        );
        let listing = self.run(&["repo-ls", &directory, "--output=json"]).await?;
        let listing: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&listing).unwrap_or_default();
        let prefix = format!("{segment}-");
        let Some(file) = listing.keys().find(|name| name.starts_with(&prefix)) else {
            return Ok(false);
        };
        let decompress = match file.rsplit('.').next() {
            Some("gz") => Some("gzip"),
            Some("zst") => Some("zstd"),
            Some("lz4") => Some("lz4"),
            Some("bz2") => Some("bzip2"),
            _ => None,
        };
        let mut get = self.command(&["repo-get", &format!("{directory}/{file}")])?;
        let mut getting =
            super::child::spawn(&mut get).map_err(|e| format!("cannot run pgbackrest: {e}"))?;
        let stdout = getting
            .stdout
            .take()
            .ok_or("pgbackrest repo-get: no output")?;
        let output = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let unpacked = match decompress {
            Some(program) => {
                let stdin: Stdio = stdout
                    .try_into()
                    .map_err(|e| format!("pgbackrest repo-get: {e}"))?;
                let mut command = tokio::process::Command::new(program);
                command
                    .arg("-dc")
                    .stdin(stdin)
                    .stdout(output)
                    .stderr(Stdio::null());
                let mut running = super::child::spawn(&mut command)
                    .map_err(|e| format!("cannot run {program}: {e}"))?;
                running
                    .wait()
                    .await
                    .map_err(|e| format!("{program}: {e}"))?
                    .success()
            }
            None => {
                let mut stdout = stdout;
                let mut output = tokio::fs::File::from_std(output);
                tokio::io::copy(&mut stdout, &mut output)
                    .await
                    .map_err(|e| format!("pgbackrest repo-get: {e}"))?;
                true
            }
        };
        let got = getting
            .wait()
            .await
            .map_err(|e| format!("pgbackrest repo-get: {e}"))?;
        if !got.success() || !unpacked {
            return Err(format!(
                "pgbackrest repo-get {directory}/{file} failed ({got}), or its compression could not be undone"
            ));
        }
        Ok(true)
    }
}

fn parse_info(text: &str, stanza: &str) -> Result<Info, String> {
    #[derive(Deserialize)]
    struct Stanza {
        name: String,
        #[serde(default)]
        backup: Vec<RawBackup>,
        #[serde(default)]
        archive: Vec<RawArchive>,
        #[serde(default)]
        db: Vec<RawDb>,
        status: RawStatus,
    }
    #[derive(Deserialize)]
    struct RawStatus {
        code: i64,
        message: String,
    }
    #[derive(Deserialize)]
    struct RawBackup {
        label: String,
        #[serde(rename = "type")]
        kind: String,
        timestamp: RawTimes,
        archive: RawRange,
        info: RawSizes,
        #[serde(default)]
        error: bool,
    }
    #[derive(Deserialize)]
    struct RawTimes {
        start: i64,
        stop: i64,
    }
    #[derive(Deserialize)]
    struct RawRange {
        start: Option<String>,
        stop: Option<String>,
    }
    #[derive(Deserialize)]
    struct RawSizes {
        size: u64,
        repository: RawRepository,
    }
    #[derive(Deserialize)]
    struct RawRepository {
        delta: u64,
    }
    #[derive(Deserialize)]
    struct RawArchive {
        id: Option<String>,
        min: Option<String>,
        max: Option<String>,
    }
    #[derive(Deserialize)]
    struct RawDb {
        version: String,
    }
    let stanzas: Vec<Stanza> = serde_json::from_str(text)
        .map_err(|e| format!("pgbackrest info: not the JSON expected: {e}"))?;
    let found = stanzas
        .into_iter()
        .find(|s| s.name == stanza)
        .ok_or_else(|| format!("pgbackrest knows no stanza `{stanza}`"))?;
    // 2: no backups yet, which the caller words.
    if found.status.code != 0 && found.status.code != 2 {
        return Err(format!(
            "pgbackrest says the stanza `{stanza}` is not usable: {}",
            found.status.message
        ));
    }
    let time = |seconds: i64| Timestamp::from_second(seconds).map_err(|e| e.to_string());
    let mut backups = Vec::new();
    for raw in found.backup.into_iter().filter(|b| !b.error) {
        backups.push(Backup {
            label: raw.label,
            kind: raw.kind,
            started_at: time(raw.timestamp.start)?,
            stopped_at: time(raw.timestamp.stop)?,
            archive_start: raw.archive.start.unwrap_or_default(),
            archive_stop: raw.archive.stop.unwrap_or_default(),
            size: raw.info.size,
            repository_size: raw.info.repository.delta,
        });
    }
    let archive = found.archive.last();
    Ok(Info {
        backups,
        archive_id: archive.and_then(|a| a.id.clone()),
        archive_min: archive.and_then(|a| a.min.clone()),
        archive_max: archive.and_then(|a| a.max.clone()),
        major: found
            .db
            .last()
            .and_then(|db| db.version.split('.').next()?.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_pgbackrest_2_45_prints() {
        let text = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000004","min":"000000010000000000000001"}],
          "backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000002"},"backrest":{"format":5,"version":"2.45"},
            "database":{"id":1,"repo-key":1},"error":false,"info":{"delta":23213860,"repository":{"delta":3062600,"size":3062600},"size":23213860},
            "label":"20261205-235436F","lsn":{"start":"0/2000028","stop":"0/2000100"},"prior":null,"reference":null,
            "timestamp":{"start":1796514876,"stop":1796514880},"type":"full"}],
          "cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7715972629342618093,"version":"15"}],"name":"drill",
          "repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],
          "status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;
        let info = parse_info(text, "drill").unwrap();
        assert_eq!(info.backups.len(), 1);
        let backup = &info.backups[0];
        assert_eq!(backup.label, "20261205-235436F");
        assert_eq!(
            backup.stopped_at,
            Timestamp::from_second(1796514880).unwrap()
        );
        assert_eq!(backup.archive_start, "000000010000000000000002");
        assert_eq!(backup.repository_size, 3062600);
        assert_eq!(
            info.archive_max.as_deref(),
            Some("000000010000000000000004")
        );
        assert_eq!(info.major, Some(15));
        assert!(
            parse_info(text, "other")
                .unwrap_err()
                .contains("no stanza `other`")
        );
        assert!(parse_info("not json", "drill").is_err());
    }
}
