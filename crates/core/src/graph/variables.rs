//! Variables: `tf.Variable` (honours name scopes), `tf.get_variable` (uses variable scopes only, with
//! TF's reuse rules) and the initializer ops.

use super::naming::Reuse;
use super::{keys, Graph, Operation, Tensor};
use crate::dtype::{DType, Shape};
use crate::error::{Error, Result};
use crate::init::Initializer;
use crate::ops::state::{Assign, AssignMode, Identity, VariableOp};

/// A variable: its storage node (`v:0`), the read of its value (`v/read:0`) and its initializer
/// (`v/Assign`). Its value lives in each session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variable {
    pub(crate) var: usize,
    pub(crate) read: usize,
    pub(crate) init: usize,
}

impl Variable {
    /// The variable's value as a tensor (`v/read:0`), the input ops should use.
    pub fn value(self) -> Tensor {
        Tensor { id: self.read }
    }
    /// The storage node as a tensor (`v:0`): the name collections and `get_tensor_by_name` use.
    pub fn var_tensor(self) -> Tensor {
        Tensor { id: self.var }
    }
    /// The op that initializes the variable (`v/Assign`).
    pub fn initializer(self) -> Operation {
        Operation { id: self.init }
    }
    /// The tensor name, `hidden1/kernel:0`.
    pub fn name(self, g: &Graph) -> String {
        g.tensor_name(self.var_tensor())
    }
    /// The op name, `hidden1/kernel` (TF's `var.op.name`, the Saver's default key).
    pub fn op_name(self, g: &Graph) -> String {
        g.op_name(self.var_tensor())
    }
    /// The static shape.
    pub fn shape(self, g: &Graph) -> Shape {
        g.shape(self.var_tensor())
            .unwrap_or_else(|_| Shape::unknown())
    }
    /// The dtype.
    pub fn dtype(self, g: &Graph) -> DType {
        g.dtype(self.var_tensor()).unwrap_or(DType::F32)
    }
    /// The storage node's index in the graph.
    pub fn index(self) -> usize {
        self.var
    }
}

impl From<Variable> for Tensor {
    fn from(v: Variable) -> Tensor {
        v.value()
    }
}

/// Options of `get_variable` beyond name, shape and dtype.
#[derive(Clone, Debug)]
pub struct VarOptions {
    /// Initializer; `None` is glorot_uniform for floats and zeros otherwise, as in TF.
    pub initializer: Option<Initializer>,
    /// Added to TRAINABLE_VARIABLES when true (the default).
    pub trainable: bool,
    /// Collections to add to instead of GLOBAL_VARIABLES (TRAINABLE_VARIABLES is still added when trainable).
    pub collections: Option<Vec<String>>,
}

impl Default for VarOptions {
    fn default() -> Self {
        VarOptions {
            initializer: None,
            trainable: true,
            collections: None,
        }
    }
}

impl VarOptions {
    /// Options with the given initializer.
    pub fn init(initializer: Initializer) -> Self {
        VarOptions {
            initializer: Some(initializer),
            ..Default::default()
        }
    }
    /// Marks the variable trainable or not.
    pub fn trainable(mut self, trainable: bool) -> Self {
        self.trainable = trainable;
        self
    }
}

impl Graph {
    /// Creates the storage, `Assign` and `read` nodes of a variable whose op name is exactly `full_name`.
    fn make_variable(
        &self,
        full_name: &str,
        init_value: Tensor,
        trainable: bool,
        collections: Option<&[String]>,
    ) -> Result<Variable> {
        let info = self.info(init_value)?;
        if info.shape.rank().is_none() {
            return Err(Error::Shape {
                node: full_name.into(),
                op: "VariableV2".into(),
                message: "a variable's initial value must have a known rank".into(),
            });
        }
        // TF's init_scope: a variable and its initializer never inherit the active control dependencies
        // (a slot created inside `control_dependencies(UPDATE_OPS)` must be initializable on its own).
        let saved_ctrl = self.with_inner_mut(|g| std::mem::take(&mut g.control_stack));
        let made = self.make_variable_nodes(full_name, init_value, &info);
        self.with_inner_mut(|g| g.control_stack = saved_ctrl);
        let (var, init, read) = made?;
        let v = Variable {
            var: var.id,
            read: read.id,
            init: init.id,
        };
        match collections {
            Some(cs) => {
                for c in cs {
                    self.add_to_collection(c, v);
                }
            }
            None => self.add_to_collection(keys::GLOBAL_VARIABLES, v),
        }
        if trainable {
            self.add_to_collection(keys::TRAINABLE_VARIABLES, v);
        }
        Ok(v)
    }

    fn make_variable_nodes(
        &self,
        full_name: &str,
        init_value: Tensor,
        info: &crate::dtype::TensorInfo,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let scope = self.name_scope(&format!("{full_name}/"))?;
        let var = self.add_node(
            VariableOp {
                dtype: info.dtype,
                shape: info.shape.clone(),
            }
            .into(),
            &[],
            Some(&format!("{full_name}/")),
            "",
        )?;
        let init = self.add_node(
            Assign {
                mode: AssignMode::Set,
            }
            .into(),
            &[var, init_value],
            Some("Assign"),
            "Assign",
        )?;
        let read = self.add_node(Identity.into(), &[var], Some("read"), "read")?;
        drop(scope);
        Ok((var, init, read))
    }

    /// `tf.Variable(initial_value, name=name, trainable=trainable)`: honours name scopes (`ns/w:0`);
    /// an empty name gives `Variable`, `Variable_1`, ...
    pub fn variable(
        &self,
        name: &str,
        initial_value: impl Into<Tensor>,
        trainable: bool,
    ) -> Result<Variable> {
        let init = initial_value.into();
        let scope = self.name_scope(if name.is_empty() { "Variable" } else { name })?;
        let full = scope.scope().trim_end_matches('/').to_string();
        drop(scope);
        self.make_variable(&full, init, trainable, None)
    }

    /// `tf.get_variable(name, shape, dtype)` with default options.
    pub fn get_variable(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Variable> {
        self.get_variable_with(name, shape, dtype, VarOptions::default())
    }

    /// `tf.get_variable(name, shape, dtype, initializer, trainable, collections)`.
    ///
    /// The variable is named by the variable scopes only (`vs/name`), ignoring name scopes, as in TF.
    /// Reuse follows the innermost variable scope: without reuse an existing name is an error; with
    /// reuse a missing name, or a different shape or dtype, is an error; AUTO_REUSE creates or returns.
    /// The initializer's ops go under `<name>/Initializer/`.
    pub fn get_variable_with(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        opts: VarOptions,
    ) -> Result<Variable> {
        super::naming::validate_name(name, false)?;
        let (vs, reuse) = self.with_inner(|g| g.current_var_scope());
        let full = if vs.is_empty() {
            name.to_string()
        } else {
            format!("{vs}/{name}")
        };
        let existing = self.with_inner(|g| g.variables.get(&full).copied());
        if let Some(v) = existing {
            if reuse == Reuse::No {
                return Err(Error::VariableExists { name: full });
            }
            let (found_shape, found_dtype) = (v.shape(self), v.dtype(self));
            if found_shape != Shape::known(shape) {
                return Err(Error::VariableMismatch {
                    name: full,
                    requested: format!("shape {}", Shape::known(shape)),
                    found: format!("shape {found_shape}"),
                });
            }
            if found_dtype != dtype {
                return Err(Error::VariableMismatch {
                    name: full,
                    requested: format!("dtype {dtype}"),
                    found: format!("dtype {found_dtype}"),
                });
            }
            return Ok(v);
        }
        if reuse == Reuse::Yes {
            return Err(Error::VariableMissing { name: full });
        }
        let initializer = opts.initializer.clone().unwrap_or(if dtype.is_float() {
            Initializer::glorot_uniform()
        } else {
            Initializer::Zeros
        });
        let init_value = self.initial_value(&full, &initializer, shape, dtype)?;
        let v = self.make_variable(
            &full,
            init_value,
            opts.trainable,
            opts.collections.as_deref(),
        )?;
        self.with_inner_mut(|g| g.variables.insert(full, v));
        Ok(v)
    }

    /// Creates a variable named `name` from the root (ignoring every scope), uniquified if taken, with
    /// its initializer under `<name>/Initializer/`. Optimizers make their slots this way
    /// (`hidden1/kernel/Adam`, then `hidden1/kernel/Adam_1`), as TF's slot creator does.
    pub fn root_variable(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        initializer: &Initializer,
        trainable: bool,
    ) -> Result<Variable> {
        let _root = self.name_scope("")?;
        let full = self.unique_name(name, false);
        let init_value = self.initial_value(&full, initializer, shape, dtype)?;
        self.make_variable(&full, init_value, trainable, None)
    }

    /// Builds an initial value under `<full>/Initializer/`, outside any control-dependency scope.
    fn initial_value(
        &self,
        full: &str,
        initializer: &Initializer,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let saved_ctrl = self.with_inner_mut(|g| std::mem::take(&mut g.control_stack));
        let built = (|| {
            let _abs = self.name_scope(&format!("{full}/"))?;
            let _init = self.name_scope("Initializer")?;
            initializer.build(self, shape, dtype)
        })();
        self.with_inner_mut(|g| g.control_stack = saved_ctrl);
        built
    }

    /// Rebuilds a variable handle from the names of its storage, read and initializer nodes (meta-graph
    /// import).
    pub fn variable_from_names(&self, var: &str, read: &str, init: &str) -> Result<Variable> {
        Ok(Variable {
            var: self.get_operation_by_name(var)?.index(),
            read: self.get_operation_by_name(read)?.index(),
            init: self.get_operation_by_name(init)?.index(),
        })
    }

    /// The variables made by `get_variable`, by full name (so that imported graphs keep reuse working).
    pub fn get_variable_store(&self) -> Vec<(String, Variable)> {
        let mut v: Vec<(String, Variable)> =
            self.with_inner(|g| g.variables.iter().map(|(k, v)| (k.clone(), *v)).collect());
        v.sort_by_key(|(_, var)| var.var);
        v
    }

    /// Registers a variable under a full name for `get_variable` reuse (meta-graph import).
    pub fn register_variable(&self, full_name: &str, v: Variable) {
        self.with_inner_mut(|g| g.variables.insert(full_name.to_string(), v));
    }

    /// The names of a variable's storage, read and initializer nodes.
    pub fn variable_names(&self, v: Variable) -> (String, String, String) {
        (
            self.op_name(v.var_tensor()),
            self.op_name(v.value()),
            self.op_name(v.initializer()),
        )
    }

    /// `tf.variables_initializer(vars)`: one op that runs every variable's initializer (named `init`).
    pub fn variables_initializer(&self, vars: &[Variable]) -> Result<Operation> {
        let ops: Vec<Operation> = vars.iter().map(|v| v.initializer()).collect();
        let name = self.take_pending_name().unwrap_or_else(|| "init".into());
        self.named(&name);
        self.group(&ops)
    }

    /// `tf.global_variables_initializer()`: initializes every variable in GLOBAL_VARIABLES.
    pub fn global_variables_initializer(&self) -> Result<Operation> {
        let vars = self.global_variables();
        self.variables_initializer(&vars)
    }
}
