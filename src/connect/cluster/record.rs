//! `cluster.json`: what another drillbook process reads to find a cluster, written atomically.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterError, io_error};

/// The record another process reads to find the cluster.
const RECORD: &str = "cluster.json";

/// What `cluster.json` holds. `data` and `pid` are for humans and other tools: drillbook
/// itself trusts `<dir>/data` and `data/postmaster.pid`, which stay right if `base` moves.
#[derive(Serialize, Deserialize)]
struct Record {
    port: u16,
    superuser: String,
    data: PathBuf,
    pid: Option<u32>,
    bin_dir: PathBuf,
    version: String,
}

impl Cluster {
    pub(super) fn read(dir: &Path) -> Option<Cluster> {
        let path = dir.join(RECORD);
        let text = fs::read_to_string(&path).ok()?;
        match serde_json::from_str::<Record>(&text) {
            Ok(record) => Some(Cluster {
                // Through the link, when the cluster lives outside `base`.
                dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
                port: record.port,
                superuser: record.superuser,
                bin_dir: record.bin_dir,
                version: record.version,
            }),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "unreadable cluster record; skipped");
                None
            }
        }
    }

    /// Written atomically: a reader never sees half a record.
    pub(super) fn write_record(&self, pid: Option<u32>) -> Result<(), ClusterError> {
        let record = Record {
            port: self.port,
            superuser: self.superuser.clone(),
            data: self.data(),
            pid,
            bin_dir: self.bin_dir.clone(),
            version: self.version.clone(),
        };
        let path = self.dir.join(RECORD);
        let temporary = self.dir.join(format!("{RECORD}.new"));
        let text = serde_json::to_string_pretty(&record).map_err(io::Error::other);
        text.and_then(|text| fs::write(&temporary, text + "\n"))
            .map_err(io_error("write", &temporary))?;
        fs::rename(&temporary, &path).map_err(io_error("write", &path))
    }
}
