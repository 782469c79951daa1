//! `dense` (TF's `tf.layers.dense`), activations as a layer option, and `dropout`.

use crate::regularizers::Regularizer;
use ferroflow_core::{
    keys, Error, Graph, Initializer, Result, Reuse, Tensor, VarOptions, Variable,
};

/// An activation function as a `dense` option: any of core's elementwise functions
/// (`Activation::Relu`, `Activation::Elu`, `Activation::Gelu`, `Activation::LeakyRelu { alpha }`, ...),
/// applied with [`Graph::unary_op`] and named as TF names it (`Relu`, `Elu`, ...).
pub use ferroflow_core::ops::unary::UnaryKind as Activation;

/// Whether a layer runs in training mode: a fixed bool, or a bool tensor decided at run time
/// (TF's `placeholder_with_default(False, shape=())` pattern).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Training {
    Bool(bool),
    Tensor(Tensor),
}

impl From<bool> for Training {
    fn from(b: bool) -> Self {
        Training::Bool(b)
    }
}
impl From<Tensor> for Training {
    fn from(t: Tensor) -> Self {
        Training::Tensor(t)
    }
}

/// The options of `tf.layers.dense` beyond input, units, activation and name.
#[derive(Clone, Debug)]
pub struct DenseOptions {
    pub activation: Option<Activation>,
    pub use_bias: bool,
    /// `None`: the variable-scope default, glorot_uniform.
    pub kernel_initializer: Option<Initializer>,
    pub bias_initializer: Initializer,
    pub kernel_regularizer: Option<Regularizer>,
    pub bias_regularizer: Option<Regularizer>,
    pub trainable: bool,
    pub name: Option<String>,
    /// `Reuse::Yes` shares the variables of an earlier layer of the same name.
    pub reuse: Reuse,
}

impl Default for DenseOptions {
    fn default() -> Self {
        DenseOptions {
            activation: None,
            use_bias: true,
            kernel_initializer: None,
            bias_initializer: Initializer::Zeros,
            kernel_regularizer: None,
            bias_regularizer: None,
            trainable: true,
            name: None,
            reuse: Reuse::No,
        }
    }
}

/// Picks `base`, `base_1`, ... : the first name whose variables do not exist yet (TF's unique layer names).
pub(crate) fn unique_layer_name(g: &Graph, base: &str, first_var: &str) -> String {
    let scope = g.current_variable_scope();
    let prefix = if scope.is_empty() {
        String::new()
    } else {
        format!("{scope}/")
    };
    let mut k = 0;
    loop {
        let name = if k == 0 {
            base.to_string()
        } else {
            format!("{base}_{k}")
        };
        if g.get_operation_by_name(&format!("{prefix}{name}/{first_var}"))
            .is_err()
        {
            return name;
        }
        k += 1;
    }
}

pub(crate) fn add_regularizer(g: &Graph, reg: &Option<Regularizer>, v: Variable) -> Result<()> {
    if let Some(r) = reg {
        let loss = {
            let _s = g.name_scope(&format!("{}/Regularizer/", v.op_name(g)))?;
            r.apply(g, v.value())?
        };
        g.add_to_collection(keys::REGULARIZATION_LOSSES, loss);
    }
    Ok(())
}

/// `tf.layers.dense(input, units, activation, name=name)`.
pub fn dense(
    g: &Graph,
    input: Tensor,
    units: usize,
    activation: Option<Activation>,
    name: &str,
) -> Result<Tensor> {
    dense_with(
        g,
        input,
        units,
        DenseOptions {
            activation,
            name: Some(name.to_string()),
            ..Default::default()
        },
    )
}

/// `tf.layers.dense` with every option: variables `<name>/kernel` `[in, units]` then `<name>/bias`
/// (named by variable scopes only), ops `<name scope>/<name>/MatMul`, `BiasAdd`, then the activation.
/// The same name again without reuse is an error naming the variable.
pub fn dense_with(g: &Graph, input: Tensor, units: usize, opts: DenseOptions) -> Result<Tensor> {
    let info = g.info(input)?;
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| unique_layer_name(g, "dense", "kernel"));
    let in_dim = info
        .shape
        .dims()
        .and_then(|d| d.last().copied().flatten())
        .ok_or_else(|| Error::Shape {
            node: name.clone(),
            op: "dense".into(),
            message: format!(
                "the input's last dimension must be known, got shape {}",
                info.shape
            ),
        })?;
    let _vs = g.variable_scope_with(&name, opts.reuse)?;
    let kernel = g.get_variable_with(
        "kernel",
        &[in_dim, units],
        info.dtype,
        VarOptions {
            initializer: opts.kernel_initializer.clone(),
            trainable: opts.trainable,
            collections: None,
        },
    )?;
    add_regularizer(g, &opts.kernel_regularizer, kernel)?;
    let mut out = g.named("MatMul").matmul(input, kernel)?;
    if opts.use_bias {
        let bias = g.get_variable_with(
            "bias",
            &[units],
            info.dtype,
            VarOptions {
                initializer: Some(opts.bias_initializer.clone()),
                trainable: opts.trainable,
                collections: None,
            },
        )?;
        add_regularizer(g, &opts.bias_regularizer, bias)?;
        out = g.named("BiasAdd").bias_add(out, bias)?;
    }
    if let Some(a) = opts.activation {
        out = g.unary_op(a, out)?;
    }
    Ok(out)
}

/// `tf.layers.dropout(x, rate, training)`: in training, each element is zeroed with probability `rate`
/// and the rest scaled by 1/(1-rate); in inference, the identity.
pub fn dropout(
    g: &Graph,
    x: Tensor,
    rate: f64,
    training: impl Into<Training>,
    seed: Option<u64>,
) -> Result<Tensor> {
    if !(0.0..1.0).contains(&rate) {
        return Err(Error::InvalidArgument {
            node: "dropout".into(),
            op: "dropout".into(),
            message: format!("rate must be in [0, 1), got {rate}"),
        });
    }
    let training = training.into();
    if training == Training::Bool(false) {
        return Ok(x);
    }
    let _s = g.name_scope("dropout")?;
    let u = g.random_uniform_like(x, seed)?;
    let keep = g.cast(g.greater_equal(u, g.scalar_like(x, rate)?)?, g.dtype(x)?)?;
    let dropped = g.mul(g.div(x, g.scalar_like(x, 1.0 - rate)?)?, keep)?;
    match training {
        Training::Bool(_) => Ok(dropped),
        Training::Tensor(t) => g.select(t, dropped, x),
    }
}
