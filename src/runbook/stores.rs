//! `verify` and `sync` by hand. A backup against its manifest and a store against the checksum
//! report `sync` wrote are `sha256sum` checks; parity between two stores and the mirror itself
//! are what `aws s3 sync` comes closest to (it compares sizes and times, never checksums), so
//! they are said as such.

use super::Section;
use super::shell::Ctx;
use crate::checksums::{REPORT_KEY, SEGMENTS};
use crate::model::Step;
use crate::steps::sync::Sync;
use crate::steps::verify::Verify;

pub(super) fn verify(step: &Step, verify: &Verify, ctx: &mut Ctx, s: &mut Section) {
    let id = &step.id;
    let source = ctx.w(&verify.source);
    ctx.uses(&["fetch", "fail", "size_of"]);
    if let Some(backup) = &verify.backup {
        let key = ctx.w(backup);
        s.text(format!(
            "The backup against its manifest: the size the store holds{}.",
            if verify.deep {
                ", and the SHA-256 of its bytes read back"
            } else {
                " (drillbook reads the bytes again only with `deep: true`; `sha256sum` below does it anyway if you can spare the download)"
            }
        ));
        let mut sh = format!(
            "{id}_key={key}\n\
             fetch {source} \"${id}_key.manifest.json\" \"$RUNBOOK_DIR/{id}.manifest.json\" || fail \"${id}_key has no manifest\"\n\
             [ \"$(size_of {source} \"${id}_key\")\" = \"$(jq -r .size \"$RUNBOOK_DIR/{id}.manifest.json\")\" ] || fail \"${id}_key's size differs from its manifest's\"\n"
        );
        let hash = format!(
            "fetch {source} \"${id}_key\" \"$RUNBOOK_DIR/{id}.object\"\n\
             echo \"$(jq -r .sha256 \"$RUNBOOK_DIR/{id}.manifest.json\")  $RUNBOOK_DIR/{id}.object\" | sha256sum --check --quiet || fail \"${id}_key's SHA-256 differs from its manifest's\"\n"
        );
        if verify.deep {
            sh.push_str(&hash);
        } else {
            sh.push_str(&hash.lines().map(|l| format!("# {l}\n")).collect::<String>());
        }
        s.sh(sh);
        s.check("the backup's size (and SHA-256) match its manifest");
    } else if let Some(destination) = &verify.destination {
        let destination = ctx.w(destination);
        ctx.uses(&["mirror"]);
        s.text(format!(
            "Parity: every object of the source is in the destination with the same size and \
             SHA-256{}. drillbook hashes both sides (or trusts the checksum report `sync` wrote \
             into the destination, `{REPORT_KEY}`, for what it vouches for). By hand, the closest \
             is a dry run of the copy, which lists what is missing or differs in size or time (not \
             in content), and, for content, hashing both sides where you can read them.",
            if verify.allow_extra {
                "; objects only the destination has are listed, not failed (`allow_extra`)"
            } else {
                "; objects only the destination has fail it too"
            }
        ));
        s.sh(format!(
            "case {source} in\n  \
             s3://*) store_aws {source} s3 sync --dryrun --exclude '.drillbook/*' \"$(store_path {source})/\" \"$(store_path {destination})/\" ;;\n  \
             *) diff -rq --exclude=.drillbook \"$(store_path {source})\" \"$(store_path {destination})\" ;;\n\
             esac"
        ));
        s.check("the dry run lists nothing to copy (nothing missing, nothing different)");
    } else if verify.posture.is_none() {
        s.text(format!(
            "The store against the checksum report the last `sync` wrote into it (`{REPORT_KEY}`, a \
             head naming its entries, sorted JSON Lines, and the segments of changes since): \
             every object it lists is there, with that SHA-256. For an S3 store, copy it down first \
             (`aws s3 sync STORE DIR`) and check the copy. A store of configuration backups \
             (`NAME/TIME-HASH.age` versions, no checksum report) is checked instead by fetching the \
             newest version of each name and its `.manifest.json` and comparing `sha256sum` with \
             the manifest's `sha256` (what `config-restore` checks before it decrypts)."
        ));
        s.sh(format!(
            "{id}_dir=\"$(store_path {source})\"\n\
             case {source} in s3://*) {id}_dir=\"$RUNBOOK_DIR/{id}.copy\"; store_aws {source} s3 sync --only-show-errors \"$(store_path {source})/\" \"${id}_dir/\" ;; esac\n\
             {id}_gen=\"$(jq -r .generation \"${id}_dir/{REPORT_KEY}\")\"   # the report's head names its entries and segments\n\
             shopt -s nullglob; {id}_files=(\"${id}_dir/$(jq -r .entries \"${id}_dir/{REPORT_KEY}\")\" \"${id}_dir/{SEGMENTS}${id}_gen.d/\"*.jsonl); shopt -u nullglob\n\
             jq -rn 'reduce (inputs | select(.key)) as $l ({{}}; if $l.removed then del(.[$l.key]) else .[$l.key] = $l.sha256 end) | to_entries[] | \"\\(.value)  \\(.key)\"' \"${{{id}_files[@]}}\" > \"$RUNBOOK_DIR/{id}.sha256\"\n\
             (cd \"${id}_dir\" && sha256sum --check --quiet \"$RUNBOOK_DIR/{id}.sha256\") || fail \"objects differ from the checksum report\"\n\
             echo \"$(wc -l < \"$RUNBOOK_DIR/{id}.sha256\") objects as in the checksum report\""
        ));
        s.check("every object of the report is there with its SHA-256");
    }
    if let Some(age) = verify.max_age {
        s.text(format!(
            "Freshness: the newest backup (by its key, the UTC time of its snapshot), or the last sync \
             (the report's `updated_at`), or else the newest object, is at most {age} old."
        ));
        ctx.uses(&["keys"]);
        s.sh(format!(
            "keys {source} | grep -E '\\.dump\\.manifest\\.json$' | sort | tail -n 1   # the newest backup, if it holds backups\n\
             fetch {source} '{REPORT_KEY}' \"$RUNBOOK_DIR/{id}.report.json\" 2>/dev/null && jq -r .updated_at \"$RUNBOOK_DIR/{id}.report.json\"   # the last sync"
        ));
        s.check(format!("the newest is at most {age} old"));
    }
    if let Some(posture) = &verify.posture {
        self::posture(verify, posture, source, ctx, s);
    }
}

/// The bucket's versioning and lifecycle rules, read with the AWS CLI, and its backups
/// against the retention, judged by the person with what drillbook checks in words.
fn posture(
    verify: &Verify,
    posture: &crate::steps::verify::PostureSpec,
    source: String,
    ctx: &mut Ctx,
    s: &mut Section,
) {
    let _ = verify;
    let mut asked = Vec::new();
    if posture.versioning {
        asked.push("versioning `Enabled`".to_string());
    }
    if let Some(days) = posture.cold_after {
        let classes = posture
            .cold_classes
            .clone()
            .unwrap_or_else(|| vec!["GLACIER".into(), "DEEP_ARCHIVE".into(), "GLACIER_IR".into()])
            .join(", ");
        asked.push(format!(
            "an enabled lifecycle rule whose prefix holds the store's, not limited to tagged objects, with a transition to {classes} after at most {days}"
        ));
    }
    if let Some(days) = posture.noncurrent_kept {
        asked.push(format!(
            "no such rule expiring noncurrent versions sooner than {days}"
        ));
    }
    if let Some(retention) = posture.retention {
        let every = posture
            .every
            .map(|every| format!(", and one at least every {every}"))
            .unwrap_or_default();
        asked.push(format!(
            "no complete backup older than {retention} (plus slack), at least one within it{every}, and no rule deleting objects before {retention}"
        ));
    }
    s.text(format!("The bucket's posture: {}.", asked.join("; ")));
    ctx.uses(&["store_path", "store_aws", "keys"]);
    let mut sh = String::from(&format!(
        "posture_bucket=$(store_path {source}); posture_bucket=${{posture_bucket#s3://}}; posture_bucket=${{posture_bucket%%/*}}\n"
    ));
    if posture.versioning || posture.cold_after.is_some() || posture.noncurrent_kept.is_some() {
        sh.push_str(&format!(
            "store_aws {source} s3api get-bucket-versioning --bucket \"$posture_bucket\"\n\
             store_aws {source} s3api get-bucket-lifecycle-configuration --bucket \"$posture_bucket\"\n"
        ));
    }
    if posture.retention.is_some() {
        sh.push_str(&format!(
            "keys {source} | grep -E '\\.dump\\.manifest\\.json$' | sort   # the complete backups, oldest first, by their UTC time\n"
        ));
    }
    s.sh(sh);
    for item in asked {
        s.check(item);
    }
}

pub(super) fn sync(step: &Step, sync: &Sync, ctx: &mut Ctx, s: &mut Section) {
    let _ = step;
    let source = ctx.w(&sync.source);
    let destination = ctx.w(&sync.destination);
    ctx.uses(&["mirror"]);
    let mut options = Vec::new();
    if sync.delete {
        options.push("--delete".to_string());
    }
    if let Some(class) = &sync.storage_class {
        options.push(format!("--storage-class {}", ctx.w(class)));
    }
    s.text(format!(
        "Copies what is missing or different from the source into the destination{}. drillbook \
         hashes every object on its way (SHA-256) and keeps a checksum report in the destination \
         (`{REPORT_KEY}`), which its `verify` uses; `aws s3 sync` compares sizes and times only, and \
         writes no report, so check the copy afterwards (the parity step, or `sha256sum` on both \
         sides).",
        if sync.delete {
            ", and removes from the destination what the source no longer has (never from the source)"
        } else {
            "; nothing is deleted in the destination"
        }
    ));
    s.sh(format!(
        "mirror {source} {destination}{}",
        options.iter().map(|o| format!(" {o}")).collect::<String>()
    ));
    s.check("the copy ended without an error");
}
