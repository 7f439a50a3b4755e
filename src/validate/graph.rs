//! `needs`: every name resolved, no cycles, and who is upstream of whom.

use std::collections::{HashMap, HashSet};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::steps::StepInfo;
use crate::diagnostic::Diagnostic;
use crate::diagnostic::did_you_mean;

/// Checks every `needs` entry and looks for cycles. Returns the upstream sets when the graph
/// is a DAG (template checks need them), `None` when it is not.
pub(crate) fn check(steps: &[StepInfo], out: &mut Vec<Diagnostic>) -> Option<Upstream> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .rev() // the first of duplicate ids wins
        .filter_map(|(i, step)| Some((step.id()?, i)))
        .collect();
    let mut graph: DiGraph<usize, ()> = DiGraph::with_capacity(steps.len(), steps.len());
    let nodes: Vec<NodeIndex> = (0..steps.len()).map(|i| graph.add_node(i)).collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, step) in steps.iter().enumerate() {
        let mut listed = HashSet::new();
        for need in &step.needs {
            let name = need.value.as_str();
            let Some(&dependency) = index.get(name) else {
                let names = steps
                    .iter()
                    .filter(|s| s.cleanup == step.cleanup)
                    .filter_map(StepInfo::id);
                out.push(
                    Diagnostic::new(
                        need.pos,
                        need.len,
                        format!("unknown step `{name}` in `needs`"),
                    )
                    .label(did_you_mean(name, names)),
                );
                continue;
            };
            if dependency == i {
                out.push(Diagnostic::new(
                    need.pos,
                    need.len,
                    format!("step `{name}` needs itself"),
                ));
                continue;
            }
            if !listed.insert(dependency) {
                out.push(Diagnostic::new(
                    need.pos,
                    need.len,
                    format!("`{name}` is listed twice in `needs`"),
                ));
                continue;
            }
            if steps[dependency].cleanup != step.cleanup {
                let message = if step.cleanup {
                    format!(
                        "cleanup step `{}` cannot need main step `{name}`",
                        step.id().unwrap_or("?")
                    )
                } else {
                    format!(
                        "step `{}` cannot need cleanup step `{name}`",
                        step.id().unwrap_or("?")
                    )
                };
                out.push(
                    Diagnostic::new(need.pos, need.len, message)
                        .help("cleanup steps run after every main step, whatever happened; they may only need other cleanup steps"),
                );
                continue;
            }
            graph.add_edge(nodes[dependency], nodes[i], ());
            edges[i].push(dependency);
        }
    }

    let mut acyclic = true;
    for component in tarjan_scc(&graph) {
        if component.len() < 2 {
            continue;
        }
        acyclic = false;
        let members: HashSet<usize> = component.iter().map(|n| graph[*n]).collect();
        let Some(&start) = members.iter().min() else {
            continue;
        };
        let path = cycle_path(start, &members, &edges);
        let names: Vec<&str> = path.iter().map(|&i| steps[i].id().unwrap_or("?")).collect();
        // Point at the `needs` entry of the first step that closes the loop.
        let closer = path[path.len() - 2];
        let place = steps[start]
            .needs
            .iter()
            .find(|need| index.get(need.value.as_str()) == Some(&closer))
            .map_or((steps[start].node.pos, 1), |need| (need.pos, need.len));
        out.push(
            Diagnostic::new(place.0, place.1, format!("dependency cycle: {}", names.join(" -> ")))
                .help("remove one of these `needs` (a step without `needs` depends on the step listed before it)"),
        );
    }
    acyclic.then_some(Upstream { needs: edges })
}

/// A cycle through `start`, in execution order, ending where it began.
fn cycle_path(start: usize, members: &HashSet<usize>, needs: &[Vec<usize>]) -> Vec<usize> {
    // Walk "is needed by" edges: from a step to the steps that need it.
    let mut path = vec![start];
    let mut seen = HashSet::from([start]);
    fn walk(
        at: usize,
        start: usize,
        members: &HashSet<usize>,
        needs: &[Vec<usize>],
        path: &mut Vec<usize>,
        seen: &mut HashSet<usize>,
    ) -> bool {
        let mut next: Vec<usize> = (0..needs.len())
            .filter(|&j| members.contains(&j) && needs[j].contains(&at))
            .collect();
        next.sort_unstable();
        for j in next {
            if j == start {
                path.push(start);
                return true;
            }
            if seen.insert(j) {
                path.push(j);
                if walk(j, start, members, needs, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(start, start, members, needs, &mut path, &mut seen);
    path
}

/// Who is upstream of whom, answered on demand (most playbooks ask a handful of times).
pub(crate) struct Upstream {
    needs: Vec<Vec<usize>>,
}

impl Upstream {
    /// Whether `ancestor` finishes before `step` starts.
    pub(crate) fn is_upstream(&self, ancestor: usize, step: usize) -> bool {
        let mut stack = self.needs[step].clone();
        let mut seen = vec![false; self.needs.len()];
        while let Some(at) = stack.pop() {
            if at == ancestor {
                return true;
            }
            if !std::mem::replace(&mut seen[at], true) {
                stack.extend(&self.needs[at]);
            }
        }
        false
    }
}
