//! A validated playbook as a DAG: execution order, parallel stages, critical path, the text
//! and JSON forms people and tools read; the pictures (`dot`, `mermaid`) are in `picture.rs`.

mod picture;

use std::collections::HashMap;
use std::fmt::Write as _;

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

use crate::model::Playbook;

#[derive(Debug)]
pub struct Plan {
    pub playbook: Playbook,
    /// Edges run from a step to the steps that need it. Node weights are step indices.
    pub graph: DiGraph<usize, ()>,
    /// Main steps in an order that respects `needs` (file order among equals).
    pub order: Vec<usize>,
    /// Main steps grouped by depth: every step of a stage can run in parallel.
    pub stages: Vec<Vec<usize>>,
    /// Cleanup steps, in order, grouped the same way.
    pub cleanup_stages: Vec<Vec<usize>>,
    /// The longest chain of dependent main steps.
    pub critical_path: Vec<usize>,
}

impl Plan {
    /// Builds the DAG. Validation has already refused cycles and unknown names.
    pub fn new(playbook: Playbook) -> Plan {
        // Each step's dependencies as indices, resolved once.
        let index: HashMap<&str, usize> = playbook
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let needs: Vec<Vec<usize>> = playbook
            .steps
            .iter()
            .map(|step| {
                step.needs
                    .iter()
                    .filter_map(|need| index.get(need.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut graph = DiGraph::with_capacity(playbook.steps.len(), playbook.steps.len());
        let nodes: Vec<NodeIndex> = (0..playbook.steps.len())
            .map(|i| graph.add_node(i))
            .collect();
        for (i, dependencies) in needs.iter().enumerate() {
            for &dependency in dependencies {
                graph.add_edge(nodes[dependency], nodes[i], ());
            }
        }
        let sorted = topological_order(&graph);
        let mut depth = vec![0usize; playbook.steps.len()];
        for &i in &sorted {
            for &dependency in &needs[i] {
                depth[i] = depth[i].max(depth[dependency] + 1);
            }
        }
        let group = |cleanup: bool| {
            let mut stages: Vec<Vec<usize>> = Vec::new();
            for (i, _) in playbook
                .steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.cleanup == cleanup)
            {
                if stages.len() <= depth[i] {
                    stages.resize(depth[i] + 1, Vec::new());
                }
                stages[depth[i]].push(i);
            }
            stages
        };
        let stages = group(false);
        let cleanup_stages = group(true);
        let order = stages.iter().flatten().copied().collect();
        let cleanup: Vec<bool> = playbook.steps.iter().map(|s| s.cleanup).collect();
        let critical_path = longest_chain(&cleanup, &needs, &sorted, |_| 1.0);
        Plan {
            playbook,
            graph,
            order,
            stages,
            cleanup_stages,
            critical_path,
        }
    }

    pub fn render_text(&self) -> String {
        let playbook = &self.playbook;
        let mut out = String::new();
        let main = playbook.steps.iter().filter(|s| !s.cleanup).count();
        let cleanup = playbook.steps.len() - main;
        let _ = write!(out, "plan: {} — {main} step{}", playbook.name, plural(main));
        if cleanup > 0 {
            let _ = write!(out, " + {cleanup} cleanup");
        }
        let objectives: Vec<String> = [
            ("RTO", playbook.objectives.rto),
            ("RPO", playbook.objectives.rpo),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some(format!("{name} {}", value?)))
        .collect();
        if !objectives.is_empty() {
            let _ = write!(out, "; objectives {}", objectives.join(", "));
        }
        out.push('\n');
        let width = playbook.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
        let kind_width = playbook
            .steps
            .iter()
            .map(|s| s.kind.name().len())
            .max()
            .unwrap_or(0);
        // What a plan can know before a run: a variable's default; the rest (secrets, targets,
        // earlier steps' outputs) shows as a named placeholder.
        let shown = |text: &str| {
            crate::template::placeholders(text, |expression| {
                let name = expression.strip_prefix("vars.")?;
                playbook
                    .vars
                    .get(name)
                    .filter(|value| !crate::template::is_template(value))
                    .cloned()
            })
        };
        let section = |title: String, stages: &[Vec<usize>], out: &mut String| {
            let _ = writeln!(out, "\n{title}");
            for (n, stage) in stages.iter().enumerate() {
                let parallel = if stage.len() > 1 {
                    format!("  ({} in parallel)", stage.len())
                } else {
                    String::new()
                };
                let _ = writeln!(out, "  stage {}{parallel}", n + 1);
                for &i in stage {
                    let step = &playbook.steps[i];
                    let mut flags = Vec::new();
                    if !step.needs.is_empty() {
                        flags.push(format!("needs {}", step.needs.join(", ")));
                    }
                    flags.extend(marks(step).into_iter().map(String::from));
                    let flags = if flags.is_empty() {
                        String::new()
                    } else {
                        format!("  [{}]", flags.join("; "))
                    };
                    let _ = writeln!(
                        out,
                        "    {:width$}  {:kind_width$}  {}{flags}",
                        step.id,
                        step.kind.name(),
                        match long_instructions(step) {
                            Some(_) => "manual: instructions below".into(),
                            None => shown(&step.params.summary()).replace('\n', " ↵ "),
                        }
                    );
                    // Instructions are for people: all of them, as written.
                    for line in long_instructions(step).into_iter().flat_map(str::lines) {
                        let _ = writeln!(out, "      | {}", shown(line));
                    }
                }
            }
        };
        section("steps".into(), &self.stages, &mut out);
        if !self.cleanup_stages.is_empty() {
            section(
                "cleanup (always runs at the end)".into(),
                &self.cleanup_stages,
                &mut out,
            );
        }
        let path: Vec<&str> = self
            .critical_path
            .iter()
            .map(|&i| playbook.steps[i].id.as_str())
            .collect();
        let _ = writeln!(
            out,
            "\ncritical path: {} ({} step{})",
            path.join(" -> "),
            path.len(),
            plural(path.len())
        );
        out
    }

    /// The plan for tools. `prediction` is what past runs say about this one (the caller
    /// gives the prediction's JSON form), or `null` without history.
    pub fn render_json(&self, prediction: Option<impl Serialize>) -> String {
        #[derive(Serialize)]
        struct JsonPlan<'a, P> {
            name: &'a str,
            objectives: &'a crate::model::Objectives,
            stages: Vec<Vec<&'a str>>,
            cleanup_stages: Vec<Vec<&'a str>>,
            critical_path: Vec<&'a str>,
            steps: &'a [crate::model::Step],
            prediction: Option<P>,
        }
        let ids = |stages: &'_ [Vec<usize>]| -> Vec<Vec<&str>> {
            stages
                .iter()
                .map(|s| {
                    s.iter()
                        .map(|&i| self.playbook.steps[i].id.as_str())
                        .collect()
                })
                .collect()
        };
        let plan = JsonPlan {
            name: &self.playbook.name,
            objectives: &self.playbook.objectives,
            stages: ids(&self.stages),
            cleanup_stages: ids(&self.cleanup_stages),
            critical_path: self
                .critical_path
                .iter()
                .map(|&i| self.playbook.steps[i].id.as_str())
                .collect(),
            steps: &self.playbook.steps,
            prediction,
        };
        let mut text = serde_json::to_string_pretty(&plan).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The node weights (step indices) of `graph` in an order that respects its edges; file order
/// if the graph has a cycle (validation refuses those, a journal written by hand might not).
pub(crate) fn topological_order(graph: &DiGraph<usize, ()>) -> Vec<usize> {
    toposort(graph, None)
        .map(|order| order.into_iter().map(|n| graph[n]).collect())
        .unwrap_or_else(|_| (0..graph.node_count()).collect())
}

/// The heaviest chain of dependent steps, weights given per step. Steps marked in `excluded`
/// (cleanup, or steps the RTO clock does not wait for) take no part; every dependency of an
/// included step must be included too.
pub fn longest_chain(
    excluded: &[bool],
    needs: &[Vec<usize>],
    sorted: &[usize],
    weight: impl Fn(usize) -> f64,
) -> Vec<usize> {
    let count = excluded.len();
    let mut best = vec![0.0f64; count];
    let mut via: Vec<Option<usize>> = vec![None; count];
    for &i in sorted {
        if excluded[i] {
            continue;
        }
        let mut start = 0.0;
        for &dependency in &needs[i] {
            if best[dependency] > start {
                start = best[dependency];
                via[i] = Some(dependency);
            }
        }
        best[i] = start + weight(i);
    }
    let end = (0..count)
        .filter(|&i| !excluded[i])
        .max_by(|&a, &b| best[a].total_cmp(&best[b]).then(b.cmp(&a)));
    let mut path = Vec::new();
    let mut at = end;
    while let Some(i) = at {
        path.push(i);
        at = via[i];
    }
    path.reverse();
    path
}

/// What sets a step apart in every form of the plan: a human decision before it, live only,
/// the RTO clock, a condition.
pub(crate) fn marks(step: &crate::model::Step) -> Vec<&'static str> {
    let mut marks = Vec::new();
    if step.approval.is_some() {
        marks.push("approval");
    }
    if step.live_only {
        marks.push("live only");
    }
    if step.clock_stop {
        marks.push("stops the clock");
    }
    if step.when.is_some() {
        marks.push("conditional");
    }
    marks
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A manual step's instructions of more than one line, which a one-line summary would cut.
fn long_instructions(step: &crate::model::Step) -> Option<&str> {
    match &step.params {
        crate::steps::StepConfig::Manual(manual) if manual.instructions.trim().contains('\n') => {
            Some(manual.instructions.trim_end())
        }
        _ => None,
    }
}
