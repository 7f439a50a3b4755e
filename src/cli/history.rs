//! `history` and `due`: what past runs say about each playbook.

use std::path::PathBuf;

use super::args::{DueFormat, HistoryFormat};
use super::{color, finished_runs, print, refuse};
use crate::engine::Refusal;
use crate::outcome::Outcome;
use crate::runs::StateDir;
use crate::validate;

pub(super) fn history(dir: &StateDir, playbook: Option<&str>, format: HistoryFormat) -> Outcome {
    let runs = finished_runs(dir);
    let known = crate::history::playbooks(&runs);
    let names = match playbook {
        None => known,
        Some(arg) => match history_name(arg, &known, dir) {
            Ok(name) => vec![name],
            Err(refusal) => return refuse(refusal),
        },
    };
    let entries: Vec<crate::history::Entry> = names
        .iter()
        .map(|name| crate::history::Entry::new(name, &runs))
        .collect();
    if entries.iter().all(|entry| entry.rows.is_empty()) && !matches!(format, HistoryFormat::Json) {
        match playbook {
            Some(_) => eprintln!(
                "no finished runs of {} in {}",
                names.join(", "),
                dir.root().display()
            ),
            None => eprintln!("no finished runs in {}", dir.root().display()),
        }
        return Outcome::Succeeded;
    }
    print(&match format {
        HistoryFormat::Text => crate::history::render_text(&entries),
        HistoryFormat::Md => crate::history::render_markdown(&entries),
        HistoryFormat::Json => crate::history::render_json(&entries),
    });
    Outcome::Succeeded
}

/// The playbooks in `./playbooks/` (`*.yaml`, `*.yml`), sorted: those `due` reports even when
/// they never ran.
fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("playbooks")
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| {
                    path.extension()
                        .is_some_and(|ext| ext == "yaml" || ext == "yml")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The playbook `history` was asked about: a file (its name, from the loader) or a name with
/// runs in the state directory.
fn history_name(arg: &str, known: &[String], dir: &StateDir) -> Result<String, Refusal> {
    let path = std::path::Path::new(arg);
    if known.iter().any(|name| name == arg) && !path.is_file() {
        return Ok(arg.to_string());
    }
    let looks_like_file = path.exists()
        || arg.ends_with(".yaml")
        || arg.ends_with(".yml")
        || arg.contains(std::path::MAIN_SEPARATOR);
    if looks_like_file {
        return match validate::load(path) {
            Ok((_, playbook)) => Ok(playbook.name),
            Err(invalid) => Err(Refusal::Invalid(invalid)),
        };
    }
    let hint = crate::diagnostic::did_you_mean(arg, known.iter().map(String::as_str))
        .map(|hint| format!("; {hint}"))
        .unwrap_or_default();
    let listed = if known.is_empty() {
        "there are none".to_string()
    } else {
        format!("those with runs: {}", known.join(", "))
    };
    Err(Refusal::Usage(format!(
        "no finished runs of a playbook named `{arg}` in {} ({listed}){hint}; give a playbook name or a playbook file",
        dir.root().display()
    )))
}

pub(super) fn due(
    dir: &StateDir,
    files: &[PathBuf],
    every: Option<crate::duration::Duration>,
    format: DueFormat,
) -> Outcome {
    let runs = finished_runs(dir);
    let mut candidates = Vec::new();
    if files.is_empty() {
        // Every playbook with runs, and those in ./playbooks/ that never ran.
        candidates = crate::due::known(&runs);
        for file in shipped() {
            if let Ok(candidate) = crate::due::Candidate::of_file(&file)
                && !candidates.iter().any(|known| known.name == candidate.name)
            {
                candidates.push(candidate);
            }
        }
    } else {
        for file in files {
            match crate::due::Candidate::of_file(file) {
                Ok(candidate) => candidates.push(candidate),
                Err(invalid) => {
                    eprint!("{}", invalid.render(color()));
                    return Outcome::Invalid;
                }
            }
        }
    }
    let now = crate::clock::now();
    let verdicts: Vec<crate::due::Verdict> = candidates
        .iter()
        .map(|candidate| crate::due::check(candidate, &runs, candidate.cadence(every), now))
        .collect();
    let default = every.unwrap_or_else(|| {
        crate::duration::Duration::parse(crate::due::DEFAULT_EVERY).expect("parses")
    });
    print(&match format {
        DueFormat::Text => crate::due::render_text(&verdicts),
        DueFormat::Json => crate::due::render_json(&verdicts, default),
    });
    if verdicts.iter().any(|verdict| verdict.due) {
        Outcome::Failed
    } else {
        Outcome::Succeeded
    }
}
