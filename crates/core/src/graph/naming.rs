//! TF1 naming: op-name uniquification, name scopes, variable scopes and control-dependency scopes.

use super::{Graph, Operation};
use crate::error::{Error, Result};

/// How `get_variable` treats an existing variable (TF's `reuse` argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Creating an existing variable is an error (`reuse=False`).
    No,
    /// The variable must exist and is returned (`reuse=True`).
    Yes,
    /// Create if missing, else return the existing one (`reuse=tf.AUTO_REUSE`).
    Auto,
}

#[derive(Clone, Debug)]
pub(crate) struct VarScopeFrame {
    /// Full variable-scope path without trailing slash (`"a/b"`).
    pub(crate) name: String,
    pub(crate) reuse: Reuse,
}

/// Restores the graph's name stack (and pops a variable scope or control-dependency frame) when dropped:
/// the Rust counterpart of leaving a Python `with` block.
#[must_use = "the scope ends when this guard is dropped"]
pub struct ScopeGuard {
    graph: Graph,
    saved_stack: Option<String>,
    pop_var_scope: bool,
    pop_control: bool,
    scope: String,
}

impl ScopeGuard {
    /// The scope string with a trailing slash (`"dnn/"`), as TF's `name_scope` yields; empty at the root.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        self.graph.with_inner_mut(|g| {
            if let Some(s) = self.saved_stack.take() {
                g.name_stack = s;
            }
            if self.pop_var_scope {
                g.var_scopes.pop();
            }
            if self.pop_control {
                g.control_stack.pop();
            }
        });
    }
}

/// Whether a node's name lies under the scope that `gradients` builds its nodes in (`gradients/`,
/// or `gradients_N/` for later calls, as in TF).
pub fn is_gradient_name(name: &str) -> bool {
    name.split('/')
        .next()
        .is_some_and(|s| s == "gradients" || s.starts_with("gradients_"))
}

/// TF's name validity rules: root names may not start with `_`, `-`, `/`, `\\` or `>`.
pub(crate) fn validate_name(name: &str, at_root: bool) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_.\\/>-".contains(c);
    let first_ok = |c: char| c.is_ascii_alphanumeric() || c == '.';
    let valid = !name.is_empty()
        && name.chars().all(ok_char)
        && (!at_root || name.chars().next().is_some_and(first_ok));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: name.to_string(),
            message: "names must match ^[A-Za-z0-9.][A-Za-z0-9_.\\\\/>-]*$ (inside a scope the first character may also be _.\\/>-)"
                .into(),
        })
    }
}

impl super::GraphInner {
    /// TF's `Graph.unique_name`: prefixes the name stack, then appends `_k` on a case-insensitive collision.
    pub(crate) fn unique_name(&mut self, name: &str, mark_as_used: bool) -> String {
        let mut name = if self.name_stack.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.name_stack, name)
        };
        let mut key = name.to_lowercase();
        let mut i = self.names_in_use.get(&key).copied().unwrap_or(0);
        if mark_as_used {
            self.names_in_use.insert(key.clone(), i + 1);
        }
        if i > 0 {
            let base_key = key.clone();
            while self.names_in_use.contains_key(&key) {
                key = format!("{base_key}_{i}");
                i += 1;
            }
            if mark_as_used {
                self.names_in_use.insert(key, 1);
            }
            name = format!("{}_{}", name, i - 1);
        }
        name
    }

    pub(crate) fn current_var_scope(&self) -> (String, Reuse) {
        self.var_scopes
            .last()
            .map(|f| (f.name.clone(), f.reuse))
            .unwrap_or((String::new(), Reuse::No))
    }
}

impl Graph {
    /// Opens a name scope (TF's `tf.name_scope(name)`), closed when the guard drops.
    ///
    /// Re-entering a name uniquifies the scope (`hidden1`, then `hidden1_1`); a name ending in `/` is
    /// used verbatim as an absolute scope (re-entering a captured scope); `""` returns to the root.
    pub fn name_scope(&self, name: &str) -> Result<ScopeGuard> {
        let (saved, scope) = self.with_inner_mut(|g| -> Result<(String, String)> {
            let saved = g.name_stack.clone();
            let new_stack = if name.is_empty() {
                String::new()
            } else if let Some(abs) = name.strip_suffix('/') {
                abs.to_string()
            } else {
                validate_name(name, g.name_stack.is_empty())?;
                g.unique_name(name, true)
            };
            g.name_stack = new_stack.clone();
            let scope = if new_stack.is_empty() {
                String::new()
            } else {
                format!("{new_stack}/")
            };
            Ok((saved, scope))
        })?;
        Ok(ScopeGuard {
            graph: self.clone(),
            saved_stack: Some(saved),
            pop_var_scope: false,
            pop_control: false,
            scope,
        })
    }

    /// Opens a variable scope that inherits the enclosing scope's reuse (TF's `tf.variable_scope(name)`).
    pub fn variable_scope(&self, name: &str) -> Result<ScopeGuard> {
        let inherited = self.with_inner(|g| g.current_var_scope().1);
        self.variable_scope_with(name, inherited)
    }

    /// Opens a variable scope with an explicit reuse mode. `Reuse::No` inside a reusing scope still
    /// inherits reuse, as in TF (reuse can be turned on, never off, by nesting).
    ///
    /// Like TF, this also opens a name scope: re-entering `vs` keeps variable names `vs/...` while
    /// the ops go to `vs_1/...`.
    pub fn variable_scope_with(&self, name: &str, reuse: Reuse) -> Result<ScopeGuard> {
        let (saved, scope) = self.with_inner_mut(|g| -> Result<(String, String)> {
            validate_name(name, true)?;
            let (outer, outer_reuse) = g.current_var_scope();
            let full = if outer.is_empty() {
                name.to_string()
            } else {
                format!("{outer}/{name}")
            };
            let reuse = match (outer_reuse, reuse) {
                (Reuse::Yes, _) => Reuse::Yes,
                (Reuse::Auto, Reuse::No) => Reuse::Auto,
                (_, r) => r,
            };
            g.var_scopes.push(VarScopeFrame { name: full, reuse });
            let saved = g.name_stack.clone();
            let stack = g.unique_name(name, true);
            g.name_stack = stack.clone();
            Ok((saved, format!("{stack}/")))
        })?;
        Ok(ScopeGuard {
            graph: self.clone(),
            saved_stack: Some(saved),
            pop_var_scope: true,
            pop_control: false,
            scope,
        })
    }

    /// Turns on reuse for the innermost variable scope (TF's `scope.reuse_variables()`).
    pub fn reuse_variables(&self) {
        self.with_inner_mut(|g| {
            if let Some(f) = g.var_scopes.last_mut() {
                f.reuse = Reuse::Yes;
            }
        })
    }

    /// The current name scope with a trailing slash (`"dnn/hidden1/"`), or `""` at the root.
    pub fn current_name_scope(&self) -> String {
        self.with_inner(|g| {
            if g.name_stack.is_empty() {
                String::new()
            } else {
                format!("{}/", g.name_stack)
            }
        })
    }

    /// The current variable scope path (`"hidden1"`), or `""` at the root.
    pub fn current_variable_scope(&self) -> String {
        self.with_inner(|g| g.current_var_scope().0)
    }

    /// Every op created while the guard lives gets `ops` as control inputs
    /// (TF's `tf.control_dependencies(ops)`).
    pub fn control_dependencies(&self, ops: &[Operation]) -> Result<ScopeGuard> {
        let ids: Vec<usize> = ops.iter().map(|o| o.id).collect();
        self.with_inner_mut(|g| -> Result<()> {
            for &i in &ids {
                if i >= g.nodes.len() {
                    return Err(Error::NotFound {
                        what: format!("operation #{i} (from another graph?)"),
                    });
                }
            }
            g.control_stack.push(ids);
            Ok(())
        })?;
        Ok(ScopeGuard {
            graph: self.clone(),
            saved_stack: None,
            pop_var_scope: false,
            pop_control: true,
            scope: String::new(),
        })
    }

    /// Returns a name that is unique in the graph given the current name stack, without creating an op.
    pub fn unique_name(&self, name: &str, mark_as_used: bool) -> String {
        self.with_inner_mut(|g| g.unique_name(name, mark_as_used))
    }
}
