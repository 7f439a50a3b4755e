//! Durations (`90s`, `30m`, `1h`, `2h30m`, `30d`) and sizes (`8MiB`) as playbooks write them.

use std::fmt;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A duration written with units. Bare numbers are refused: `timeout: 30` could mean
/// seconds or minutes, and in a recovery procedure that difference matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

impl Duration {
    pub fn parse(text: &str) -> Result<Duration, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("empty duration; expected e.g. 90s, 30m, 1h or 2h30m".into());
        }
        if trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "duration `{trimmed}` has no unit; write e.g. {trimmed}s, {trimmed}m or {trimmed}h"
            ));
        }
        let mut total: u64 = 0;
        let mut rest = trimmed;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!(
                    "`{trimmed}` is not a duration; expected a number and a unit, e.g. 90s, 30m, 1h or 2h30m"
                ));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("duration `{trimmed}` is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            let Some((_, millis)) = UNITS.iter().find(|(name, _)| *name == unit) else {
                return Err(if unit.is_empty() {
                    format!("duration `{trimmed}` ends without a unit; expected ms, s, m, h or d")
                } else {
                    format!(
                        "unknown unit `{unit}` in duration `{trimmed}`; expected ms, s, m, h or d"
                    )
                });
            };
            total = number
                .checked_mul(*millis)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| format!("duration `{trimmed}` is too large"))?;
            rest = &rest[unit_len..];
        }
        Ok(Duration(std::time::Duration::from_millis(total)))
    }

    /// As a signed duration, for arithmetic with times (margins, elapsed against objectives).
    pub fn signed(self) -> jiff::SignedDuration {
        // A std Duration beyond SignedDuration's ~292 billion years is not a real objective.
        jiff::SignedDuration::try_from(self.0).unwrap_or(jiff::SignedDuration::MAX)
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl fmt::Display for Duration {
    /// The shortest exact form: `2h30m`, `90s` stays `1m30s`, `500ms`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut millis = self.0.as_millis() as u64;
        if millis == 0 {
            return f.write_str("0s");
        }
        for (name, size) in UNITS.iter().rev() {
            if millis >= *size {
                write!(f, "{}{name}", millis / size)?;
                millis %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 90s, 30m, 1h or 2h30m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                Duration::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Duration::parse(&v.to_string()).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration with units: 500ms, 90s, 30m, 1h, 2h30m, 30d.",
            "examples": ["90s", "30m", "1h", "2h30m"]
        })
    }
}

/// A size in bytes, written `512KiB`, `8MiB`, `1GiB` (or decimal `MB`, `GB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let trimmed = text.trim();
        let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
        let unit = trimmed[digits..].trim();
        let number: u64 = trimmed[..digits]
            .parse()
            .map_err(|_| format!("`{trimmed}` is not a size; expected e.g. 8MiB or 512KiB"))?;
        if unit.is_empty() {
            return Err(format!(
                "size `{trimmed}` has no unit; write e.g. {number}MiB"
            ));
        }
        let (_, factor) = SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or_else(|| format!("unknown unit `{unit}` in size `{trimmed}`; expected B, KiB, MiB, GiB, KB, MB or GB"))?;
        number
            .checked_mul(*factor)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{trimmed}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (name, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A byte count for people: `512 B`, `12.4 MiB`, `1.50 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in UNITS {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if value >= 100.0 {
                format!("{value:.0} {name}")
            } else {
                format!("{value:.1} {name}")
            };
        }
    }
    format!("{bytes} B")
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ByteSize::parse(&text).map_err(de::Error::custom)
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+ ?(B|KiB|MiB|GiB|KB|MB|GB)$",
            "description": "A size: 512KiB, 8MiB, 1GiB.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        Duration::parse(text).unwrap().0.as_secs()
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("30m"), 1800);
        assert_eq!(secs("1h"), 3600);
        assert_eq!(secs("2h30m"), 9000);
        assert_eq!(secs("30d"), 30 * 86400);
        assert_eq!(Duration::parse("500ms").unwrap().0.as_millis(), 500);
    }

    #[test]
    fn refuses_what_is_ambiguous_or_wrong() {
        assert!(Duration::parse("30").unwrap_err().contains("has no unit"));
        assert!(
            Duration::parse("30x")
                .unwrap_err()
                .contains("unknown unit `x`")
        );
        assert!(
            Duration::parse("1h30")
                .unwrap_err()
                .contains("ends without a unit")
        );
        assert!(
            Duration::parse("soon")
                .unwrap_err()
                .contains("is not a duration")
        );
        assert!(Duration::parse("").is_err());
        assert!(Duration::parse("99999999999999999999d").is_err());
    }

    #[test]
    fn displays_in_canonical_form() {
        assert_eq!(Duration::parse("90s").unwrap().to_string(), "1m30s");
        assert_eq!(Duration::parse("150m").unwrap().to_string(), "2h30m");
        assert_eq!(Duration::parse("1500ms").unwrap().to_string(), "1s500ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("8MiB").unwrap().0, 8 << 20);
        assert_eq!(ByteSize::parse("5MB").unwrap().0, 5_000_000);
        assert!(ByteSize::parse("8").unwrap_err().contains("no unit"));
        assert_eq!(ByteSize(16 << 20).to_string(), "16MiB");
    }
}
