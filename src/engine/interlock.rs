//! The drill interlock: a drill never writes to a live system. Every live target is resolved to
//! its canonical identity before the run starts (one that cannot be is a refusal), then every
//! parameter a step writes through ([`crate::steps::Write`]) is compared with them: once
//! before the run starts (what renders then: variables, secrets, targets) and again right
//! before the step runs (what depended on earlier steps' outputs), whatever template or
//! `--var` produced it.

use crate::model::{Playbook, Step};
use crate::steps::Write;
use crate::target::{Env, Expect, Identity, IdentityError};

use super::Refusal;
use super::context::Context;

/// The live targets of a drill, by identity.
pub(crate) struct Live {
    targets: Vec<(String, Identity)>,
    /// Each live target as rendered, for what only the write's kind tells how to read: a
    /// secret's name (`production/app`) reads as a file path when its kind is not known.
    values: Vec<(String, String)>,
    env: Env,
}

/// A write that lands on a live target, in words naming both.
pub(crate) type Clash = String;

impl Live {
    /// Every live target, rendered (or, when its secrets are not set here, its
    /// `targets.identity`) and resolved. A live target that is neither is a refusal: a drill
    /// that does not know what is live cannot stay away from it.
    pub(crate) fn resolve(playbook: &Playbook, context: &Context) -> Result<Live, Refusal> {
        let env = Env::current();
        let mut targets = Vec::new();
        let mut rendered = Vec::new();
        let mut unknown = Vec::new();
        for (name, template) in &playbook.targets.live {
            let identity = playbook.targets.identity.get(name);
            let mut values = Vec::new();
            match context.render(template, "") {
                Ok(value) => values.push(value),
                Err(error) if identity.is_none() => {
                    unknown.push(format!(
                        "live target `{name}` does not render here ({error})"
                    ));
                }
                Err(_) => {}
            }
            if let Some(identity) = identity {
                match context.render(identity, "") {
                    Ok(value) => values.push(value),
                    Err(error) => unknown.push(format!(
                        "the identity of live target `{name}` does not render ({error})"
                    )),
                }
            }
            for value in values {
                rendered.push((name.clone(), value.clone()));
                match identities(&value, Expect::Any, &env) {
                    Ok(found) => targets.extend(found.into_iter().map(|id| (name.clone(), id))),
                    Err(error) => unknown.push(format!(
                        "live target `{name}` is {}",
                        context.masker().mask(&error.to_string())
                    )),
                }
            }
        }
        if !unknown.is_empty() {
            return Err(Refusal::LiveUnknown(unknown));
        }
        Ok(Live {
            targets,
            values: rendered,
            env,
        })
    }

    /// The live targets a drill target overlaps.
    pub(crate) fn drill_targets(
        &self,
        drill: &std::collections::BTreeMap<String, String>,
    ) -> Vec<Clash> {
        let mut clashes = Vec::new();
        for (name, value) in drill {
            // Empty names nothing: no step reaches a live system through it (a step that
            // needs it is skipped by its `when`, or fails for want of a target).
            if value.trim().is_empty() {
                continue;
            }
            match identities(value, Expect::Any, &self.env) {
                Ok(found) => {
                    for identity in found {
                        clashes.extend(self.clashes(&identity, &format!("drill target `{name}`")));
                    }
                }
                Err(error) => clashes.push(format!("drill target `{name}` is {error}")),
            }
        }
        clashes
    }

    /// Checks what every step writes through, as far as it renders before the run starts; a
    /// value that needs an earlier step's outputs is checked when its step runs.
    pub(crate) fn plan(&self, playbook: &Playbook, context: &Context) -> Vec<Clash> {
        let mut clashes = Vec::new();
        for step in playbook.steps.iter().filter(|step| !step.live_only) {
            for write in step.params.writes() {
                if let Ok(value) = context.render(write.value, &step.id) {
                    clashes.extend(self.write(step, &write, &value));
                }
            }
        }
        clashes
    }

    /// Checks what `step` writes through, rendered now (DNS lookups: call it off the async
    /// threads). Empty when nothing it writes is live.
    pub(crate) fn step(&self, step: &Step, context: &Context) -> Vec<Clash> {
        let mut clashes = Vec::new();
        for write in step.params.writes() {
            match context.render(write.value, &step.id) {
                Ok(value) => clashes.extend(self.write(step, &write, &value)),
                Err(error) => clashes.push(format!(
                    "`{}` of step `{}` does not render ({error}), so it cannot be compared with the live targets",
                    write.param, step.id
                )),
            }
        }
        clashes
    }

    fn write(&self, step: &Step, write: &Write, value: &str) -> Vec<Clash> {
        let what = format!("step `{}` writes `{}`", step.id, write.param);
        match identities(value, write.expect, &self.env) {
            Ok(found) => found
                .into_iter()
                .flat_map(|identity| {
                    let identity = if write.server {
                        identity.server()
                    } else {
                        identity
                    };
                    self.clashes(&identity, &what)
                })
                .collect(),
            Err(error) => vec![format!(
                "{what}, which is {error}: a drill cannot tell whether it is live"
            )],
        }
    }

    fn clashes(&self, identity: &Identity, what: &str) -> Vec<Clash> {
        let mut clashes: Vec<Clash> = self
            .targets
            .iter()
            .filter(|(_, live)| identity.overlaps(live))
            .map(|(name, live)| {
                format!("{what}: {identity}, which is live target `{name}` ({live})")
            })
            .collect();
        // A secret in a secrets manager has no form of its own: every live target that reads
        // as the same secret is one.
        if identity.is_aws_secret() {
            for (name, value) in &self.values {
                if let Ok(live) = Identity::of(value, Expect::AwsSecret, &self.env)
                    && identity.overlaps(&live)
                {
                    clashes.push(format!(
                        "{what}: {identity}, which is live target `{name}` ({live})"
                    ));
                }
            }
        }
        clashes
    }
}

/// What a value names, every way it may be reached. A PostgreSQL value is read as libpq reads
/// it (`PG*` defaults, service files: what an application and drillbook's child programs
/// connect to) and as drillbook's own client connects (which applies neither): a drill must
/// stay away from both.
fn identities(value: &str, expect: Expect, env: &Env) -> Result<Vec<Identity>, IdentityError> {
    let identity = Identity::of(value, expect, env)?;
    let mut found = vec![identity];
    let postgres = matches!(expect, Expect::Postgres)
        || (matches!(expect, Expect::Any) && found[0].is_postgres());
    if postgres && let Ok(client) = crate::connect::postgres::Target::parse(value) {
        let quote = |text: &str| text.replace('\\', "\\\\").replace('\'', "\\'");
        let hosts: Vec<String> = client.endpoints().iter().map(|(h, _)| quote(h)).collect();
        let ports: Vec<String> = client
            .endpoints()
            .iter()
            .map(|(_, p)| p.to_string())
            .collect();
        let settings = format!(
            "host='{}' port='{}' dbname='{}'",
            hosts.join(","),
            ports.join(","),
            quote(client.database())
        );
        if let Ok(as_connected) = Identity::of(&settings, Expect::Postgres, &env.without_vars())
            && as_connected != found[0]
        {
            found.push(as_connected);
        }
    }
    Ok(found)
}
