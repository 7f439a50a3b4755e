//! `manual`: instructions for a human, timed and attested.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Shows `instructions`, times the human, and records who said "done".
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manual {
    /// What to do (a template; Markdown is fine).
    pub instructions: String,
}

pub const OUTPUTS: &[&str] = &["done_by", "done_at"];
/// A human may already have done half of it: ask before repeating.
pub const IDEMPOTENT: bool = false;

impl Manual {
    pub fn summary(&self) -> String {
        let first = self.instructions.lines().next().unwrap_or_default();
        format!("manual: {first}")
    }
}

impl Manual {
    /// The gate has been passed by the time this runs: report who let it through.
    pub(crate) fn run(
        &self,
        ctx: &super::StepContext<'_>,
    ) -> Result<super::Done, super::StepFailure> {
        Ok(super::decision_outputs(ctx, "done_by", "done_at"))
    }
}
