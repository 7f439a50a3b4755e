//! The plan as a picture, in Graphviz `dot` and Mermaid: the main flow left to right, the
//! cleanup steps in a box of their own after it (joined to the main flow's last steps by a
//! dotted "then", since they run at the end whatever happened), the critical path in red,
//! approvals with a double border, live-only steps filled, conditional steps dashed, and a
//! legend that says so.

use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::NodeIndex;

use super::{Plan, marks};
use crate::model::Step;
use crate::steps::Kind;

const CRITICAL: &str = "#c62828";
const LIVE_FILL: &str = "#ffe0b2";

impl Plan {
    pub fn render_dot(&self) -> String {
        let steps = &self.playbook.steps;
        let mut out = format!(
            "digraph {:?} {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
            self.playbook.name
        );
        let node = |out: &mut String, i: usize, indent: &str| {
            let step = &steps[i];
            let mut attributes = vec![format!("label={:?}", label(step, "\n"))];
            let mut style = Vec::new();
            if self.critical(i) {
                attributes.push(format!("color={CRITICAL:?}, penwidth=2.5"));
            }
            if is_approval(step) {
                attributes.push("peripheries=2".into());
            }
            if step.live_only {
                style.push("filled");
                attributes.push(format!("fillcolor={LIVE_FILL:?}"));
            }
            if step.when.is_some() {
                style.push("dashed");
            }
            if !style.is_empty() {
                attributes.push(format!("style={:?}", style.join(",")));
            }
            let _ = writeln!(out, "{indent}{:?} [{}];", step.id, attributes.join(", "));
        };
        for i in (0..steps.len()).filter(|&i| !steps[i].cleanup) {
            node(&mut out, i, "  ");
        }
        if steps.iter().any(|step| step.cleanup) {
            out.push_str("  subgraph cluster_cleanup {\n    label=\"cleanup (always runs at the end)\";\n    style=dashed;\n    color=gray50;\n    fontname=\"Helvetica\";\n");
            for i in (0..steps.len()).filter(|&i| steps[i].cleanup) {
                node(&mut out, i, "    ");
            }
            out.push_str("  }\n");
        }
        for (from, to) in self.edges() {
            let colour = if self.critical_edge(from, to) {
                format!(" [color={CRITICAL:?}, penwidth=2.5]")
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {:?} -> {:?}{colour};", steps[from].id, steps[to].id);
        }
        for (from, to) in self.then_edges() {
            let _ = writeln!(
                out,
                "  {:?} -> {:?} [style=dotted, color=gray50, label=\"then\"];",
                steps[from].id, steps[to].id
            );
        }
        let _ = writeln!(
            out,
            "  subgraph cluster_legend {{\n    label=\"legend\";\n    fontname=\"Helvetica\";\n    color=gray70;\n    node [fontsize=10];\n    \"legend: critical path\" [color={CRITICAL:?}, penwidth=2.5];\n    \"legend: approval before it\" [peripheries=2];\n    \"legend: live only\" [style=filled, fillcolor={LIVE_FILL:?}];\n    \"legend: conditional (when)\" [style=dashed];\n    \"legend: cleanup\" [shape=box, style=dashed, color=gray50];\n  }}"
        );
        out.push_str("}\n");
        out
    }

    pub fn render_mermaid(&self) -> String {
        let steps = &self.playbook.steps;
        let mut out = String::from("flowchart LR\n");
        let node = |out: &mut String, i: usize, indent: &str| {
            let step = &steps[i];
            let (open, close) = if step.cleanup {
                ("([", "])")
            } else if is_approval(step) {
                ("[[", "]]")
            } else {
                ("[", "]")
            };
            let _ = writeln!(
                out,
                "{indent}{}{open}\"{}\"{close}",
                mermaid_id(i),
                label(step, "<br/>").replace('"', "#quot;")
            );
        };
        for i in (0..steps.len()).filter(|&i| !steps[i].cleanup) {
            node(&mut out, i, "  ");
        }
        if steps.iter().any(|step| step.cleanup) {
            out.push_str("  subgraph cleanup [\"cleanup (always runs at the end)\"]\n");
            for i in (0..steps.len()).filter(|&i| steps[i].cleanup) {
                node(&mut out, i, "    ");
            }
            out.push_str("  end\n");
        }
        let mut critical_links = Vec::new();
        for (link, (from, to)) in self.edges().into_iter().enumerate() {
            let _ = writeln!(out, "  {} --> {}", mermaid_id(from), mermaid_id(to));
            if self.critical_edge(from, to) {
                critical_links.push(link.to_string());
            }
        }
        for (from, to) in self.then_edges() {
            let _ = writeln!(out, "  {} -.->|then| {}", mermaid_id(from), mermaid_id(to));
        }
        out.push_str("  subgraph legend [\"legend\"]\n    legend_critical[\"critical path\"]\n    legend_approval[[\"approval before it\"]]\n    legend_live[\"live only\"]\n    legend_conditional[\"conditional (when)\"]\n    legend_cleanup([\"cleanup\"])\n  end\n");
        let _ = writeln!(
            out,
            "  classDef critical stroke:{CRITICAL},stroke-width:3px\n  classDef live fill:{LIVE_FILL}\n  classDef conditional stroke-dasharray:5 4"
        );
        let class = |name: &str, mut members: Vec<String>, legend: &str, out: &mut String| {
            members.push(legend.to_owned());
            let _ = writeln!(out, "  class {} {name}", members.join(","));
        };
        let ids = |keep: &dyn Fn(usize) -> bool| -> Vec<String> {
            (0..steps.len())
                .filter(|&i| keep(i))
                .map(mermaid_id)
                .collect()
        };
        class(
            "critical",
            ids(&|i| self.critical(i)),
            "legend_critical",
            &mut out,
        );
        class(
            "live",
            ids(&|i| steps[i].live_only),
            "legend_live",
            &mut out,
        );
        class(
            "conditional",
            ids(&|i| steps[i].when.is_some()),
            "legend_conditional",
            &mut out,
        );
        if !critical_links.is_empty() {
            let _ = writeln!(
                out,
                "  linkStyle {} stroke:{CRITICAL},stroke-width:3px",
                critical_links.join(",")
            );
        }
        out
    }

    /// The `needs` edges, from a step to each step that needs it.
    fn edges(&self) -> Vec<(usize, usize)> {
        self.graph
            .raw_edges()
            .iter()
            .map(|edge| (self.graph[edge.source()], self.graph[edge.target()]))
            .collect()
    }

    /// From each last step of the main flow (no main step needs it) to each first cleanup step
    /// (it needs nothing): cleanup runs after the main flow, whichever way it ended.
    fn then_edges(&self) -> Vec<(usize, usize)> {
        let steps = &self.playbook.steps;
        let last: Vec<usize> = (0..steps.len())
            .filter(|&i| !steps[i].cleanup)
            .filter(|&i| {
                self.graph
                    .neighbors_directed(NodeIndex::new(i), Direction::Outgoing)
                    .all(|next| steps[self.graph[next]].cleanup)
            })
            .collect();
        let first: Vec<usize> = (0..steps.len())
            .filter(|&i| steps[i].cleanup)
            .filter(|&i| {
                self.graph
                    .neighbors_directed(NodeIndex::new(i), Direction::Incoming)
                    .next()
                    .is_none()
            })
            .collect();
        last.iter()
            .flat_map(|&from| first.iter().map(move |&to| (from, to)))
            .collect()
    }

    fn critical(&self, i: usize) -> bool {
        self.critical_path.contains(&i)
    }

    fn critical_edge(&self, from: usize, to: usize) -> bool {
        self.critical_path
            .windows(2)
            .any(|pair| pair[0] == from && pair[1] == to)
    }
}

/// Id, kind and marks, one per line.
fn label(step: &Step, newline: &str) -> String {
    let mut label = format!("{}{newline}{}", step.id, step.kind.name());
    let marks = marks(step);
    if !marks.is_empty() {
        label.push_str(newline);
        label.push_str(&marks.join(" · "));
    }
    label
}

fn is_approval(step: &Step) -> bool {
    step.approval.is_some() || step.kind == Kind::Approval
}

/// Mermaid reads some words (`end`, `graph`) as syntax: node ids are numbered.
fn mermaid_id(i: usize) -> String {
    format!("s{i}")
}
