//! Errors about a playbook, rendered the way casey/just renders them: what is wrong, where
//! (`file:line:col`), the source line with a caret under the offending text, and a hint.
//! All user-facing wording of validation lives in the messages built by the loader and the
//! validator; this file only lays them out.

use std::fmt::Write as _;

/// A place in the playbook's text: 1-based line and column, and the byte offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub pos: Pos,
    /// Bytes of source to underline (at least one caret is drawn).
    pub len: usize,
    pub message: String,
    /// Printed after the caret, on the same line.
    pub label: Option<String>,
    /// Printed below the snippet.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(pos: Pos, len: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            len,
            message: message.into(),
            label: None,
            help: None,
        }
    }

    /// A diagnostic about the file as a whole (no position to show).
    pub fn whole_file(message: impl Into<String>) -> Self {
        Self::new(Pos::default(), 0, message)
    }

    pub fn label(mut self, label: Option<String>) -> Self {
        self.label = label;
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// Renders the diagnostic against the playbook text it points into.
    pub fn render(&self, file: &str, source: &str, color: bool) -> String {
        let (red, blue, bold, reset) = if color {
            ("\x1b[1;31m", "\x1b[1;34m", "\x1b[1m", "\x1b[0m")
        } else {
            ("", "", "", "")
        };
        let mut out = String::new();
        let _ = writeln!(out, "{red}error{reset}{bold}: {}{reset}", self.message);
        // The help line's `=` sits under the snippet's `|`.
        let mut help_indent = String::from(" ");
        if self.pos.line == 0 {
            let _ = writeln!(out, " {blue}-->{reset} {file}");
        } else {
            let _ = writeln!(
                out,
                " {blue}-->{reset} {file}:{}:{}",
                self.pos.line, self.pos.column
            );
            let number = self.pos.line.to_string();
            let gutter = " ".repeat(number.len());
            help_indent = format!("{gutter} ");
            let line_start = source
                .get(..self.pos.offset.min(source.len()))
                .and_then(|before| before.rfind('\n'))
                .map_or(0, |i| i + 1);
            let line_end = source[line_start..]
                .find('\n')
                .map_or(source.len(), |i| line_start + i);
            let line = source[line_start..line_end].trim_end_matches('\r');
            let offset = self.pos.offset.clamp(line_start, line_start + line.len());
            // Keep tabs so the caret lines up under them; everything else becomes a space.
            let indent: String = source[line_start..offset]
                .chars()
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let end = (offset + self.len).min(line_start + line.len());
            let width = source
                .get(offset..end)
                .map_or(1, |s| s.chars().count().max(1));
            let _ = writeln!(out, "{gutter} {blue}|{reset}");
            let _ = writeln!(out, "{blue}{number} |{reset} {line}");
            let _ = write!(
                out,
                "{gutter} {blue}|{reset} {indent}{red}{}{reset}",
                "^".repeat(width)
            );
            if let Some(label) = &self.label {
                let _ = write!(out, " {red}{label}{reset}");
            }
            out.push('\n');
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{help_indent}{blue}={reset} {bold}help{reset}: {help}");
        }
        out
    }
}

/// "did you mean `x`?" for the nearest known name, when one is near enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    nearest(name, candidates).map(|best| format!("did you mean `{best}`?"))
}

pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lowered = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|candidate| *candidate != name)
        .map(|candidate| {
            let distance = strsim::damerau_levenshtein(&lowered, &candidate.to_lowercase());
            (distance, candidate)
        })
        .filter(|(distance, candidate)| {
            // Short names are close to everything: one edit for them, more for long ones.
            let longest = lowered.chars().count().max(candidate.chars().count());
            let limit = match longest {
                0..=4 => 1,
                5..=9 => 2,
                _ => longest / 3,
            };
            *distance <= limit && *distance < longest
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        let names = ["assess", "restore", "smoke"];
        assert_eq!(nearest("asess", names), Some("assess"));
        assert_eq!(nearest("restroe", names), Some("restore"));
        assert_eq!(nearest("promote", names), None);
        assert_eq!(nearest("x", names), None);
        assert_eq!(nearest("foo", ["now", "run"]), None);
        assert_eq!(nearest("rn", ["run"]), Some("run"));
    }

    #[test]
    fn caret_sits_under_the_span() {
        let source = "steps:\n  - id: a\n    needs: [asess]\n";
        let offset = source.find("asess").unwrap();
        let pos = Pos {
            line: 3,
            column: 13,
            offset,
        };
        let text = Diagnostic::new(pos, 5, "unknown step `asess`")
            .label(Some("did you mean `assess`?".into()))
            .render("p.yaml", source, false);
        assert_eq!(
            text,
            "error: unknown step `asess`\n --> p.yaml:3:13\n  |\n3 |     needs: [asess]\n  |             ^^^^^ did you mean `assess`?\n"
        );
    }
}
