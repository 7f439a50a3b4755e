//! Posture (`posture:`): what the bucket itself promises about the backups in it — versioning
//! on, a lifecycle rule moving old objects to a cold class, noncurrent versions kept long
//! enough — and whether the backups in it match the declared retention: nothing older than
//! retention + slack (pruning runs), nothing missing within it (no gap longer than `every` +
//! slack).

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::connect::store::{ObjectInfo, Posture, Rule};
use crate::duration::Duration;
use crate::format::format_duration;
use crate::loader::node::Node;
use crate::manifest;

/// The storage classes that count as cold unless `cold_classes` says otherwise.
const COLD_CLASSES: &[&str] = &["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"];
const DAY: u64 = 86_400;

/// What the bucket must be set up to do. Each check is made only when asked for, but
/// `versioning` is on by default.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostureSpec {
    /// The bucket's versioning must be `Enabled` (default `true`; `false` skips the check).
    #[serde(default = "enabled")]
    pub versioning: bool,
    /// An enabled lifecycle rule covering the store's prefix must move objects to a cold class
    /// after at most this many days (`30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_after: Option<Duration>,
    /// The storage classes that count as cold (default GLACIER, DEEP_ARCHIVE, GLACIER_IR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_classes: Option<Vec<String>>,
    /// Noncurrent versions must be kept at least this long: no rule covering the prefix
    /// expires them sooner (`30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_kept: Option<Duration>,
    /// The backups' retention: no backup older than this plus `slack` (pruning runs), no
    /// lifecycle rule expiring backups sooner, and, with `every`, none missing within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
    /// How often a backup is made (`1d` for nightly): within the retention, no gap between
    /// backups (or since the last one) may be longer than this plus `slack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// Tolerance for the retention and gap checks (default: `every`, else one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<Duration>,
}

fn enabled() -> bool {
    true
}

impl PostureSpec {
    /// Whether any check needs the bucket's own settings (which a directory has not).
    pub(super) fn needs_bucket(&self) -> bool {
        self.versioning || self.cold_after.is_some() || self.noncurrent_kept.is_some()
    }

    pub(super) fn check(&self, node: &Node, out: &mut Vec<crate::diagnostic::Diagnostic>) {
        let node = node.get("posture").unwrap_or(node);
        for (key, value) in [
            ("cold_after", self.cold_after),
            ("noncurrent_kept", self.noncurrent_kept),
        ] {
            if let Some(value) = value
                && (value.0.as_secs() % DAY != 0 || value.0.is_zero())
            {
                out.push(crate::steps::at_key(
                    node,
                    key,
                    format!(
                        "`{key}` is a whole number of days (`30d`): S3 lifecycle rules count days"
                    ),
                ));
            }
        }
        if self.every.is_some() && self.retention.is_none() {
            out.push(crate::steps::at_key(
                node,
                "every",
                "`every` is checked within the `retention`: give `retention:` too",
            ));
        }
        if !self.needs_bucket() && self.retention.is_none() {
            out.push(crate::diagnostic::Diagnostic::new(
                node.pos,
                node.len.max(1),
                "`posture` checks nothing: keep `versioning` on, or give `cold_after`, `noncurrent_kept` or `retention`",
            ));
        }
    }

    /// The bucket's settings against what is asked: evidence lines, and the problems.
    pub(super) fn judge_bucket(&self, posture: &Posture, url: &str) -> (Vec<String>, Vec<String>) {
        let (mut evidence, mut problems) = (Vec::new(), Vec::new());
        if self.versioning {
            match posture.versioning.as_deref() {
                Some("Enabled") => evidence.push(format!("versioning of {url}: Enabled")),
                Some(other) => problems.push(format!(
                    "versioning of {url} is {other}, not Enabled: an overwritten or deleted backup cannot be recovered"
                )),
                None => problems.push(format!(
                    "versioning of {url} was never enabled: an overwritten or deleted backup cannot be recovered"
                )),
            }
        }
        let covering: Vec<&Rule> = posture
            .rules
            .iter()
            .filter(|rule| rule.covers(&posture.prefix))
            .collect();
        let rule_name = |rule: &Rule| {
            if rule.id.is_empty() {
                "a lifecycle rule".to_string()
            } else {
                format!("lifecycle rule `{}`", rule.id)
            }
        };
        if let Some(limit) = self.cold_after {
            let limit_days = days(limit);
            let classes: Vec<String> = match &self.cold_classes {
                Some(classes) => classes.iter().map(|c| c.to_ascii_uppercase()).collect(),
                None => COLD_CLASSES.iter().map(|c| c.to_string()).collect(),
            };
            let soonest = covering
                .iter()
                .flat_map(|rule| rule.transitions.iter().map(move |t| (rule, t)))
                .filter(|(_, t)| classes.contains(&t.class))
                .min_by_key(|(_, t)| t.days);
            match soonest {
                None => problems.push(format!(
                    "no enabled lifecycle rule moves objects under {url} to a cold class ({}) — expected one after at most {limit_days} days",
                    classes.join(", ")
                )),
                Some((rule, t)) if u64::from(t.days) > limit_days => problems.push(format!(
                    "{} moves objects under {url} to {} after {} days, expected at most {limit_days}",
                    rule_name(rule),
                    t.class,
                    t.days
                )),
                Some((rule, t)) => evidence.push(format!(
                    "{} moves objects under {url} to {} after {} days (at most {limit_days})",
                    rule_name(rule),
                    t.class,
                    t.days
                )),
            }
        }
        if let Some(kept) = self.noncurrent_kept {
            let kept_days = days(kept);
            let soonest = covering
                .iter()
                .filter_map(|rule| rule.noncurrent_expiration_days.map(|d| (rule, d)))
                .min_by_key(|(_, d)| *d);
            match soonest {
                Some((rule, d)) if u64::from(d) < kept_days => problems.push(format!(
                    "{} expires noncurrent versions under {url} after {d} days, expected at least {kept_days}",
                    rule_name(rule)
                )),
                Some((rule, d)) => evidence.push(format!(
                    "{} keeps noncurrent versions under {url} {d} days (at least {kept_days})",
                    rule_name(rule)
                )),
                None => evidence.push(format!(
                    "no lifecycle rule expires noncurrent versions under {url}: they are kept forever (at least {kept_days} days)"
                )),
            }
        }
        if let Some(retention) = self.retention {
            let retention_days = days(retention);
            for rule in &covering {
                if let Some(d) = rule.expiration_days
                    && u64::from(d) < retention_days
                {
                    problems.push(format!(
                        "{} deletes objects under {url} after {d} days, before the retention of {retention_days} days",
                        rule_name(rule)
                    ));
                }
            }
        }
        (evidence, problems)
    }

    /// The backups in `listing` against the retention: evidence lines, and the problems.
    pub(super) fn judge_backups(
        &self,
        listing: &[ObjectInfo],
        url: &str,
        now: Timestamp,
    ) -> (Vec<String>, Vec<String>) {
        let (mut evidence, mut problems) = (Vec::new(), Vec::new());
        let Some(retention) = self.retention else {
            return (evidence, problems);
        };
        let slack = self
            .slack
            .or(self.every)
            .map_or(std::time::Duration::from_secs(DAY), |slack| slack.0);
        let mut backups: Vec<(String, Timestamp)> = manifest::candidates(listing)
            .into_iter()
            .filter(|c| c.manifest.is_some())
            .filter_map(|c| manifest::time_of(&c.key).map(|at| (c.key, at)))
            .collect();
        backups.sort_by_key(|(_, at)| *at);
        let age = |at: Timestamp| now.duration_since(at).unsigned_abs();
        let too_old: Vec<&(String, Timestamp)> = backups
            .iter()
            .filter(|(_, at)| age(*at) > retention.0 + slack)
            .collect();
        if let Some((oldest, at)) = too_old.first() {
            problems.push(format!(
                "{} backup(s) in {url} older than the retention of {retention} + {}: the oldest, {oldest}, is {} old — pruning is not running",
                too_old.len(),
                Duration(slack),
                Duration(age(*at))
            ));
        }
        let within: Vec<Timestamp> = backups
            .iter()
            .map(|(_, at)| *at)
            .filter(|at| age(*at) <= retention.0)
            .collect();
        if within.is_empty() {
            problems.push(format!(
                "no complete backup in {url} within the retention of {retention}"
            ));
            return (evidence, problems);
        }
        evidence.push(format!(
            "{} complete backup(s) in {url} within the retention of {retention}, none older than {retention} + {}",
            within.len(),
            Duration(slack)
        ));
        if let Some(every) = self.every {
            let allowed = every.0 + slack;
            let start = now - jiff::SignedDuration::try_from(retention.0).unwrap_or_default();
            let mut points = vec![start];
            points.extend(within.iter().copied());
            points.push(now);
            let gaps: Vec<String> = points
                .windows(2)
                .filter(|pair| pair[1].duration_since(pair[0]).unsigned_abs() > allowed)
                .map(|pair| {
                    let show = |at: Timestamp| at.strftime("%Y-%m-%d %H:%M UTC").to_string();
                    format!(
                        "{} to {} ({})",
                        show(pair[0]),
                        show(pair[1]),
                        format_duration(pair[1].duration_since(pair[0]))
                    )
                })
                .collect();
            if gaps.is_empty() {
                evidence.push(format!(
                    "no gap longer than {every} + {} between backups in the last {retention}",
                    Duration(slack)
                ));
            } else {
                problems.push(format!(
                    "backups missing in {url} (one expected every {every}, + {} slack): no backup from {}",
                    Duration(slack),
                    gaps.join(", nor from ")
                ));
            }
        }
        (evidence, problems)
    }
}

fn days(duration: Duration) -> u64 {
    duration.0.as_secs().div_ceil(DAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::store::Transition;

    fn spec(text: &str) -> PostureSpec {
        serde_json::from_str(text).expect("a spec")
    }

    fn rule(prefix: &str, transition: Option<(u32, &str)>, noncurrent: Option<u32>) -> Rule {
        Rule {
            id: "archive".into(),
            enabled: true,
            prefix: prefix.into(),
            filtered_by_tags: false,
            transitions: transition
                .map(|(days, class)| Transition {
                    days,
                    class: class.into(),
                })
                .into_iter()
                .collect(),
            noncurrent_expiration_days: noncurrent,
            expiration_days: None,
        }
    }

    #[test]
    fn rules_count_only_when_they_cover_the_prefix() {
        let spec = spec(r#"{"cold_after": "30d", "noncurrent_kept": "30d"}"#);
        let posture = |rules| Posture {
            versioning: Some("Enabled".into()),
            prefix: "production/".into(),
            rules,
        };
        let (_, problems) = spec.judge_bucket(
            &posture(vec![rule("production/", Some((30, "GLACIER")), Some(30))]),
            "s3://b/production",
        );
        assert!(problems.is_empty(), "{problems:?}");
        // A rule for another prefix, one too late, a warm class, noncurrent expired too soon.
        for (rules, expected) in [
            (
                vec![rule("staging/", Some((30, "GLACIER")), None)],
                "no enabled lifecycle rule",
            ),
            (
                vec![rule("", Some((90, "GLACIER")), None)],
                "after 90 days, expected at most 30",
            ),
            (
                vec![rule("", Some((30, "STANDARD_IA")), None)],
                "no enabled lifecycle rule",
            ),
            (
                vec![rule("", Some((30, "GLACIER")), Some(7))],
                "after 7 days, expected at least 30",
            ),
        ] {
            let (_, problems) = spec.judge_bucket(&posture(rules), "s3://b/production");
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected}: {problems:?}"
            );
        }
        let suspended = Posture {
            versioning: Some("Suspended".into()),
            ..posture(vec![rule("", Some((1, "GLACIER")), None)])
        };
        let (_, problems) = spec.judge_bucket(&suspended, "s3://b");
        assert!(
            problems[0].contains("Suspended, not Enabled"),
            "{problems:?}"
        );
    }

    #[test]
    fn backups_older_than_retention_and_gaps_are_found() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().expect("now");
        let listing = |days_ago: &[i64]| -> Vec<ObjectInfo> {
            days_ago
                .iter()
                .flat_map(|d| {
                    let at = now - jiff::SignedDuration::from_hours(24 * d);
                    let key = format!("app/{}", at.strftime("%Y%m%dT%H%M%SZ"));
                    [".dump", ".dump.manifest.json"].map(|suffix| ObjectInfo {
                        key: format!("{key}{suffix}"),
                        size: 1,
                        modified: Some(at),
                    })
                })
                .collect()
        };
        let spec = spec(r#"{"versioning": false, "retention": "5d", "every": "1d"}"#);
        let (evidence, problems) = spec.judge_backups(&listing(&[0, 1, 2, 3, 4]), "s3://b", now);
        assert!(problems.is_empty(), "{problems:?} {evidence:?}");
        let (_, problems) = spec.judge_backups(&listing(&[0, 1, 2, 3, 4, 9]), "s3://b", now);
        assert!(
            problems[0].contains("1 backup(s) in s3://b older than"),
            "{problems:?}"
        );
        let (_, problems) = spec.judge_backups(&listing(&[0, 1, 4]), "s3://b", now);
        assert!(problems[0].contains("backups missing"), "{problems:?}");
        let (_, problems) = spec.judge_backups(&listing(&[]), "s3://b", now);
        assert!(problems[0].contains("no complete backup"), "{problems:?}");
    }
}
