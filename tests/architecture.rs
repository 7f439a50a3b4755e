//! The shape of the source, checked: the module graph derived from `crate::…` paths in `src/`
//! (the program's code, not the test modules at the bottom of files)
//! has no cycle between top-level modules, and every import goes down the layer order that
//! ARCHITECTURE.md documents (a module imports only modules listed before it). The documented
//! order is read from ARCHITECTURE.md itself, so the document and the code cannot drift apart.
//! Also: no source file longer than 700 lines outside its test module, and one past 600 says at
//! its top why it is still one idea.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src")
        .flatten()
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/steps/sync/plan.rs` → `steps`), or `None` for
/// the crate root and the binary.
fn top_module(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root().join("src")).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The source without comments (a doc link is not an import) and without string literals'
/// contents (a message may say `crate::x`).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    in_string = false;
                    out.push('"');
                }
                '\n' => out.push('\n'),
                _ => {}
            }
            continue;
        }
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for next in chars.by_ref() {
                    if next == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                in_string = true;
                out.push('"');
            }
            '\'' => {
                // A char literal such as '"' or '{' (lifetimes are copied as they are).
                out.push(c);
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with("\\") && rest.len() >= 3 && rest[2..].starts_with('\'') {
                    for _ in 0..3 {
                        chars.next();
                    }
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.next();
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The top-level modules a file's code names through `crate::`: `crate::a::b`, and each
/// first segment inside `crate::{a::x, b}`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !preceded_by_ident {
            if let Some(group) = after.strip_prefix('{') {
                let mut depth = 1;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 || (depth == 1 && c == ',') {
                        add_first_segment(&item, &mut found);
                        item.clear();
                        if depth == 0 {
                            break;
                        }
                    } else {
                        item.push(c);
                    }
                }
            } else {
                add_first_segment(after, &mut found);
            }
        }
        rest = after;
    }
    found
}

fn add_first_segment(path: &str, found: &mut BTreeSet<String>) {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !name.is_empty() && name != "self" {
        found.insert(name);
    }
}

/// The documented order: the module names in backticks in the second column of the table under
/// `## Layers` in ARCHITECTURE.md, row by row, bottom layer first.
fn documented_order() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("\n## Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut order = Vec::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let Some(cell) = line.split('|').nth(2) else {
            continue;
        };
        for (i, part) in cell.split('`').enumerate() {
            if i % 2 == 1 {
                order.push(part.to_string());
            }
        }
    }
    assert!(
        !order.is_empty(),
        "no modules in ARCHITECTURE.md's layer table"
    );
    order
}

/// A file's code before its test module: the graph is the program's. (Tests may use the
/// `fixtures` module wherever they are.)
fn production(text: &str) -> &str {
    match text.find("\n#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// Every import between top-level modules: (importer, imported) → files that do it.
fn module_graph() -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut graph: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = top_module(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        for to in imports(&code_only(production(&text))) {
            if to != from {
                let shown = file
                    .strip_prefix(root())
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                graph.entry((from.clone(), to)).or_default().insert(shown);
            }
        }
    }
    graph
}

fn modules_on_disk() -> BTreeSet<String> {
    std::fs::read_dir(root().join("src"))
        .expect("read src")
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if path.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs")
                    .filter(|n| !matches!(*n, "lib" | "main"))
                    .map(str::to_string)
            }
        })
        .collect()
}

#[test]
fn the_layer_table_names_every_module_once() {
    let order = documented_order();
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(
        listed.len(),
        order.len(),
        "a module is listed twice: {order:?}"
    );
    let on_disk = modules_on_disk();
    assert_eq!(
        listed, on_disk,
        "ARCHITECTURE.md's layer table and src/ disagree"
    );
}

#[test]
fn no_cycle_between_top_level_modules() {
    let graph = module_graph();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in graph.keys() {
        edges.entry(from).or_default().insert(to);
    }
    // Depth-first search with colours: a grey node reached again closes a cycle.
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        colour: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        cycles: &mut Vec<String>,
    ) {
        colour.insert(node, 1);
        path.push(node);
        for &next in edges.get(node).into_iter().flatten() {
            match colour.get(next).copied().unwrap_or(0) {
                0 => visit(next, edges, colour, path, cycles),
                1 => {
                    let start = path.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[start..].to_vec();
                    cycle.push(next);
                    cycles.push(cycle.join(" -> "));
                }
                _ => {}
            }
        }
        path.pop();
        colour.insert(node, 2);
    }
    let mut colour = BTreeMap::new();
    let mut cycles = Vec::new();
    let nodes: Vec<&str> = edges.keys().copied().collect();
    for node in nodes {
        if colour.get(node).copied().unwrap_or(0) == 0 {
            visit(node, &edges, &mut colour, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles:\n  {}",
        cycles.join("\n  ")
    );
}

#[test]
fn every_import_goes_down_the_documented_layers() {
    let order = documented_order();
    let rank = |name: &str| order.iter().position(|m| m == name);
    let mut wrong = Vec::new();
    for ((from, to), files) in module_graph() {
        let (Some(from_rank), Some(to_rank)) = (rank(&from), rank(&to)) else {
            wrong.push(format!("{from} -> {to}: not in ARCHITECTURE.md's table"));
            continue;
        };
        if to_rank >= from_rank {
            wrong.push(format!(
                "{from} imports {to}, which is not below it ({})",
                files.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer order of ARCHITECTURE.md:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_engine_reaches_people_only_through_the_human_traits() {
    let graph = module_graph();
    for shown in ["ui", "report", "cli"] {
        assert!(
            !graph.contains_key(&("engine".to_string(), shown.to_string())),
            "the engine imports `{shown}`: {:?}",
            graph.get(&("engine".to_string(), shown.to_string()))
        );
    }
}

#[test]
fn no_source_file_is_longer_than_one_idea() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut long = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        let code_lines = text
            .lines()
            .take_while(|line| !line.starts_with("#[cfg(test)]"))
            .count();
        let shown = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        if code_lines > 700 {
            long.push(format!("{shown}: {code_lines} lines (over 700)"));
        } else if code_lines > 600 {
            let head: String = text.lines().take(15).collect::<Vec<_>>().join("\n");
            if !head.contains("one idea") {
                long.push(format!(
                    "{shown}: {code_lines} lines, and its top does not say why it is still one idea"
                ));
            }
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

#[test]
fn the_import_reader_sees_grouped_and_nested_paths() {
    let code = code_only(
        "use crate::a::B;\nuse crate::{c::D, e, f::{g, h}};\nlet x = crate::i::j();\n// crate::k\nlet s = \"crate::l\";\nmycrate::m();",
    );
    let found: Vec<String> = imports(&code).into_iter().collect();
    assert_eq!(found, ["a", "c", "e", "f", "i"]);
}
