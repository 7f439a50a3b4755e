//! A human decision as the journal keeps it — who (the declared name and the OS account),
//! when, why — and how its SSH signature stands when it has one.

use jiff::Timestamp;

use super::StepState;
use crate::event::Ask;

#[derive(Clone, Debug)]
pub struct Decision {
    pub ask: Ask,
    pub approved: bool,
    pub by: String,
    pub at: Timestamp,
    pub reason: Option<String>,
    pub pre_approved: bool,
    /// The OS account and host it came from.
    pub account: Option<crate::event::OsAccount>,
    /// The decider's SSH signature over it, and when the question it answers was asked (part
    /// of what is signed).
    pub signature: Option<String>,
    pub asked_at: Option<Timestamp>,
}

impl Decision {
    /// What the decision's signature says, checked now against the decider's key on record
    /// (the playbook's `signers` when the question was asked) or else the key it carries:
    /// `None` when unsigned, else the key's fingerprint or why it does not hold.
    pub fn signature_check(
        &self,
        run_id: &str,
        step: &StepState,
    ) -> Option<Result<String, String>> {
        let armored = self.signature.as_deref()?;
        let asked_at = self.asked_at.map(|at| at.to_string()).unwrap_or_default();
        let decision = crate::signing::Decision {
            run_id,
            step: &step.id,
            ask: self.ask.name(),
            asked_at: &asked_at,
            approved: self.approved,
            by: &self.by,
            reason: self.reason.as_deref(),
        };
        // Against the decider's key on record when there is one, else the key it carries.
        let on_record = step
            .keys
            .iter()
            .find(|(name, _)| name.trim().eq_ignore_ascii_case(self.by.trim()));
        Some(match on_record {
            Some((_, key)) => crate::signing::verify(key, &decision, armored),
            None => crate::signing::verify_embedded(&decision, armored),
        })
    }

    /// Who, and how the signature stands when there is one: "bob (uid 4242@db-1), signed with
    /// SHA256:… (verified)".
    pub fn who_signed(&self, run_id: &str, step: &StepState) -> String {
        match self.signature_summary(run_id, step) {
            Some(signed) => format!("{}, {signed}", self.who()),
            None => self.who(),
        }
    }

    /// "signed with SHA256:… (verified)", or "SIGNATURE DOES NOT HOLD: …"; `None` unsigned.
    pub fn signature_summary(&self, run_id: &str, step: &StepState) -> Option<String> {
        Some(match self.signature_check(run_id, step)? {
            Ok(fingerprint) => format!("signed with {fingerprint} (verified)"),
            Err(why) => format!("SIGNATURE DOES NOT HOLD: {why}"),
        })
    }

    /// The declared name and, where recorded, the account: "bob (uid 4242@db-1)".
    pub fn who(&self) -> String {
        match &self.account {
            Some(account) => format!("{} ({account})", self.by),
            None => self.by.clone(),
        }
    }
}
