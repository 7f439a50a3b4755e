//! Where a point-in-time recovery stops, in the words a playbook uses: `latest`, a time
//! (`2026-12-05T10:00:00Z`), a duration before the incident's declared time or the run's start
//! (`1h ago`), `lsn 0/3000000` or `name <restore point>`; and the `recovery_target_*` setting
//! PostgreSQL is given for it.

use jiff::Timestamp;

use super::lsn::Lsn;
use crate::duration::Duration;

/// Where recovery stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The end of the archive.
    Latest,
    Time(Timestamp),
    Lsn(Lsn),
    Name(String),
}

/// What `recovery_target` says: `latest`, a time (`2026-12-05T10:00:00Z`), a duration before
/// the incident's declared time or the run's start (`1h ago`), `lsn 0/3000000` or
/// `name <restore point>`.
pub fn parse_target(text: &str, clock_start: Timestamp) -> Result<Target, String> {
    let text = text.trim();
    let expected = "expected `latest`, a time like 2026-12-05T10:00:00Z, a duration before the incident like `1h ago`, `lsn 0/3000000` or `name <restore point>`";
    if text == "latest" {
        return Ok(Target::Latest);
    }
    if let Some(duration) = text.strip_suffix(" ago") {
        let duration = Duration::parse(duration.trim()).map_err(|e| format!("`{text}`: {e}"))?;
        return clock_start
            .checked_sub(duration.as_std())
            .map(Target::Time)
            .map_err(|e| format!("`{text}`: {e}"));
    }
    if let Some(lsn) = text.strip_prefix("lsn ") {
        return Lsn::parse(lsn)
            .map(Target::Lsn)
            .ok_or_else(|| format!("`{lsn}` is not an LSN: expected one like 0/3000000"));
    }
    if let Some(name) = text.strip_prefix("name ") {
        return Ok(Target::Name(name.trim().to_owned()));
    }
    text.parse::<Timestamp>()
        .map(Target::Time)
        .map_err(|_| format!("recovery target `{text}`: {expected}"))
}

impl Target {
    /// The `recovery_target_*` setting it becomes (none for the end of the archive).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            Target::Latest => Vec::new(),
            // PostgreSQL's check of this setting takes a numeric offset, not `Z`.
            Target::Time(at) => vec![(
                "recovery_target_time",
                at.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            )],
            Target::Lsn(lsn) => vec![("recovery_target_lsn", lsn.to_string())],
            Target::Name(name) => vec![("recovery_target_name", name.clone())],
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Latest => "the end of the archive".into(),
            Target::Time(at) => format!("{at}"),
            Target::Lsn(lsn) => format!("LSN {lsn}"),
            Target::Name(name) => format!("the restore point `{name}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_documented() {
        let start: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        assert_eq!(parse_target("latest", start), Ok(Target::Latest));
        assert_eq!(
            parse_target("1h ago", start),
            Ok(Target::Time("2026-12-05T11:00:00Z".parse().unwrap()))
        );
        assert_eq!(
            parse_target("2026-12-05T10:30:00Z", start),
            Ok(Target::Time("2026-12-05T10:30:00Z".parse().unwrap()))
        );
        assert_eq!(
            parse_target("lsn 0/3000000", start),
            Ok(Target::Lsn(Lsn(0x3000000)))
        );
        assert_eq!(
            parse_target("name before_migration", start),
            Ok(Target::Name("before_migration".into()))
        );
        let error = parse_target("yesterday", start).unwrap_err();
        assert!(error.contains("expected `latest`"), "{error}");
        assert!(parse_target("lsn 3000000", start).is_err());
        assert!(parse_target("soon ago", start).is_err());
    }
}
