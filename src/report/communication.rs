//! Who was told what: the messages notify steps sent, as every report format shows them. The
//! wording and the counting live here so that the Markdown table, the text line, the HTML
//! table and the JSON array agree on what "sent" means: delivered (the receiver said 2xx).
//! A message the receiver refused or that never arrived is a failure, listed, not counted.

use crate::state::{Notification, RunState};

/// How many messages one step sent, and how many of its sends failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StepCount<'a> {
    pub(crate) step: &'a str,
    pub(crate) sent: usize,
    pub(crate) failed: usize,
}

/// Per step, in the order the steps first sent something.
pub(crate) fn counts(state: &RunState) -> Vec<StepCount<'_>> {
    let mut counts: Vec<StepCount> = Vec::new();
    for notification in &state.notifications {
        let index = match counts.iter().position(|c| c.step == notification.step) {
            Some(index) => index,
            None => {
                counts.push(StepCount {
                    step: &notification.step,
                    sent: 0,
                    failed: 0,
                });
                counts.len() - 1
            }
        };
        if notification.ok() {
            counts[index].sent += 1;
        } else {
            counts[index].failed += 1;
        }
    }
    counts
}

/// Messages delivered, over all steps.
pub(crate) fn delivered(state: &RunState) -> usize {
    state.notifications.iter().filter(|n| n.ok()).count()
}

/// Where it went; a journal older than the field does not say.
pub(crate) fn to(notification: &Notification) -> &str {
    notification.to.as_deref().unwrap_or("—")
}

/// The first line of what was sent: enough to recognise a message in a table.
pub(crate) fn headline(notification: &Notification) -> String {
    let Some(message) = notification.message.as_deref() else {
        return "—".into();
    };
    let line = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let line = line.trim();
    match line.char_indices().nth(HEADLINE_CHARS) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
}

const HEADLINE_CHARS: usize = 120;

/// "delivered", or "failed: " and the first line of why.
pub(crate) fn result(notification: &Notification) -> String {
    match &notification.error {
        None => "delivered".into(),
        Some(error) => format!("failed: {}", error.lines().next().unwrap_or_default()),
    }
}

/// "sent 1 time", "sent 4 times", "sent 3 times, 1 failed".
pub(crate) fn tally(count: &StepCount) -> String {
    let mut text = match count.sent {
        1 => "sent 1 time".to_owned(),
        n => format!("sent {n} times"),
    };
    if count.failed > 0 {
        text.push_str(&format!(", {} failed", count.failed));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::communication_run;

    #[test]
    fn only_delivered_messages_count_as_sent() {
        let state = communication_run();
        assert_eq!(delivered(&state), 5);
        let counts = counts(&state);
        assert_eq!(
            counts,
            [
                StepCount {
                    step: "declare",
                    sent: 1,
                    failed: 1
                },
                StepCount {
                    step: "updates",
                    sent: 3,
                    failed: 1
                },
                StepCount {
                    step: "restored",
                    sent: 1,
                    failed: 0
                },
            ]
        );
        assert_eq!(tally(&counts[0]), "sent 1 time, 1 failed");
        assert_eq!(tally(&counts[2]), "sent 1 time");
    }

    #[test]
    fn a_headline_is_the_first_line_cut_short() {
        let mut notification = communication_run().notifications[0].clone();
        notification.message = Some("\n  first line  \nsecond".into());
        assert_eq!(headline(&notification), "first line");
        notification.message = Some("x".repeat(200));
        assert_eq!(headline(&notification).chars().count(), HEADLINE_CHARS + 1);
        notification.message = None;
        assert_eq!(headline(&notification), "—");
    }
}
