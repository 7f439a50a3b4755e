//! Rewriting one variable of an application's env file: atomically (a temporary file beside
//! it, then a rename), the previous file kept, every other byte as it was.

/// What rewriting an env file did.
pub(super) struct Rewritten {
    /// The file written (symbolic links followed).
    pub(super) path: std::path::PathBuf,
    /// Where the old content is kept.
    pub(super) backup: std::path::PathBuf,
    /// The variable's old value, unquoted; `None` when the line was added.
    pub(super) previous: Option<String>,
    /// Anything the operator should know (an owner that could not be kept).
    pub(super) notes: Vec<String>,
}

pub(super) fn rewrite_env_file(
    path: &std::path::Path,
    variable: &str,
    url: &str,
) -> Result<Rewritten, String> {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    // The rename replaces a directory entry: through a symbolic link it would replace the
    // link with a file, and the application, reading through the link, would not see it.
    let path = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot read the env file {}: {e}", path.display()))?;
    let shown = path.display().to_string();
    let old = std::fs::read(&path).map_err(|e| format!("cannot read the env file {shown}: {e}"))?;
    let metadata =
        std::fs::metadata(&path).map_err(|e| format!("cannot read the env file {shown}: {e}"))?;
    let (new, previous) = replace_variable(&old, variable, url);

    let directory = path.parent().unwrap_or(std::path::Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = directory.join(format!(".{name}.drillbook-{}.tmp", std::process::id()));
    let backup = directory.join(format!("{name}.previous"));
    let backup_temporary = directory.join(format!(
        ".{name}.previous.drillbook-{}.tmp",
        std::process::id()
    ));
    let in_directory = |e: std::io::Error| format!("cannot write beside {shown}: {e}");
    let mut notes = Vec::new();

    // A leftover from a crash of an earlier attempt is ours to replace.
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .map_err(in_directory)?;
    let result = (|| -> Result<(), String> {
        // Exactly the old permissions (the umask would have narrowed them), and the old
        // owner where this process may give a file away (root may; others own the file
        // they write, as they did the old one when they wrote it).
        file.set_permissions(metadata.permissions())
            .map_err(in_directory)?;
        if std::os::unix::fs::fchown(&file, Some(metadata.uid()), Some(metadata.gid())).is_err() {
            let written = file.metadata().map_err(in_directory)?;
            if (written.uid(), written.gid()) != (metadata.uid(), metadata.gid()) {
                notes.push(format!(
                    "could not keep the owner of {shown} ({}:{}); it is now {}:{}",
                    metadata.uid(),
                    metadata.gid(),
                    written.uid(),
                    written.gid()
                ));
            }
        }
        file.write_all(&new).map_err(in_directory)?;
        file.sync_all().map_err(in_directory)?;

        // The previous content, in place before the original is replaced: a hard link costs
        // nothing and is the very same bytes; a copy where links are not possible.
        let _ = std::fs::remove_file(&backup_temporary);
        if std::fs::hard_link(&path, &backup_temporary).is_err() {
            std::fs::copy(&path, &backup_temporary).map_err(in_directory)?;
            std::fs::File::open(&backup_temporary)
                .and_then(|f| f.sync_all())
                .map_err(in_directory)?;
        }
        std::fs::rename(&backup_temporary, &backup).map_err(in_directory)?;

        std::fs::rename(&temporary, &path).map_err(in_directory)?;
        // The renames are durable only once the directory itself is on disk.
        std::fs::File::open(directory)
            .and_then(|d| d.sync_all())
            .map_err(in_directory)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
        let _ = std::fs::remove_file(&backup_temporary);
    }
    result?;
    Ok(Rewritten {
        path,
        backup,
        previous,
        notes,
    })
}

/// The env file's text with `variable`'s value replaced by `value` on every line that sets it
/// (`NAME=...` or `export NAME=...`), or a line appended when none does. Every other byte stays
/// as it was. Also returns the old value (the last one, as a shell would read it).
fn replace_variable(text: &[u8], variable: &str, value: &str) -> (Vec<u8>, Option<String>) {
    let mut out = Vec::with_capacity(text.len() + value.len());
    let mut previous = None;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let Some(start) = value_start(line, variable) else {
            out.extend_from_slice(line);
            continue;
        };
        let (body, ending) = split_ending(line);
        let old = String::from_utf8_lossy(&body[start..]).trim().to_string();
        // Keep the quoting the file used, so its other readers parse it as before.
        let quote = match old.as_bytes() {
            [q @ (b'"' | b'\''), .., last] if last == q => Some(*q as char),
            _ => None,
        };
        let unquoted = match quote {
            Some(_) => old[1..old.len() - 1].to_string(),
            None => old,
        };
        previous = Some(unquoted);
        out.extend_from_slice(&body[..start]);
        match quote {
            Some(q) => out.extend_from_slice(format!("{q}{value}{q}").as_bytes()),
            None => out.extend_from_slice(value.as_bytes()),
        }
        out.extend_from_slice(ending);
    }
    if previous.is_none() {
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(format!("{variable}={value}\n").as_bytes());
    }
    (out, previous)
}

/// Where the value starts when `line` sets `variable`.
fn value_start(line: &[u8], variable: &str) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.trim_start();
    let rest = match rest.strip_prefix("export") {
        Some(after) if after.starts_with([' ', '\t']) => after.trim_start(),
        _ => rest,
    };
    let rest = rest.strip_prefix(variable)?;
    let after_name = rest.trim_start_matches([' ', '\t']);
    let after_equals = after_name.strip_prefix('=')?;
    let value = after_equals.trim_start_matches([' ', '\t']);
    Some(text.len() - value.len())
}

/// A line without its line ending (`\n` or `\r\n`), and the ending.
fn split_ending(line: &[u8]) -> (&[u8], &[u8]) {
    let cut = if line.ends_with(b"\r\n") {
        line.len() - 2
    } else if line.ends_with(b"\n") {
        line.len() - 1
    } else {
        line.len()
    };
    line.split_at(cut)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn replaced(text: &str) -> (String, Option<String>) {
        let (out, previous) = replace_variable(text.as_bytes(), "DATABASE_URL", "postgres://n@c/d");
        (String::from_utf8(out).expect("utf-8"), previous)
    }

    #[test]
    fn only_the_variables_line_changes() {
        let text = "# app settings\r\nRAILS_ENV=production\r\nDATABASE_URL=postgres://old:pw@a/b\r\n  \nDATABASE_URL_RO=x\n";
        let (out, previous) = replaced(text);
        assert_eq!(
            out,
            "# app settings\r\nRAILS_ENV=production\r\nDATABASE_URL=postgres://n@c/d\r\n  \nDATABASE_URL_RO=x\n"
        );
        assert_eq!(previous.as_deref(), Some("postgres://old:pw@a/b"));
    }

    #[test]
    fn quoting_and_export_are_kept() {
        let (out, previous) = replaced("export DATABASE_URL = \"postgres://o@a/b\"\n");
        assert_eq!(out, "export DATABASE_URL = \"postgres://n@c/d\"\n");
        assert_eq!(previous.as_deref(), Some("postgres://o@a/b"));
        let (out, _) = replaced("DATABASE_URL='x'");
        assert_eq!(out, "DATABASE_URL='postgres://n@c/d'");
        // A commented-out line is a comment, not a setting.
        let (out, previous) = replaced("# DATABASE_URL=old\nA=1");
        assert_eq!(
            out,
            "# DATABASE_URL=old\nA=1\nDATABASE_URL=postgres://n@c/d\n"
        );
        assert_eq!(previous, None);
    }

    #[test]
    fn an_absent_variable_is_appended() {
        assert_eq!(replaced("").0, "DATABASE_URL=postgres://n@c/d\n");
        assert_eq!(replaced("A=1\n").0, "A=1\nDATABASE_URL=postgres://n@c/d\n");
    }
}
