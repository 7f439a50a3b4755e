//! What the fuzz target (`fuzz/`, cargo-fuzz) and its corpus replay in the tests
//! (`tests/fuzz_corpus.rs`) run, so both exercise the same code: the loader, the validator and
//! the planner on arbitrary bytes. Whatever the input, they must answer — a playbook that
//! plans and renders in every format, or diagnostics that render — without a panic.

use crate::plan::Plan;

/// Loads, validates, plans and renders `data` as a playbook, discarding the results.
pub fn exercise(data: &[u8]) {
    // What the loader refuses before parsing (too large) never reaches the validator.
    if data.len() as u64 > crate::loader::MAX_BYTES {
        return;
    }
    let text = String::from_utf8_lossy(data);
    match crate::validate::validate(&text) {
        Ok(playbook) => {
            let plan = Plan::new(playbook);
            let _ = plan.render_text();
            let _ = plan.render_dot();
            let _ = plan.render_mermaid();
            let _ = plan.render_json(None::<()>);
        }
        Err(diagnostics) => {
            for diagnostic in diagnostics {
                let _ = diagnostic.render("fuzz.yaml", &text, false);
                let _ = diagnostic.render("fuzz.yaml", &text, true);
            }
        }
    }
}
