//! The one way events leave the runner: masked, appended to the journal and flushed to disk,
//! then shown to the observers (progress display, log). Masking here, on the whole event, means
//! no step or message can forget to.

use std::sync::{Arc, Mutex};

use crate::event::{Event, Record};
use crate::journal::Journal;
use crate::progress::Progress;
use crate::secrets::Masker;

use crate::human::Observer;

pub(crate) struct Emitter {
    journal: Mutex<Journal>,
    masker: Masker,
    observers: Vec<Arc<dyn Observer>>,
}

impl Emitter {
    pub(crate) fn new(journal: Journal, masker: Masker, observers: Vec<Arc<dyn Observer>>) -> Self {
        Emitter {
            journal: Mutex::new(journal),
            masker,
            observers,
        }
    }

    /// Records an event durably. An error means the journal can no longer be trusted to
    /// reflect what happened, and the run must stop.
    pub(crate) fn emit(&self, event: Event) -> Result<Record, String> {
        let event = self.mask(event)?;
        let record = {
            let mut journal = self
                .journal
                .lock()
                .map_err(|_| "the journal lock is poisoned".to_string())?;
            journal.append(event).map_err(|e| {
                format!("cannot write the journal {}: {e}", journal.path().display())
            })?
        };
        tracing::info!(target: "drillbook::journal", "{}", serde_json::to_string(&record).unwrap_or_default());
        for observer in &self.observers {
            observer.record(&record);
        }
        Ok(record)
    }

    pub(crate) fn progress(&self, step: &str, progress: Progress) {
        for observer in &self.observers {
            observer.progress(step, progress);
        }
    }

    pub(crate) fn finish(&self) {
        for observer in &self.observers {
            observer.finish();
        }
    }

    fn mask(&self, event: Event) -> Result<Event, String> {
        let mut value = serde_json::to_value(&event).map_err(|e| e.to_string())?;
        self.masker.mask_json(&mut value);
        crate::secrets::mask_url_passwords_json(&mut value);
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}
