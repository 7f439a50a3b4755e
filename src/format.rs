//! How numbers, durations and times are written for people: one form everywhere (reports,
//! the terminal, history, prompts), so a duration reads the same in each.

use jiff::{SignedDuration, Timestamp};

/// The compact form used in every report and in the progress UI: `850ms`, `12.3s`, `4m05s`,
/// `1h02m`. Precision drops as durations grow because nobody reading a recovery report needs
/// the seconds of a two-hour run; digits are truncated, never rounded up, so `59.96s` does not
/// read as a minute.
pub fn format_duration(d: SignedDuration) -> String {
    let sign = if d.is_negative() && d.as_millis() != 0 {
        "-"
    } else {
        ""
    };
    let millis = d.as_millis().unsigned_abs();
    let body = if millis < 1_000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{}.{}s", millis / 1_000, millis % 1_000 / 100)
    } else if millis < 3_600_000 {
        let seconds = millis / 1_000;
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        let minutes = millis / 60_000;
        format!("{}h{:02}m", minutes / 60, minutes % 60)
    };
    format!("{sign}{body}")
}

/// A margin with its sign always shown, so "+4m05s" (to spare) and "-4m05s" (over) cannot be
/// confused.
pub fn format_margin(d: SignedDuration) -> String {
    if d.is_negative() {
        format_duration(d)
    } else {
        format!("+{}", format_duration(d))
    }
}

/// A timestamp as people read it in a report: UTC, to the second.
/// A time as backup keys carry it, `20261124T181500.123Z`: sortable, and safe in a file name.
pub fn key_time(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// The time in a key's last part, `…/20261124T181500.123Z<suffix>`.
pub fn time_in_key(key: &str, suffix: &str) -> Option<Timestamp> {
    let name = key.rsplit('/').next()?.strip_suffix(suffix)?;
    let name = name.strip_suffix('Z')?;
    let civil = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S%.f", name).ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
}

pub fn format_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The time of day only, unless `at` falls on another day than `reference` (a run approved
/// the next morning), so timelines stay narrow without becoming ambiguous.
pub fn format_clock(at: Timestamp, reference: Timestamp) -> String {
    let day = |t: Timestamp| t.strftime("%Y-%m-%d").to_string();
    if day(at) == day(reference) {
        at.strftime("%H:%M:%S").to_string()
    } else {
        at.strftime("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// The first 12 hex digits: enough to tell two versions of a playbook apart at a glance.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Bytes as lowercase hex, as SHA-256 digests are written in manifests and reports.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rows as left-aligned columns two spaces apart, each line starting with `indent` (trailing
/// spaces trimmed): the text tables of `runs` and `history`.
pub fn columns<const N: usize>(rows: &[[String; N]], indent: &str) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(indent);
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compact() {
        assert_eq!(format_duration(SignedDuration::from_millis(850)), "850ms");
        assert_eq!(
            format_duration(SignedDuration::from_millis(12_345)),
            "12.3s"
        );
        assert_eq!(
            format_duration(SignedDuration::from_millis(59_999)),
            "59.9s"
        );
        assert_eq!(format_duration(SignedDuration::from_secs(245)), "4m05s");
        assert_eq!(format_duration(SignedDuration::from_secs(3_720)), "1h02m");
        assert_eq!(format_duration(SignedDuration::from_secs(-245)), "-4m05s");
        assert_eq!(format_duration(SignedDuration::ZERO), "0ms");
        assert_eq!(format_margin(SignedDuration::from_secs(60)), "+1m00s");
        assert_eq!(format_margin(SignedDuration::from_secs(-60)), "-1m00s");
    }
}
