//! The clock a run keeps its own time by: journal records, approval deadlines, time elapsed
//! against the RTO. It is the system clock, shifted by `DRILLBOOK_CLOCK_OFFSET` when that is set
//! (`90s`, `-5m`), so a test or a rehearsal can be "two minutes later" — past an approval's
//! deadline, say — without waiting for it. Steps keep the system clock: backup names and the
//! times they compare with object stores belong to the outside world.

use std::sync::OnceLock;

use jiff::{SignedDuration, Timestamp};

use crate::duration::Duration;

pub const OFFSET_VAR: &str = "DRILLBOOK_CLOCK_OFFSET";

/// Now, as runs record it.
pub fn now() -> Timestamp {
    let now = Timestamp::now();
    match offset() {
        Ok(offset) if !offset.is_zero() => now.checked_add(offset).unwrap_or(now),
        _ => now,
    }
}

/// The shift `DRILLBOOK_CLOCK_OFFSET` asks for (zero when unset), or why it cannot be read.
pub fn offset() -> Result<SignedDuration, String> {
    static OFFSET: OnceLock<Result<SignedDuration, String>> = OnceLock::new();
    OFFSET
        .get_or_init(|| match std::env::var(OFFSET_VAR) {
            Ok(text) => parse(&text).map_err(|e| format!("{OFFSET_VAR}: {e}")),
            Err(_) => Ok(SignedDuration::ZERO),
        })
        .clone()
}

fn parse(text: &str) -> Result<SignedDuration, String> {
    let text = text.trim();
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let shift = Duration::parse(magnitude)?.signed();
    Ok(if negative { -shift } else { shift })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_a_signed_duration() {
        assert_eq!(parse("90s"), Ok(SignedDuration::from_secs(90)));
        assert_eq!(parse("+2m"), Ok(SignedDuration::from_secs(120)));
        assert_eq!(parse("-1h"), Ok(SignedDuration::from_secs(-3600)));
        assert!(parse("soon").is_err());
        assert!(parse("90").is_err());
    }
}
