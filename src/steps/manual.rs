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

impl super::StepKind for Manual {
    const NAME: &'static str = "manual";
    const OUTPUTS: &'static [&'static str] = &["done_by", "done_at"];
    /// A human may already have done half of it: ask before repeating.
    const IDEMPOTENT: bool = false;

    fn summary(&self) -> String {
        let first = self.instructions.lines().next().unwrap_or_default();
        format!("manual: {first}")
    }

    /// The gate has been passed by the time this runs: report who let it through.
    async fn run(&self, ctx: &super::StepContext<'_>) -> Result<super::Done, super::StepFailure> {
        Ok(super::decision_outputs(ctx, "done_by", "done_at"))
    }
}
