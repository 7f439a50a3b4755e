//! `targets:`: what the steps act on, declared apart for drills and live incidents. Both
//! modes must name the same targets, so that a step reading `target.NAME` has a value in
//! either mode.

use std::collections::BTreeMap;

use super::raw::TargetsRaw;
use crate::diagnostic::Diagnostic;
use crate::loader::Spanned;
use crate::loader::node::Node;
use crate::model::Targets;

pub(crate) fn read(root: &Node, raw: Option<&TargetsRaw>, out: &mut Vec<Diagnostic>) -> Targets {
    let Some(raw) = raw else {
        return Targets::default();
    };
    let node = root.get("targets").unwrap_or(root);
    // A live target without a drill counterpart is allowed: a live system the playbook only
    // reads (a drill may read it, never write it). The other way round is not: what a drill
    // acts on, a live run acts on too.
    let modes = [
        ("drill", &raw.drill, Some(&raw.live), "live"),
        ("live", &raw.live, None, "drill"),
    ];
    for (mode, these, others, other) in modes {
        let mode_node = node.get(mode).unwrap_or(node);
        for name in these.keys() {
            let key = mode_node.key(name).unwrap_or(mode_node);
            if !super::steps::is_identifier(name) {
                out.push(
                    Diagnostic::new(
                        key.pos,
                        key.len,
                        format!("target name `{name}` is not an identifier"),
                    )
                    .help("use letters, digits and underscores (templates read it as target.NAME)"),
                );
            }
            if others.is_some_and(|others| !others.contains_key(name)) {
                out.push(
                    Diagnostic::new(key.pos, key.len, format!("target `{name}` is declared for {mode} runs but not under `{other}:`"))
                        .help("declare every drill target under `live:` too, so a step reads it in either mode"),
                );
            }
        }
    }
    let identity_node = node.get("identity").unwrap_or(node);
    for (name, value) in &raw.identity {
        if !raw.live.contains_key(name) {
            let key = identity_node.key(name).unwrap_or(identity_node);
            out.push(
                Diagnostic::new(
                    key.pos,
                    key.len,
                    format!("`targets.identity` names `{name}`, which is not a live target"),
                )
                .help(
                    "an identity names a live target without its credentials, under the same name",
                ),
            );
        }
        if value.value.contains("secrets.") {
            let at = identity_node.get(name).unwrap_or(identity_node);
            out.push(
                Diagnostic::new(
                    at.pos,
                    at.len.max(1),
                    format!("the identity of live target `{name}` reads a secret"),
                )
                .help("an identity is what a drill compares with when production's secrets are not set: write it without credentials, e.g. postgres://db.internal:5432/app"),
            );
        }
    }
    let values = |map: &BTreeMap<String, Spanned<String>>| {
        map.iter()
            .map(|(name, value)| (name.clone(), value.value.clone()))
            .collect()
    };
    Targets {
        drill: values(&raw.drill),
        live: values(&raw.live),
        identity: values(&raw.identity),
    }
}
