//! JUnit XML, so a CI system shows an unattended drill like a test suite: one testcase per
//! step, plus one per objective, failing where the drill failed.

use std::time::Duration as StdDuration;

use jiff::SignedDuration;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::event::Status;
use crate::state::{RunState, StepState};

use crate::format::format_duration;
use crate::measure::{Measure, objectives, step_duration, total_duration};

pub(crate) fn render(state: &RunState) -> String {
    let mut suite = TestSuite::new(state.playbook.as_str());
    suite.set_time(std_duration(total_duration(state)));
    for (_, step) in super::report_steps(state) {
        let mut case = TestCase::new(step.id.as_str(), step_status(step));
        case.set_classname(state.playbook.as_str());
        if let Some(duration) = step_duration(step) {
            case.set_time(std_duration(duration));
        }
        suite.add_test_case(case);
    }
    let measured = objectives(state);
    for (name, measure, missing) in [
        ("rto", &measured.rto, "not reached"),
        ("rpo", &measured.rpo, "not measured"),
    ] {
        if measure.objective.is_some() {
            let mut case = TestCase::new(name, objective_status(name, measure, missing));
            case.set_classname(state.playbook.as_str());
            suite.add_test_case(case);
        }
    }
    let mut report = Report::new(format!("drillbook run {}", state.run_id));
    report.set_time(std_duration(total_duration(state)));
    report.add_test_suite(suite);
    match report.to_string() {
        Ok(mut xml) => {
            if !xml.ends_with('\n') {
                xml.push('\n');
            }
            xml
        }
        // Writing XML into memory only fails on a bug in the writer; CI still gets a valid
        // file, with one error that says what happened, rather than nothing.
        Err(error) => fallback(&state.playbook, &error.to_string()),
    }
}

fn step_status(step: &StepState) -> TestCaseStatus {
    match step.status {
        Status::Succeeded => TestCaseStatus::success(),
        Status::Failed | Status::TimedOut | Status::Rejected | Status::Cancelled => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_type(step.status.name());
            status.set_message(failure_message(step));
            if !step.evidence.is_empty() {
                status.set_description(step.evidence.join("\n"));
            }
            status
        }
        Status::Skipped => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(step.skipped_reason.as_deref().unwrap_or("skipped"));
            status
        }
        Status::Pending => not_run("not run: the run stopped before this step"),
        Status::WaitingApproval => not_run("not run yet: waiting for approval"),
        Status::Running => not_run("still running when the report was made"),
    }
}

/// The step's error, or for a rejection (which has none) who rejected it and why.
fn failure_message(step: &StepState) -> String {
    if let Some(error) = &step.error {
        return error.clone();
    }
    if let Some(decision) = step.approvals.iter().rev().find(|d| !d.approved) {
        let reason = decision
            .reason
            .as_deref()
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        return format!(
            "{} by {}{reason}",
            super::decision_phrase(decision),
            decision.by
        );
    }
    step.status.name().to_owned()
}

fn not_run(message: &str) -> TestCaseStatus {
    let mut status = TestCaseStatus::skipped();
    status.set_message(message);
    status
}

/// A missed objective fails; one that could not be measured is skipped rather than failed,
/// because the step that kept it from being measured already fails on its own.
fn objective_status(name: &str, measure: &Measure, missing: &str) -> TestCaseStatus {
    let objective = measure
        .objective
        .map(|objective| objective.to_string())
        .unwrap_or_default();
    let achieved = measure.achieved.map(format_duration).unwrap_or_default();
    let upper = name.to_uppercase();
    match measure.met {
        Some(true) => TestCaseStatus::success(),
        Some(false) => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_type("objective_missed");
            status.set_message(format!(
                "{upper} missed: achieved {achieved} against an objective of {objective}"
            ));
            status
        }
        None => not_run(&format!("{upper} {missing} (objective {objective})")),
    }
}

fn std_duration(d: SignedDuration) -> StdDuration {
    StdDuration::try_from(d).unwrap_or(StdDuration::ZERO)
}

fn fallback(playbook: &str, error: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"1\" failures=\"0\" errors=\"1\">\n  <testsuite name=\"{}\" tests=\"1\" failures=\"0\" errors=\"1\">\n    <testcase name=\"report\" classname=\"{}\">\n      <error message=\"{}\"/>\n    </testcase>\n  </testsuite>\n</testsuites>\n",
        xml_escape(playbook),
        xml_escape(playbook),
        xml_escape(&format!("the JUnit report could not be written: {error}"))
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Journal, RESTORE_ERROR, failed_run, planned};

    fn cases<'a>(document: &'a roxmltree::Document) -> Vec<roxmltree::Node<'a, 'a>> {
        document
            .descendants()
            .filter(|node| node.has_tag_name("testcase"))
            .collect()
    }

    fn child<'a>(node: roxmltree::Node<'a, 'a>, tag: &str) -> Option<roxmltree::Node<'a, 'a>> {
        node.children().find(|child| child.has_tag_name(tag))
    }

    #[test]
    fn a_failed_run_is_a_suite_with_one_case_per_step_and_objective() {
        let xml = render(&failed_run());
        let document = roxmltree::Document::parse(&xml).expect("JUnit is XML");
        let suite = document
            .descendants()
            .find(|node| node.has_tag_name("testsuite"))
            .expect("testsuite");
        assert_eq!(suite.attribute("name"), Some("database-restore"));
        let cases = cases(&document);
        let names: Vec<&str> = cases.iter().filter_map(|c| c.attribute("name")).collect();
        assert_eq!(
            names,
            ["assess", "restore", "smoke", "drop_target", "rto", "rpo"]
        );
        assert!(
            cases
                .iter()
                .all(|c| c.attribute("classname") == Some("database-restore"))
        );
        assert_eq!(cases[1].attribute("time"), Some("69.000"));
        assert_eq!(suite.attribute("failures"), Some("1"));

        let failure = child(cases[1], "failure").expect("restore fails");
        assert_eq!(failure.attribute("message"), Some(RESTORE_ERROR));
        assert_eq!(failure.attribute("type"), Some("failed"));
        let description = failure.text().unwrap_or_default();
        assert!(description.contains("stderr line 1\n"), "{description}");
        assert!(description.contains("stderr line 12"), "{description}");

        assert!(child(cases[0], "failure").is_none());
        assert!(child(cases[0], "skipped").is_none());
        let skipped = child(cases[2], "skipped").expect("smoke skipped");
        assert_eq!(
            skipped.attribute("message"),
            Some("needs `restore`, which failed")
        );
        // RTO not reached: skipped, the restore failure already fails the build.
        let rto = child(cases[4], "skipped").expect("rto not reached");
        assert_eq!(
            rto.attribute("message"),
            Some("RTO not reached (objective 30m)")
        );
        assert!(child(cases[5], "failure").is_none(), "RPO met");
        assert!(child(cases[5], "skipped").is_none(), "RPO met");
    }

    #[test]
    fn a_missed_objective_fails_and_unfinished_steps_are_skipped_with_a_reason() {
        let mut promote = planned("promote", "promote");
        promote.clock_stop = true;
        let plan = vec![promote, planned("announce", "notify")];
        let mut journal = Journal::start(plan, Some("5m"), None, None);
        journal.ok("promote", 0, 600).finish(601, 3);
        let xml = render(&journal.state());
        let document = roxmltree::Document::parse(&xml).expect("JUnit is XML");
        let cases = cases(&document);
        let names: Vec<&str> = cases.iter().filter_map(|c| c.attribute("name")).collect();
        assert_eq!(
            names,
            ["promote", "announce", "rto"],
            "no RPO objective, no case"
        );
        let pending = child(cases[1], "skipped").expect("announce not run");
        assert_eq!(
            pending.attribute("message"),
            Some("not run: the run stopped before this step")
        );
        let rto = child(cases[2], "failure").expect("rto missed");
        assert_eq!(
            rto.attribute("message"),
            Some("RTO missed: achieved 10m00s against an objective of 5m")
        );
    }

    #[test]
    fn the_fallback_is_valid_xml() {
        let xml = fallback("a <b> & \"c\"", "boom");
        let document = roxmltree::Document::parse(&xml).expect("XML");
        let suite = document
            .descendants()
            .find(|node| node.has_tag_name("testsuite"))
            .expect("suite");
        assert_eq!(suite.attribute("name"), Some("a <b> & \"c\""));
    }
}
