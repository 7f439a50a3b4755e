//! The one way events leave the runner: masked, appended to the journal and flushed to disk,
//! then shown to the observers (progress display, log). Masking here means no step or message
//! can forget to. It masks the text meant for people — parameters, outputs, errors, evidence,
//! prompts, reasons, messages — and never a typed field the journal reads back (a pid, a mode,
//! a run id, who decided), which a secret that happens to read `1` or `drill` would corrupt.

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

    fn mask(&self, mut event: Event) -> Result<Event, String> {
        let text = |text: &mut String| *text = mask_text(&self.masker, text);
        let json = |value: &mut serde_json::Value| {
            self.masker.mask_json(value);
            crate::secrets::mask_url_passwords_json(value);
        };
        match &mut event {
            Event::RunStarted {
                vars,
                steps,
                run_id: _,
                playbook: _,
                file: _,
                playbook_hash: _,
                mode: _,
                dry_run: _,
                declared_at: _,
                operator: _,
                pid: _,
                rto: _,
                rpo: _,
                secrets_file: _,
                max_parallel: _,
            } => {
                vars.values_mut().for_each(text);
                steps.iter_mut().for_each(|step| mask_planned(step, &text));
            }
            Event::RunResumed { steps, .. } => {
                for step in steps.iter_mut().flatten() {
                    mask_planned(step, &text);
                }
            }
            Event::StepStarted { params, .. } => json(params),
            Event::StepFinished {
                outputs,
                error,
                evidence,
                ..
            } => {
                outputs.values_mut().for_each(json);
                error.iter_mut().for_each(text);
                evidence.iter_mut().for_each(text);
            }
            Event::StepSkipped { reason, .. } => text(reason),
            Event::RetryScheduled { .. } | Event::Confirmed { .. } | Event::Confirming { .. } => {}
            Event::ApprovalRequested { prompt, .. } => text(prompt),
            Event::ApprovalDecided { reason, .. } => reason.iter_mut().for_each(text),
            Event::Interrupted { reason } => text(reason),
            Event::Aborted { reason, .. } => reason.iter_mut().for_each(text),
            Event::NotificationRepeated {
                error, to, message, ..
            } => {
                error.iter_mut().for_each(text);
                to.iter_mut().for_each(text);
                message.iter_mut().for_each(text);
            }
            Event::PostMortemNotes {
                root_cause,
                remediation,
                ..
            } => {
                text(root_cause);
                remediation.iter_mut().for_each(text);
            }
            Event::RunFinished { .. } => {}
            Event::RunProcess { .. } => {}
            // Names of people and steps, as in `approval_decided`.
            Event::PreApproved { .. } => {}
            Event::ChildStarted { program, .. } | Event::ChildStopped { program, .. } => {
                text(program)
            }
        }
        Ok(event)
    }
}

/// Free text with every secret the masker knows, and any URL's password, masked.
fn mask_text(masker: &Masker, text: &str) -> String {
    crate::secrets::mask_url_passwords(&masker.mask(text)).into_owned()
}

fn mask_planned(step: &mut crate::event::PlannedStep, text: &impl Fn(&mut String)) {
    text(&mut step.summary);
    step.description.iter_mut().for_each(text);
}
