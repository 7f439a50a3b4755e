//! drillbook: disaster-recovery playbooks as code.
//!
//! The pipeline is visible in the modules: [`loader`] reads YAML into a positioned tree,
//! [`validate`] turns it into a [`model::Playbook`] (or every error at once), [`plan`] makes
//! it a DAG, [`engine`] runs it into a journal, [`state`] folds the journal back, and
//! [`report`] tells what happened. Each step kind lives in its own file under [`steps`].
//! ARCHITECTURE.md gives the layers and what each may import.

pub(crate) mod account;
pub mod chain;
pub mod checksums;
pub mod cli;
pub mod clock;
pub mod compress;
pub mod connect;
pub mod diagnostic;
pub mod due;
pub mod duration;
pub mod encryption;
pub mod engine;
pub mod event;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod format;
pub mod fuzzing;
pub mod history;
pub mod human;
pub mod iam;
pub mod inbox;
pub mod journal;
pub mod lease;
pub mod loader;
pub mod lock;
pub mod manifest;
pub mod measure;
pub mod model;
pub mod outcome;
pub mod plan;
pub mod predict;
pub mod progress;
pub mod projection;
pub mod report;
pub mod runbook;
pub mod runs;
pub mod schema;
pub mod secrets;
pub mod serve;
pub mod shared;
pub mod signing;
pub mod state;
pub mod steps;
pub mod target;
pub mod template;
pub mod ui;
pub mod validate;
pub mod wal;
