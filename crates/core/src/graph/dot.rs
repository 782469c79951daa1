//! Graph pictures: Graphviz DOT with name scopes drawn as nested clusters (`dnn` → `dnn/hidden1`).

use super::Graph;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Default)]
struct Scope {
    nodes: Vec<usize>,
    children: BTreeMap<String, Scope>,
}

fn quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

impl Graph {
    /// The graph in Graphviz DOT: one box per op (name and type), data edges solid, control edges
    /// dashed, and each name scope a cluster. With `hide_gradients`, the `gradients*` scopes are left
    /// out (with their edges).
    pub fn to_dot(&self, hide_gradients: bool) -> String {
        let nodes: Vec<(String, String, Vec<usize>, Vec<usize>)> = self.with_inner(|g| {
            g.nodes
                .iter()
                .map(|n| {
                    (
                        n.name.clone(),
                        n.op.type_name().to_string(),
                        n.inputs.clone(),
                        n.control_inputs.clone(),
                    )
                })
                .collect()
        });
        let hidden = |name: &str| hide_gradients && super::naming::is_gradient_name(name);
        let mut root = Scope::default();
        for (id, (name, ..)) in nodes.iter().enumerate() {
            if hidden(name) {
                continue;
            }
            let mut scope = &mut root;
            let parts: Vec<&str> = name.split('/').collect();
            let mut path = String::new();
            for p in &parts[..parts.len() - 1] {
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(p);
                scope = scope.children.entry(path.clone()).or_default();
            }
            scope.nodes.push(id);
        }
        let mut out = String::from(
            "digraph ferroflow {\n  rankdir=BT;\n  node [shape=box, style=rounded, fontsize=10];\n",
        );
        fn emit(
            out: &mut String,
            scope: &Scope,
            nodes: &[(String, String, Vec<usize>, Vec<usize>)],
            depth: usize,
            counter: &mut usize,
        ) {
            let pad = "  ".repeat(depth + 1);
            for &id in &scope.nodes {
                let (name, ty, ..) = &nodes[id];
                let short = name.rsplit('/').next().unwrap_or(name);
                let _ = writeln!(
                    out,
                    "{pad}n{id} [label={}];",
                    quote(&format!("{short}\n{ty}"))
                );
            }
            for (path, child) in &scope.children {
                *counter += 1;
                let _ = writeln!(out, "{pad}subgraph cluster_{counter} {{");
                let _ = writeln!(
                    out,
                    "{pad}  label={}; style=rounded; color=gray50;",
                    quote(path)
                );
                emit(out, child, nodes, depth + 1, counter);
                let _ = writeln!(out, "{pad}}}");
            }
        }
        let mut counter = 0;
        emit(&mut out, &root, &nodes, 0, &mut counter);
        for (id, (name, _, inputs, controls)) in nodes.iter().enumerate() {
            if hidden(name) {
                continue;
            }
            for &i in inputs {
                if !hidden(&nodes[i].0) {
                    let _ = writeln!(out, "  n{i} -> n{id};");
                }
            }
            for &c in controls {
                if !hidden(&nodes[c].0) {
                    let _ = writeln!(out, "  n{c} -> n{id} [style=dashed];");
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Graph};

    #[test]
    fn scopes_become_nested_clusters_and_gradients_can_be_hidden() {
        let g = Graph::new();
        let x = g
            .named("X")
            .placeholder(DType::F32, [None, Some(2)])
            .unwrap();
        let h = {
            let _d = g.name_scope("dnn").unwrap();
            let _h = g.name_scope("hidden1").unwrap();
            g.relu(x).unwrap()
        };
        let loss = g.reduce_sum(h, None, false).unwrap();
        g.gradients(&[loss], &[x]).unwrap();
        let dot = g.to_dot(false);
        assert!(dot.starts_with("digraph ferroflow {") && dot.trim_end().ends_with('}'));
        assert!(
            dot.contains("label=\"dnn\"")
                && dot.contains("label=\"dnn/hidden1\"")
                && dot.contains("label=\"gradients\""),
            "{dot}"
        );
        assert!(
            dot.contains("[label=\"Relu\\nRelu\"]") || dot.contains("label=\"Relu\nRelu\""),
            "{dot}"
        );
        let hidden = g.to_dot(true);
        assert!(
            !hidden.contains("label=\"gradients\"") && hidden.contains("label=\"dnn/hidden1\"")
        );
        assert_eq!(dot.matches('{').count(), dot.matches('}').count());
    }
}
