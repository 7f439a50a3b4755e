//! `runbook`: playbooks as Markdown runbooks for people, on standard output or as `NAME.md`
//! files in a directory.

use std::path::{Path, PathBuf};

use super::{color, print, refuse};
use crate::engine::Refusal;
use crate::outcome::Outcome;
use crate::validate;

pub(super) fn runbook(files: &[PathBuf], output: Option<&Path>) -> Outcome {
    if output.is_none() && files.len() > 1 {
        return refuse(Refusal::Usage(format!(
            "{} playbooks, one standard output: give -o DIR to write one NAME.md each",
            files.len()
        )));
    }
    let mut code = Outcome::Succeeded;
    for file in files {
        let playbook = match validate::load(file) {
            Ok((_, playbook)) => playbook,
            Err(invalid) => {
                eprint!("{}", invalid.render(color()));
                code = Outcome::Invalid;
                continue;
            }
        };
        let text = crate::runbook::render(&playbook);
        let Some(dir) = output else {
            print(&text);
            continue;
        };
        let path = dir.join(format!("{}.md", playbook.name));
        let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, text));
        match written {
            Ok(()) => eprintln!("{}: runbook written to {}", file.display(), path.display()),
            Err(error) => {
                return refuse(Refusal::Failed(format!(
                    "cannot write {}: {error}",
                    path.display()
                )));
            }
        }
    }
    code
}
