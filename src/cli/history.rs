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
    every: crate::duration::Duration,
    format: DueFormat,
) -> Outcome {
    let runs = finished_runs(dir);
    let mut candidates = Vec::new();
    if files.is_empty() {
        // Every playbook with runs, at the file its newest run recorded.
        let mut newest: Vec<&crate::state::RunState> = Vec::new();
        for run in &runs {
            if !newest.iter().any(|seen| seen.playbook == run.playbook) {
                newest.push(run);
            }
        }
        newest.sort_by(|a, b| a.playbook.cmp(&b.playbook));
        for run in newest {
            let path = std::path::Path::new(&run.file);
            candidates.push(crate::due::Candidate {
                name: run.playbook.clone(),
                file: run.file.clone(),
                hash: crate::loader::read(path)
                    .map(|source| source.hash())
                    .map_err(|error| error.message.clone()),
            });
        }
    } else {
        for file in files {
            match validate::load(file) {
                Ok((source, playbook)) => candidates.push(crate::due::Candidate {
                    name: playbook.name,
                    file: file.display().to_string(),
                    hash: Ok(source.hash()),
                }),
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
        .map(|candidate| crate::due::check(candidate, &runs, every, now))
        .collect();
    print(&match format {
        DueFormat::Text => crate::due::render_text(&verdicts),
        DueFormat::Json => crate::due::render_json(&verdicts, every),
    });
    if verdicts.iter().any(|verdict| verdict.due) {
        Outcome::Failed
    } else {
        Outcome::Succeeded
    }
}
