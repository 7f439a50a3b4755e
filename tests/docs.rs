//! The hand-written lists of step kinds agree with the step table (`src/steps/mod.rs`), the
//! way the committed schema agrees with the types: README's list, and docs/language.md's table
//! (names, outputs, idempotency) and sections.

use std::collections::BTreeSet;
use std::path::PathBuf;

use drillbook::steps::Kind;

fn read(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn table_names() -> BTreeSet<String> {
    Kind::ALL
        .iter()
        .map(|kind| kind.name().to_string())
        .collect()
}

/// The names in backticks inside `text`.
fn quoted(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_lists_the_kinds_of_the_table() {
    let readme = read("README.md");
    let start = readme
        .find("DAG of typed steps (")
        .expect("README introduces the step kinds as `DAG of typed steps (…)`");
    let list = &readme[start + "DAG of typed steps (".len()..];
    let list = &list[..list.find(')').expect("the list closes")];
    let listed: BTreeSet<String> = list
        .split(',')
        .map(|name| name.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(listed, table_names(), "README.md's list of step kinds");
}

#[test]
fn the_language_reference_describes_each_kind_as_the_table_declares_it() {
    let language = read("docs/language.md");
    let section = language
        .split("\n## Step kinds")
        .nth(1)
        .expect("docs/language.md has `## Step kinds`");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = Vec::new();
    for line in section
        .lines()
        .filter(|l| l.starts_with("| [`"))
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
    {
        // | [`name`](#name) | does | outputs | idempotent |
        let name = quoted(line[1]).first().cloned().unwrap_or_default();
        let outputs = quoted(line[3]);
        let idempotent = line[4].to_string();
        rows.push((name, outputs, idempotent));
    }
    let documented: BTreeSet<String> = rows.iter().map(|(name, ..)| name.clone()).collect();
    assert_eq!(
        documented,
        table_names(),
        "docs/language.md's table of step kinds"
    );
    for (name, outputs, idempotent) in rows {
        let kind = Kind::parse(&name).expect("a known kind");
        assert_eq!(
            outputs,
            kind.outputs(),
            "docs/language.md: the outputs of `{name}`"
        );
        assert_eq!(
            idempotent,
            if kind.idempotent() { "yes" } else { "no" },
            "docs/language.md: whether `{name}` is idempotent"
        );
        assert!(
            section.contains(&format!("\n### {name}\n")),
            "docs/language.md has no `### {name}` section"
        );
    }
}
