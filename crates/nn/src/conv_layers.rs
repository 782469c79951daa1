//! TF1's convolutional layers: `tf.layers.conv2d`, `max_pooling2d`, `average_pooling2d` and
//! `flatten`, over NHWC data, with TF's variable and op names (`conv2d/kernel`
//! `[k_h, k_w, in, filters]`, `conv2d/bias`, ops `conv2d/Conv2D`, `conv2d/BiasAdd`, then the
//! activation; `max_pooling2d/MaxPool`; `flatten/Reshape`), so that checkpoints of TF CNNs restore
//! by name. As in TF the layers default to VALID padding.

use crate::layers::{add_regularizer, unique_layer_name, Activation};
use crate::regularizers::Regularizer;
use ferroflow_core::ops::conv::{ConvAttrs, Padding};
use ferroflow_core::{Error, Graph, Initializer, Result, Reuse, Tensor, VarOptions};

/// The options of `tf.layers.conv2d` beyond input, filters and kernel size.
#[derive(Clone, Debug)]
pub struct Conv2dOptions {
    /// `[s_h, s_w]`.
    pub strides: [usize; 2],
    pub padding: Padding,
    /// `[d_h, d_w]` (TF's `dilation_rate`).
    pub dilation_rate: [usize; 2],
    pub activation: Option<Activation>,
    pub use_bias: bool,
    /// `None`: the variable-scope default, glorot_uniform (fans over the receptive field, as TF).
    pub kernel_initializer: Option<Initializer>,
    pub bias_initializer: Initializer,
    pub kernel_regularizer: Option<Regularizer>,
    pub bias_regularizer: Option<Regularizer>,
    pub trainable: bool,
    /// `None`: `conv2d`, `conv2d_1`, ... (the first whose variables do not exist yet).
    pub name: Option<String>,
    /// `Reuse::Yes` shares the variables of an earlier layer of the same name.
    pub reuse: Reuse,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            strides: [1, 1],
            padding: Padding::Valid,
            dilation_rate: [1, 1],
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

fn parse_padding(padding: &str, layer: &str) -> Result<Padding> {
    Padding::parse(padding).ok_or_else(|| Error::InvalidArgument {
        node: layer.into(),
        op: layer.into(),
        message: format!("padding '{padding}': expected 'same' or 'valid'"),
    })
}

/// `tf.layers.conv2d(inputs, filters, kernel_size, strides, padding, activation=..., name=...)`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    g: &Graph,
    inputs: Tensor,
    filters: usize,
    kernel_size: [usize; 2],
    strides: [usize; 2],
    padding: &str,
    activation: Option<Activation>,
    name: &str,
) -> Result<Tensor> {
    let options = Conv2dOptions {
        strides,
        padding: parse_padding(padding, name)?,
        activation,
        name: Some(name.to_string()),
        ..Default::default()
    };
    conv2d_with(g, inputs, filters, kernel_size, options)
}

/// `tf.layers.conv2d` with every option. The input's channel count must be known; the same name
/// again without reuse is an error naming the variable.
pub fn conv2d_with(
    g: &Graph,
    inputs: Tensor,
    filters: usize,
    kernel_size: [usize; 2],
    opts: Conv2dOptions,
) -> Result<Tensor> {
    let info = g.info(inputs)?;
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| unique_layer_name(g, "conv2d", "kernel"));
    let channels = match info.shape.dims() {
        Some([_, _, _, Some(c)]) => *c,
        _ => {
            return Err(Error::Shape {
                node: name,
                op: "conv2d".into(),
                message: format!(
                    "the input must be rank 4 (NHWC) with a known channel count, got shape {}",
                    info.shape
                ),
            })
        }
    };
    let _vs = g.variable_scope_with(&name, opts.reuse)?;
    let var = |n: &str, shape: &[usize], init: Option<Initializer>| {
        g.get_variable_with(
            n,
            shape,
            info.dtype,
            VarOptions {
                initializer: init,
                trainable: opts.trainable,
                collections: None,
            },
        )
    };
    let kernel = var(
        "kernel",
        &[kernel_size[0], kernel_size[1], channels, filters],
        opts.kernel_initializer.clone(),
    )?;
    add_regularizer(g, &opts.kernel_regularizer, kernel)?;
    let attrs = ConvAttrs {
        strides: opts.strides,
        dilations: opts.dilation_rate,
        padding: opts.padding,
    };
    let mut out = g.named("Conv2D").conv2d_with(inputs, kernel, attrs)?;
    if opts.use_bias {
        let bias = var("bias", &[filters], Some(opts.bias_initializer.clone()))?;
        add_regularizer(g, &opts.bias_regularizer, bias)?;
        out = g.named("BiasAdd").bias_add(out, bias)?;
    }
    if let Some(a) = opts.activation {
        out = g.unary_op(a, out)?;
    }
    Ok(out)
}

/// A layer without variables: `op` under the name scope `layer` (uniquified as TF does: `layer`,
/// `layer_1`, ...).
fn in_scope(g: &Graph, layer: &str, op: impl FnOnce(&Graph) -> Result<Tensor>) -> Result<Tensor> {
    let _s = g.name_scope(layer)?;
    op(g)
}

/// `tf.layers.max_pooling2d(inputs, pool_size, strides, padding, name=...)`.
pub fn max_pooling2d(
    g: &Graph,
    inputs: Tensor,
    pool_size: [usize; 2],
    strides: [usize; 2],
    padding: &str,
    name: Option<&str>,
) -> Result<Tensor> {
    in_scope(g, name.unwrap_or("max_pooling2d"), |g| {
        g.named("MaxPool")
            .max_pool(inputs, &pool_size, &strides, padding)
    })
}

/// `tf.layers.average_pooling2d(inputs, pool_size, strides, padding, name=...)`.
pub fn average_pooling2d(
    g: &Graph,
    inputs: Tensor,
    pool_size: [usize; 2],
    strides: [usize; 2],
    padding: &str,
    name: Option<&str>,
) -> Result<Tensor> {
    in_scope(g, name.unwrap_or("average_pooling2d"), |g| {
        g.named("AvgPool")
            .avg_pool(inputs, &pool_size, &strides, padding)
    })
}

/// `tf.layers.flatten(inputs)`: `[N, d1, d2, ...]` to `[N, d1·d2·...]` (the trailing dimensions
/// must be known), op `flatten/Reshape`.
pub fn flatten(g: &Graph, inputs: Tensor, name: Option<&str>) -> Result<Tensor> {
    let layer = name.unwrap_or("flatten");
    let shape = g.shape(inputs)?;
    let rest: Option<usize> = shape.dims().filter(|d| !d.is_empty()).and_then(|d| {
        d[1..]
            .iter()
            .try_fold(1usize, |a, &x| x.and_then(|x| a.checked_mul(x)))
    });
    let Some(rest) = rest else {
        return Err(Error::Shape {
            node: layer.into(),
            op: "flatten".into(),
            message: format!("every dimension but the first must be known, got shape {shape}"),
        });
    };
    in_scope(g, layer, |g| {
        g.named("Reshape").reshape(inputs, &[-1, rest as i64])
    })
}
