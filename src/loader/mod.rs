//! Reading a playbook: the file, then its YAML, into a positioned tree. The only I/O of
//! validation is here.

pub(crate) mod de;
pub(crate) mod node;
mod spanned;

use std::path::Path;

pub use spanned::Spanned;

use crate::diagnostic::{Diagnostic, Pos};
use node::Node;

/// Playbooks are short; anything past this is a mistake (or an attack), not a procedure.
pub const MAX_BYTES: u64 = 4 << 20;
/// Deeper than any playbook needs; keeps recursion far from the stack's limit.
const MAX_DEPTH: usize = 64;

/// A playbook file's name as given and its text.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// Reads a playbook file, refusing what cannot be one before parsing starts.
pub fn read(path: &Path) -> Result<Source, Diagnostic> {
    let name = path.display().to_string();
    let metadata = std::fs::metadata(path)
        .map_err(|e| Diagnostic::whole_file(format!("cannot read `{name}`: {}", io_reason(&e))))?;
    if metadata.is_dir() {
        return Err(Diagnostic::whole_file(format!(
            "`{name}` is a directory; expected a playbook file (.yaml)"
        )));
    }
    if metadata.len() > MAX_BYTES {
        return Err(Diagnostic::whole_file(format!(
            "`{name}` is {:.1} MiB; a playbook may be at most {} MiB",
            metadata.len() as f64 / (1 << 20) as f64,
            MAX_BYTES >> 20
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Diagnostic::whole_file(format!("cannot read `{name}`: {}", io_reason(&e))))?;
    // Read more than the metadata promised (a growing file): same limit.
    if bytes.len() as u64 > MAX_BYTES {
        return Err(Diagnostic::whole_file(format!(
            "`{name}` is larger than {} MiB",
            MAX_BYTES >> 20
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        Diagnostic::whole_file(format!(
            "`{name}` is not UTF-8 text: invalid byte 0x{:02x} at line {line}, column {column}",
            e.as_bytes()[valid.len()]
        ))
    })?;
    Ok(Source { name, text })
}

fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string(),
    }
}

/// Parses YAML text into a positioned tree, with limits against alias bombs and nesting.
pub(crate) fn parse(text: &str) -> Result<Node, Diagnostic> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = 1_000;
    budget.max_events = 2_000_000;
    budget.max_nodes = 1_000_000;
    budget.max_recorded_anchor_events = 100_000;
    let options = serde_saphyr::options! {
        budget: Some(budget),
        with_snippet: false,
        strict_booleans: true,
    };
    serde_saphyr::from_str_with_options::<Node>(text, options)
        .map_err(|error| yaml_error(text, &error))
}

fn yaml_error(text: &str, error: &serde_saphyr::Error) -> Diagnostic {
    let message = error.to_string();
    // The library appends its own position; ours is rendered separately.
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .trim_end_matches('.')
        .to_string();
    let message = match message.split_once("budget breached: ") {
        Some((_, breach)) if breach.starts_with("Depth") => {
            format!("invalid YAML: nested deeper than {MAX_DEPTH} levels; no playbook needs that")
        }
        Some((_, breach))
            if breach.contains("Alias")
                || breach.contains("Anchor")
                || breach.contains("Replay") =>
        {
            "invalid YAML: aliases expand to too much data (an alias bomb?)".to_string()
        }
        Some(_) => "invalid YAML: the document is too large (too many nodes)".to_string(),
        None if message.contains("recursion limit exceeded") => {
            format!("invalid YAML: nested deeper than {MAX_DEPTH} levels; no playbook needs that")
        }
        None => format!("invalid YAML: {message}"),
    };
    match error.location() {
        Some(location) if location.line() > 0 => {
            let line = location.line() as usize;
            let column = location.column() as usize;
            let offset = location
                .span()
                .byte_offset()
                .map(|o| o as usize)
                .unwrap_or_else(|| offset_of(text, line, column));
            Diagnostic::new(
                Pos {
                    line,
                    column,
                    offset,
                },
                1,
                message,
            )
        }
        _ => Diagnostic::whole_file(message),
    }
}

/// Byte offset of a 1-based line and character column.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let within: usize = text[line_start.min(text.len())..]
        .chars()
        .take(column.saturating_sub(1))
        .map(char::len_utf8)
        .sum();
    (line_start + within).min(text.len())
}

impl Source {
    /// SHA-256 of the playbook text, hex: a run records it, `resume` compares it.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
