//! Input that is not a playbook at all: each case must end in exit 2 with a message that says
//! what is wrong — never a panic, a hang or runaway memory.

mod common;

use std::time::Duration;

use common::{Drillbook, Output};

/// Generous on purpose: this catches hangs. The sub-second figures are measured by
/// `bench/malformed.sh` on the release binary.
const HANG: Duration = Duration::from_secs(10);

fn refuse(name: &str, bytes: &[u8], message: &str) -> Output {
    let output = Drillbook::new()
        .file(name, bytes)
        .args(&["validate", name])
        .expect_status(2)
        .run();
    assert!(
        output.stderr.starts_with("error: "),
        "stderr: {}",
        output.stderr
    );
    assert!(
        output.stderr.contains(message),
        "expected {message:?} in:\n{}",
        output.stderr
    );
    assert!(output.elapsed < HANG, "took {:?}", output.elapsed);
    output
}

#[test]
fn empty_file() {
    refuse("empty.yaml", b"", "the playbook is empty");
}

#[test]
fn only_comments() {
    refuse(
        "comments.yaml",
        b"# nothing here\n",
        "the playbook is empty",
    );
}

#[test]
fn not_yaml() {
    refuse("x.yaml", b"steps: [unclosed\n  - x: {\n", "invalid YAML");
}

#[test]
fn a_scalar_is_not_a_playbook() {
    refuse(
        "x.yaml",
        b"just some words\n",
        "expected a mapping at the top of the playbook, found a string",
    );
}

#[test]
fn ten_thousand_levels_of_nested_mappings() {
    let text = format!("steps: {}x{}\n", "{a: ".repeat(10_000), "}".repeat(10_000));
    refuse("deep.yaml", text.as_bytes(), "nested deeper than 64 levels");
}

#[test]
fn binary_garbage() {
    // A deterministic pseudo-random byte soup.
    let mut state: u32 = 0x9e37_79b9;
    let bytes: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state & 0xff) as u8
        })
        .collect();
    refuse("garbage.yaml", &bytes, "is not UTF-8 text: invalid byte");
}

#[test]
fn control_characters_in_utf8() {
    let text: String = (0..4096u32)
        .map(|i| char::from_u32(1 + i % 31).unwrap_or('x'))
        .collect();
    refuse("control.yaml", text.as_bytes(), "error");
}

#[test]
fn non_utf8_names_the_place() {
    refuse(
        "latin1.yaml",
        b"version: 1\nname: caf\xe9\n",
        "invalid byte 0xe9 at line 2, column 10",
    );
}

#[test]
fn billion_laughs() {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut previous = 'a';
    for name in 'b'..='j' {
        let refs = vec![format!("*{previous}"); 9].join(",");
        text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        previous = name;
    }
    text.push_str("version: 1\nname: bomb\nsteps: *j\n");
    refuse(
        "bomb.yaml",
        text.as_bytes(),
        "aliases expand to too much data",
    );
}

#[test]
fn ten_megabytes() {
    let line = "# padding padding padding padding padding padding padding padding\n";
    let text = line.repeat(10 * 1024 * 1024 / line.len() + 1);
    refuse(
        "big.yaml",
        text.as_bytes(),
        "a playbook may be at most 4 MiB",
    );
}

#[test]
fn ten_thousand_levels_of_flow_nesting() {
    let text = format!("steps: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    refuse("deep.yaml", text.as_bytes(), "nested deeper than 64 levels");
}

#[test]
fn ten_thousand_levels_of_block_nesting() {
    // `- - - x` nests a block sequence per dash: 10,000 levels in 20 KB.
    let text = format!("steps:\n{}x\n", "- ".repeat(10_000));
    refuse("deep.yaml", text.as_bytes(), "nested deeper than 64 levels");
}

#[test]
fn a_directory() {
    let output = Drillbook::new()
        .file("dir/inside.yaml", b"")
        .args(&["validate", "dir"])
        .expect_status(2)
        .run();
    assert_eq!(
        output.stderr,
        "error: `dir` is a directory; expected a playbook file (.yaml)\n --> dir\n\nerror: 1 error in dir\n"
    );
}

#[test]
fn a_missing_file() {
    let output = Drillbook::new()
        .args(&["validate", "nope.yaml"])
        .expect_status(2)
        .run();
    assert!(
        output
            .stderr
            .starts_with("error: cannot read `nope.yaml`: no such file")
    );
}
