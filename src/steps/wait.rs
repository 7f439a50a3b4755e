//! `wait`: sleep for a while. For tests, benchmarks, and "give DNS a minute" in real playbooks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Done, StepContext, StepFailure};
use crate::duration::Duration;

/// Waits `duration`, then succeeds. Cancelled cleanly by Ctrl-C or the step's timeout.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// How long to wait (`0s` is a no-op step).
    pub duration: Duration,
}

impl super::StepKind for Wait {
    const NAME: &'static str = "wait";
    const OUTPUTS: &'static [&'static str] = &[];
    const IDEMPOTENT: bool = true;

    fn summary(&self) -> String {
        format!("wait {}", self.duration)
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        if !self.duration.0.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(self.duration.0) => {}
                _ = ctx.cancel.cancelled() => return Err(StepFailure::cancelled()),
            }
        }
        Ok(Done::default())
    }
}
