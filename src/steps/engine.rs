//! Which backups `assess` and `restore` read: drillbook's own, in `store` (the default), or
//! a pgBackRest repository (`engine: pgbackrest`, named by `stanza` and `config`), for teams
//! that already run it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::connect::pgbackrest::PgBackRest;
use crate::diagnostic::Diagnostic;
use crate::loader::node::Node;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// drillbook's backups and WAL archive, in `store`.
    #[default]
    Drillbook,
    /// A pgBackRest repository: `stanza` (and `config`) say which.
    Pgbackrest,
}

/// `store` is drillbook's; `stanza` (and `config`) pgBackRest's: each engine needs its own.
pub(crate) fn check(
    engine: Engine,
    store: &str,
    stanza: &Option<String>,
    config: &Option<String>,
    node: &Node,
    out: &mut Vec<Diagnostic>,
) {
    match engine {
        Engine::Drillbook => {
            if store.trim().is_empty() {
                out.push(super::at_key(
                    node,
                    "store",
                    "`store` is required: where the backups are (s3://bucket/prefix, file:///path or a directory)",
                ));
            }
            for (key, given) in [("stanza", stanza.is_some()), ("config", config.is_some())] {
                if given {
                    out.push(super::at_key(
                        node,
                        key,
                        format!("`{key}` is for `engine: pgbackrest`"),
                    ));
                }
            }
        }
        Engine::Pgbackrest => {
            if stanza.as_deref().is_none_or(|s| s.trim().is_empty()) {
                out.push(super::at_key(
                    node,
                    "engine",
                    "`engine: pgbackrest` needs `stanza`: the pgBackRest stanza to read",
                ));
            }
            if !store.trim().is_empty() {
                out.push(super::at_key(
                    node,
                    "store",
                    "with `engine: pgbackrest` the backups are in pgBackRest's repository (`stanza`, `config`): leave `store` out",
                ));
            }
        }
    }
}

/// The repository, with its templates rendered.
pub(crate) fn repository(
    stanza: &Option<String>,
    config: &Option<String>,
    render: &dyn Fn(&str) -> Result<String, super::StepFailure>,
) -> Result<PgBackRest, super::StepFailure> {
    Ok(PgBackRest {
        stanza: render(stanza.as_deref().unwrap_or_default())?,
        config: config.as_deref().map(render).transpose()?,
    })
}
