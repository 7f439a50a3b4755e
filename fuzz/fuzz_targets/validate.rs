//! The loader and the validator on arbitrary input: whatever the bytes, they answer with a
//! playbook or with diagnostics that render, and a valid playbook plans and renders in every
//! format. A panic, a hang or runaway memory is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    drillbook::fuzzing::exercise(data);
});
