//! Secrets kept in AWS Secrets Manager and configuration backups by hand: reading a secret
//! into the shell (never onto a command line), writing a new version of one with the previous
//! kept, and `config-backup`/`config-restore` with the `age` command-line tool.

use std::fmt::Write as _;

use super::Section;
use super::shell::{Ctx, quote};
use crate::model::{Playbook, Step};
use crate::secrets::SecretRef;
use crate::steps::config_backup::ConfigBackup;
use crate::steps::config_restore::ConfigRestore;

/// The shell that reads `name` from Secrets Manager when the playbook keeps it there and it is
/// not already set; `None` for a secret the person exports themselves.
pub(super) fn read(playbook: &Playbook, name: &str) -> Option<String> {
    let reference = playbook.secrets_manager.as_ref()?.reference(name)?;
    let mut sh = String::new();
    let _ = writeln!(
        sh,
        "# {name}: from AWS Secrets Manager, {reference}, unless already set."
    );
    let _ = writeln!(
        sh,
        "[ -n \"${{{name}:-}}\" ] || {name}=\"$({})\"",
        value_of(&reference)
    );
    let _ = writeln!(sh, "export {name}");
    Some(sh)
}

/// The command that prints a secret's current value (a JSON secret's field with jq).
fn value_of(reference: &SecretRef) -> String {
    let get = format!(
        "aws secretsmanager get-secret-value --secret-id {} --query SecretString --output text",
        quote(&reference.id)
    );
    match &reference.field {
        Some(field) => format!("{get} | jq -er --arg f {} '.[$f]'", quote(field)),
        None => get,
    }
}

/// `promote` with `aws_secret:`: a new version holding the new value, the previous one kept as
/// AWSPREVIOUS, and the command that makes it current again.
pub(super) fn promote(step: &Step, secret: &str, url: &str, ctx: &mut Ctx, s: &mut Section) {
    let id = &step.id;
    let (secret, exact) = ctx.word(secret);
    let reference = if exact {
        SecretRef::parse(secret.trim_matches('\'')).ok()
    } else {
        None
    };
    let field = reference.as_ref().and_then(|r| r.field.clone());
    let secret_id = reference
        .map(|r| quote(&r.id))
        .unwrap_or_else(|| format!("\"${{{id}_secret%%#*}}\""));
    s.text(
        "The new value becomes a new version of the secret in AWS Secrets Manager (the value \
         goes through a file only you can read, never a command line); the version it replaces \
         stays retrievable as `AWSPREVIOUS`. The secret must exist already.",
    );
    let mut sh = String::new();
    if !exact {
        let _ = writeln!(sh, "{id}_secret={secret}");
    }
    let _ = writeln!(
        sh,
        "{id}_previous=$(aws secretsmanager get-secret-value --secret-id {secret_id} --query VersionId --output text)"
    );
    let _ = writeln!(sh, "umask 077");
    match &field {
        Some(field) => {
            let _ = writeln!(
                sh,
                "aws secretsmanager get-secret-value --secret-id {secret_id} --query SecretString --output text |\n  \
                 NEW_VALUE={url} jq -c --arg f {} '.[$f] = env.NEW_VALUE' > \"$RUNBOOK_DIR/{id}.secret\"",
                quote(field)
            );
        }
        None => {
            let _ = writeln!(
                sh,
                "NEW_VALUE={url} printenv NEW_VALUE | tr -d '\\n' > \"$RUNBOOK_DIR/{id}.secret\""
            );
        }
    }
    let _ = writeln!(
        sh,
        "{id}_current=$(aws secretsmanager put-secret-value --secret-id {secret_id} --secret-string \"file://$RUNBOOK_DIR/{id}.secret\" --query VersionId --output text)"
    );
    let _ = writeln!(sh, "rm -f -- \"$RUNBOOK_DIR/{id}.secret\"");
    let _ = write!(
        sh,
        "echo \"rollback: aws secretsmanager update-secret-version-stage --secret-id {} --version-stage AWSCURRENT --move-to-version-id ${id}_previous --remove-from-version-id ${id}_current\"",
        secret_id.replace('"', "\\\"")
    );
    s.sh(sh);
    s.check(
        "`aws secretsmanager list-secret-version-ids` shows the new version as AWSCURRENT and the previous as AWSPREVIOUS; the application reads the new value (restart it or let it reload, as it needs)",
    );
}

/// `config-backup`: the file encrypted with `age` to the recipients, stored as a new version
/// with its manifest written last.
pub(super) fn config_backup(step: &Step, backup: &ConfigBackup, ctx: &mut Ctx, s: &mut Section) {
    let id = &step.id;
    ctx.uses(&["put", "fail"]);
    let file = ctx.w(&backup.file);
    let store = ctx.w(&backup.store);
    let fingerprint_key = ctx.w(&backup.fingerprint_key);
    let name = match &backup.name {
        Some(name) => ctx.w(name),
        None => format!("\"$(basename {file} | sed 's/^\\.*//')\""),
    };
    let mut recipients: Vec<String> = backup
        .recipients
        .iter()
        .map(|r| format!("-r {}", ctx.w(r)))
        .collect();
    if let Some(file) = &backup.recipients_file {
        recipients.push(format!("-R {}", ctx.w(file)));
    }
    s.text(
        "The file encrypted with `age` to the recipients (the plaintext never leaves this host), \
         stored as `<name>/<UTC time>-<SHA-256 prefix>.age`, then its manifest (size, SHA-256, \
         the keyed fingerprint drillbook compares to tell a changed file). Versions are kept \
         forever: never delete one. drillbook writes a version only when the file changed; by \
         hand, skip this step when you know it did not.",
    );
    let recipient_list = backup
        .recipients
        .iter()
        .map(|r| ctx.w(r))
        .collect::<Vec<_>>()
        .join(" ");
    s.sh(format!(
        "umask 077\n\
         age {} -o \"$RUNBOOK_DIR/{id}.age\" {file}\n\
         {id}_sha256=$(sha256sum < \"$RUNBOOK_DIR/{id}.age\" | cut -c1-64)\n\
         {id}_at=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\n\
         {id}_key={name}/$(date -u -d \"${id}_at\" +%Y%m%dT%H%M%S.000Z)-$(printf %s \"${id}_sha256\" | cut -c1-12).age\n\
         # The fingerprint: HMAC-SHA256 of the file under the fingerprint key, read from the environment.\n\
         {id}_fingerprint=$(KEY={fingerprint_key} python3 -c 'import hashlib, hmac, os, sys; print(hmac.new(os.environ[\"KEY\"].encode(), open(sys.argv[1], \"rb\").read(), hashlib.sha256).hexdigest())' {file})\n\
         put {store} \"${id}_key\" \"$RUNBOOK_DIR/{id}.age\"\n\
         jq -n --arg name \"${{{id}_key%%/*}}\" --arg key \"${id}_key\" --argjson size \"$(stat -c %s \"$RUNBOOK_DIR/{id}.age\")\" \\\n  \
           --arg sha256 \"${id}_sha256\" --arg fingerprint \"${id}_fingerprint\" --arg at \"${id}_at\" \\\n  \
           --arg recipients {} \\\n  \
           '{{manifest_version: 1, kind: \"config-backup\", name: $name, key: $key, size: $size, sha256: $sha256,\n    \
           fingerprint: $fingerprint, fingerprint_algorithm: \"hmac-sha256\", recipients: ($recipients | split(\" \") | map(select(. != \"\"))),\n    \
           taken_at: $at, created_by: \"a runbook\"}}' > \"$RUNBOOK_DIR/{id}.manifest.json\"\n\
         put {store} \"${id}_key.manifest.json\" \"$RUNBOOK_DIR/{id}.manifest.json\"\n\
         echo \"stored ${id}_key (SHA-256 ${id}_sha256)\"",
        recipients.join(" "),
        quote_joined(&recipient_list),
    ));
    s.check("the store holds the new `.age` object and its manifest; nothing in the store is readable without an identity");
}

/// The recipients as one shell word (each already a word).
fn quote_joined(words: &str) -> String {
    if words.is_empty() {
        "''".into()
    } else {
        format!("\"$(printf '%s ' {words})\"")
    }
}

/// `config-restore`: the version checked against its manifest, decrypted with the identity
/// into a file beside the destination, then renamed over it.
pub(super) fn config_restore(step: &Step, restore: &ConfigRestore, ctx: &mut Ctx, s: &mut Section) {
    let id = &step.id;
    ctx.uses(&["fetch", "fail"]);
    let store = ctx.w(&restore.store);
    let identity = ctx.w(&restore.identity);
    let to = ctx.w(&restore.to);
    let find = match (&restore.key, &restore.name) {
        (Some(key), _) => format!("{id}_key={}\n", ctx.w(key)),
        (None, Some(name)) => {
            let name = ctx.w(name);
            format!(
                "# The newest version filed under the name (keys sort by time).\n\
                 case {store} in\n  \
                 s3://*) {id}_newest=$(store_aws {store} s3 ls \"$(store_path {store})/\"{name}/ | awk '{{print $4}}' | grep '\\.age$' | sort | tail -n 1) ;;\n  \
                 *) {id}_newest=$(ls -1 -- \"$(store_path {store})/\"{name} | grep '\\.age$' | sort | tail -n 1) ;;\n\
                 esac\n\
                 [ -n \"${id}_newest\" ] || fail \"no version under \"{name}\n\
                 {id}_key={name}/\"${id}_newest\"\n"
            )
        }
        (None, None) => format!("{id}_key=\"${{KEY:?the version to restore}}\"\n"),
    };
    ctx.uses(&["store_path", "store_aws"]);
    s.text(
        "The version (the newest under its name, or the one named) checked against its manifest \
         (SHA-256), decrypted with the identity file (readable by its owner only), written beside \
         the destination with mode 0600 and renamed over it: a failure leaves the destination \
         as it was.",
    );
    s.sh(format!(
        "{find}\
         [ \"$(stat -c %a {identity})\" = 600 ] || [ \"$(stat -c %a {identity})\" = 400 ] || fail \"the identity file is readable by others: chmod 600 it\"\n\
         fetch {store} \"${id}_key\" \"$RUNBOOK_DIR/{id}.age\"\n\
         fetch {store} \"${id}_key.manifest.json\" \"$RUNBOOK_DIR/{id}.manifest.json\" || fail \"${id}_key has no manifest: it is incomplete\"\n\
         echo \"$(jq -r .sha256 \"$RUNBOOK_DIR/{id}.manifest.json\")  $RUNBOOK_DIR/{id}.age\" | sha256sum --check --quiet || fail \"${id}_key's SHA-256 differs from its manifest's\"\n\
         umask 077\n\
         age -d -i {identity} -o {to}.restoring \"$RUNBOOK_DIR/{id}.age\" || {{ rm -f -- {to}.restoring; fail \"the identity does not decrypt ${id}_key\"; }}\n\
         chmod 600 {to}.restoring && sync {to}.restoring && mv -f -- {to}.restoring {to}\n\
         echo \"restored ${id}_key to \"{to}"
    ));
    s.check("the destination holds the restored file (mode 0600) and the application reads it");
}
