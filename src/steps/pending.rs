//! What a step is writing into a store before a manifest vouches for it, recorded in the
//! run's directory (`pending/<step>`). An upload that completed is a whole object in the
//! store; if the step dies before it writes that object's manifest (a kill, a crash, a
//! failed check), the object is incomplete by definition and nothing else will ever remove
//! it. The step's next attempt — the re-run `resume` asks about — reads the record first and
//! removes the object its earlier attempt left without a manifest, so the store holds only
//! complete artifacts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{StepContext, StepFailure};
use crate::connect::store::Store;

/// Under the run's directory.
const DIR: &str = "pending";

/// One object being written, until its manifest is.
#[derive(Serialize, Deserialize)]
struct Record {
    /// The store's URL as the step rendered it.
    store: String,
    key: String,
    manifest: String,
}

/// The record of an upload in flight, until [`Pending::settle`] says how it ended.
pub(crate) struct Pending {
    path: PathBuf,
    record: Record,
}

fn path_of(ctx: &StepContext<'_>) -> PathBuf {
    ctx.run_dir.join(DIR).join(ctx.id)
}

impl Pending {
    /// Removes what an earlier attempt of this step left: the object it recorded, when
    /// `store` holds it without its manifest. Describes what it did, for the evidence.
    pub(crate) async fn clear(
        ctx: &StepContext<'_>,
        store: &Store,
    ) -> Result<Vec<String>, StepFailure> {
        let path = path_of(ctx);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StepFailure::new(format!("{}: {e}", path.display()))),
        };
        let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
            // Torn by a crash while it was being written: the upload had not started.
            remove(&path).await?;
            return Ok(Vec::new());
        };
        let mut said = Vec::new();
        if record.store != store.url() {
            said.push(format!(
                "an earlier attempt of this step was writing {} in {}, not this attempt's \
                 store: left as it is (without a manifest it is never chosen as a backup)",
                record.key, record.store
            ));
        } else if store
            .head(&record.manifest)
            .await
            .map_err(StepFailure::of)?
            .is_none()
            && store
                .head(&record.key)
                .await
                .map_err(StepFailure::of)?
                .is_some()
        {
            store.delete(&record.key).await.map_err(StepFailure::of)?;
            said.push(format!(
                "removed {}, which an earlier attempt of this step stored without its manifest",
                record.key
            ));
        }
        remove(&path).await?;
        Ok(said)
    }

    /// Records, durably, that this step is about to write `key` into `store`, vouched for
    /// by `manifest` once written.
    pub(crate) async fn record(
        ctx: &StepContext<'_>,
        store: &Store,
        key: &str,
        manifest: &str,
    ) -> Result<Pending, StepFailure> {
        let path = path_of(ctx);
        let record = Record {
            store: store.url().to_owned(),
            key: key.to_owned(),
            manifest: manifest.to_owned(),
        };
        let bytes = serde_json::to_vec(&record).expect("a record serializes");
        let written = path.clone();
        tokio::task::spawn_blocking(move || write_durably(&written, &bytes))
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?
            .map_err(|e| StepFailure::new(format!("{}: {e}", path.display())))?;
        Ok(Pending { path, record })
    }

    /// How the work after the upload ended (`vouched`: the checks and the manifest's write):
    /// on success the object is complete and stays, and the record goes; on failure the
    /// object goes (`discard`), said in the failure's evidence.
    pub(crate) async fn settle<T>(
        self,
        store: &Store,
        vouched: Result<T, StepFailure>,
    ) -> Result<T, StepFailure> {
        match vouched {
            Ok(done) => {
                remove(&self.path).await?;
                Ok(done)
            }
            Err(mut failure) => {
                failure.evidence.push(self.discard(store).await);
                Err(failure)
            }
        }
    }

    /// This attempt fails after its upload completed: removes the object and any manifest a
    /// failed write may still have left (best effort: the next attempt's [`Pending::clear`]
    /// tries again) and says what became of them.
    async fn discard(self, store: &Store) -> String {
        let deleted = match store.delete(&self.record.manifest).await {
            Ok(()) => store.delete(&self.record.key).await,
            Err(error) => Err(error),
        };
        match deleted {
            Ok(()) => {
                let _ = remove(&self.path).await;
                format!("removed {}: no manifest vouches for it", self.record.key)
            }
            Err(error) => format!(
                "{} stays in the store without a manifest ({error}); the step's next attempt \
                 removes it",
                self.record.key
            ),
        }
    }
}

async fn remove(path: &Path) -> Result<(), StepFailure> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StepFailure::new(format!("{}: {e}", path.display()))),
    }
}

/// The file and its directory entry on disk before the upload it announces starts.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let directory = path.parent().expect("under the run directory");
    std::fs::create_dir_all(directory)?;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::File::open(directory)?.sync_all()
}
