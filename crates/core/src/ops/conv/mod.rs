//! 2-D convolution over NHWC data with HWIO filters, TF's `Conv2D`, and its gradients as ops of their
//! own, `Conv2DBackpropInput` and `Conv2DBackpropFilter`, each differentiable again (all three are
//! bilinear in their data inputs, so each one's gradient is built from the other two). The window
//! geometry (TF's output sizes and SAME padding) lives here; the kernels are the backend's
//! (`ferroflow_cpu::conv`). Pooling is in [`pool`].
//!
//! TF's backprop ops take the shape they produce as an int32 tensor (`input_sizes`,
//! `filter_sizes`); here they take the input or the filter itself and read its shape, as
//! `ReshapeLike` does: the graph has no shape tensors, and the tensor is alive anyway (the filter is
//! a variable, and the input is what the filter gradient reads).

use super::kernels::{by_float, float_input, FloatArray};
use super::tf::{nhwc, TfAttr, TfNode};
use super::{expect_arity, expect_float, same_dtype, GradContext, InferError, InferResult, OpDef};
use crate::dtype::{Dim, Shape, TensorInfo};
use crate::error::{Error, KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::conv::Window2d;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

pub mod pool;

#[cfg(test)]
mod tests;

/// TF's `padding` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Padding {
    /// Output size ⌈in / stride⌉, the window centred: the padding `max((out-1)·stride + window - in,
    /// 0)` split with the smaller half before (TF's asymmetric SAME padding).
    Same,
    /// No padding: output size ⌈(in - window + 1) / stride⌉.
    Valid,
}

impl Padding {
    /// `"SAME"` or `"VALID"` (either case, as `tf.layers` takes them).
    pub fn parse(s: &str) -> Option<Padding> {
        match s.to_ascii_uppercase().as_str() {
            "SAME" => Some(Padding::Same),
            "VALID" => Some(Padding::Valid),
            _ => None,
        }
    }

    /// TF's spelling.
    pub fn tf_name(self) -> &'static str {
        match self {
            Padding::Same => "SAME",
            Padding::Valid => "VALID",
        }
    }

    /// Output size and padding before, along one spatial axis of `input` values, for a window of
    /// `k` taps `dilation` apart moved by `stride`.
    pub fn out_and_pad(
        self,
        input: usize,
        k: usize,
        stride: usize,
        dilation: usize,
    ) -> std::result::Result<(usize, usize), String> {
        if k == 0 || stride == 0 || dilation == 0 {
            return Err(format!(
                "window {k}, stride {stride} and dilation {dilation} must all be at least 1"
            ));
        }
        let span = (k - 1)
            .checked_mul(dilation)
            .map(|s| s + 1)
            .ok_or_else(|| "the window's span overflows".to_string())?;
        match self {
            Padding::Valid if input < span => Err(format!(
                "Computed output size would be negative: the input is {input} wide and the window spans {span}"
            )),
            Padding::Valid => Ok(((input - span) / stride + 1, 0)),
            Padding::Same => {
                let out = input.div_ceil(stride);
                let total = ((out.max(1) - 1) * stride + span).saturating_sub(input);
                Ok((out, total / 2))
            }
        }
    }
}

/// Strides, dilations and padding of a convolution (TF's attributes, the batch and channel entries
/// of the 4-element lists left out: TF requires them to be 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvAttrs {
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
}

/// A spatial pair from TF's list forms: `[s]`, `[sh, sw]` or `[1, sh, sw, 1]` (NHWC).
pub(crate) fn spatial(what: &str, v: &[usize]) -> std::result::Result<[usize; 2], String> {
    match *v {
        [s] => Ok([s, s]),
        [h, w] => Ok([h, w]),
        [1, h, w, 1] => Ok([h, w]),
        [_, _, _, _] => Err(format!(
            "{what} {v:?}: the batch and depth entries must be 1 (NHWC)"
        )),
        _ => Err(format!("{what} {v:?}: expected 1, 2 or 4 entries")),
    }
}

/// A rank-4 static shape's dimensions, or an error naming `what`.
pub(crate) fn rank4<'a>(
    info: &'a TensorInfo,
    what: &str,
) -> std::result::Result<Option<&'a [Dim]>, InferError> {
    match info.shape.dims() {
        None => Ok(None),
        Some(d) if d.len() == 4 => Ok(Some(d)),
        Some(d) => Err(InferError::Shape(format!(
            "{what} must be rank 4 (NHWC), got shape {}",
            Shape::new(d.to_vec())
        ))),
    }
}

/// The static output shape `[N, OH, OW, channels]` of a window over input dims `x`.
pub(crate) fn window_shape(
    x: Option<&[Dim]>,
    k: [Dim; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    padding: Padding,
    channels: Dim,
) -> std::result::Result<Shape, InferError> {
    let Some(x) = x else {
        return Ok(Shape::new(vec![None, None, None, channels]));
    };
    let mut out = vec![x[0], None, None, channels];
    for a in 0..2 {
        if let (Some(i), Some(k)) = (x[1 + a], k[a]) {
            let (o, _) = padding
                .out_and_pad(i, k, strides[a], dilations[a])
                .map_err(InferError::Shape)?;
            out[1 + a] = Some(o);
        }
    }
    Ok(Shape::new(out))
}

/// The run-time geometry of a window of `k` over an NHWC input of shape `x`.
pub(crate) fn window(
    x: &[usize],
    k: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    padding: Padding,
) -> OpResult<Window2d> {
    let &[batch, in_h, in_w, channels] = x else {
        return Err(KernelError::Shape(format!(
            "the input must be rank 4 (NHWC), got shape {x:?}"
        )));
    };
    let (out_h, pad_top) = padding
        .out_and_pad(in_h, k[0], strides[0], dilations[0])
        .map_err(KernelError::Shape)?;
    let (out_w, pad_left) = padding
        .out_and_pad(in_w, k[1], strides[1], dilations[1])
        .map_err(KernelError::Shape)?;
    Ok(Window2d {
        batch,
        in_h,
        in_w,
        channels,
        k_h: k[0],
        k_w: k[1],
        stride_h: strides[0],
        stride_w: strides[1],
        dilation_h: dilations[0],
        dilation_w: dilations[1],
        pad_top,
        pad_left,
        out_h,
        out_w,
    })
}

/// The values of an array in row-major order: borrowed when it is laid out so, else copied.
pub(crate) fn row_major<T: Clone>(a: &ArrayD<T>) -> Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

/// An HWIO filter's `[k_h, k_w]`, input channels and output channels.
fn filter_dims(w: &[usize], op: &str) -> OpResult<([usize; 2], usize, usize)> {
    match *w {
        [kh, kw, i, o] => Ok(([kh, kw], i, o)),
        _ => Err(KernelError::Shape(format!(
            "{op}: the filter must be rank 4 (HWIO), got shape {w:?}"
        ))),
    }
}

/// Which of the three convolution ops a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConvKind {
    /// `tf.nn.conv2d`: inputs `x` `[N, H, W, C]` and `filter` `[k_h, k_w, C, O]`; output
    /// `[N, OH, OW, O]`, `y[n, oh, ow, o] = Σ_{kh, kw, c} x[n, oh·s_h + kh·d_h - pad_top,
    /// ow·s_w + kw·d_w - pad_left, c] · filter[kh, kw, c, o]` over the taps inside the input.
    Forward,
    /// `Conv2DBackpropInput`, the gradient with respect to the input: inputs `x` (for its shape),
    /// `filter`, `dy`; output `x`'s shape.
    Input,
    /// `Conv2DBackpropFilter`, the gradient with respect to the filter: inputs `x`, `filter` (for
    /// its shape), `dy`; output the filter's shape.
    Filter,
}

impl ConvKind {
    /// TF's op type.
    pub fn name(self) -> &'static str {
        match self {
            ConvKind::Forward => "Conv2D",
            ConvKind::Input => "Conv2DBackpropInput",
            ConvKind::Filter => "Conv2DBackpropFilter",
        }
    }
}

/// The shared shape rule: inputs (x or its stand-in, w or its stand-in[, dy]); the output is the
/// convolution's output, the input's shape, or the filter's shape.
fn infer_conv(inputs: &[TensorInfo], attrs: &ConvAttrs, which: ConvKind, op: &str) -> InferResult {
    let n = if matches!(which, ConvKind::Forward) {
        2
    } else {
        3
    };
    expect_arity(inputs, n, op)?;
    let dtype = same_dtype(inputs)?;
    expect_float(&inputs[0], &format!("{op}'s inputs"))?;
    let x = rank4(&inputs[0], "the input")?;
    let w = rank4(&inputs[1], "the filter")?;
    if let (Some(x), Some(w)) = (x, w) {
        if let (Some(c), Some(i)) = (x[3], w[2]) {
            if c != i {
                return Err(InferError::Shape(format!(
                    "input depth {c} does not match the filter's input depth {i} (input {}, filter {})",
                    inputs[0].shape, inputs[1].shape
                )));
            }
        }
    }
    let k = w.map_or([None, None], |w| [w[0], w[1]]);
    let out = window_shape(
        x,
        k,
        attrs.strides,
        attrs.dilations,
        attrs.padding,
        w.and_then(|w| w[3]),
    )?;
    if let (Some(dy), Some(o)) = (inputs.get(2), out.dims()) {
        if let Some(d) = rank4(dy, "the output gradient")? {
            let fits = d
                .iter()
                .zip(o)
                .all(|(a, b)| a.is_none() || b.is_none() || a == b);
            if !fits {
                return Err(InferError::Shape(format!(
                    "the output gradient has shape {}, the convolution's output is {out}",
                    dy.shape
                )));
            }
        }
    }
    let shape = match which {
        ConvKind::Forward => out,
        ConvKind::Input => inputs[0].shape.clone(),
        ConvKind::Filter => inputs[1].shape.clone(),
    };
    Ok(Some(TensorInfo::new(dtype, shape)))
}

fn conv_typed<T: FloatArray>(
    ctx: &Context<'_>,
    attrs: &ConvAttrs,
    which: ConvKind,
    inputs: &[&Value],
    op: &str,
) -> OpResult<Value> {
    let x = float_input::<T>(inputs, 0, op)?;
    let w = float_input::<T>(inputs, 1, op)?;
    let (k, c_in, c_out) = filter_dims(w.shape(), op)?;
    let g = window(x.shape(), k, attrs.strides, attrs.dilations, attrs.padding)?;
    if g.channels != c_in {
        return Err(KernelError::Shape(format!(
            "{op}: input depth {} does not match the filter's input depth {c_in} (input {:?}, filter {:?})",
            g.channels,
            x.shape(),
            w.shape()
        )));
    }
    let out_shape = [g.batch, g.out_h, g.out_w, c_out];
    let len = match which {
        ConvKind::Forward => Value::checked_len(&out_shape)?,
        ConvKind::Input => x.len(),
        ConvKind::Filter => w.len(),
    };
    let mut out = ctx.try_vec::<T>(len)?;
    let shape: &[usize] = match which {
        ConvKind::Forward => {
            ferroflow_cpu::conv::conv2d(ctx, &g, &row_major(x), &row_major(w), c_out, &mut out)?;
            &out_shape
        }
        ConvKind::Input | ConvKind::Filter => {
            let dy = float_input::<T>(inputs, 2, op)?;
            if dy.shape() != out_shape {
                return Err(KernelError::Shape(format!(
                    "{op}: the output gradient has shape {:?}, the convolution's output is {out_shape:?}",
                    dy.shape()
                )));
            }
            if let ConvKind::Input = which {
                let (dy, w) = (row_major(dy), row_major(w));
                ferroflow_cpu::conv::conv2d_backprop_input(ctx, &g, &dy, &w, c_out, &mut out)?;
                x.shape()
            } else {
                let (x, dy) = (row_major(x), row_major(dy));
                ferroflow_cpu::conv::conv2d_backprop_filter(ctx, &g, &x, &dy, c_out, &mut out)?;
                w.shape()
            }
        }
    };
    Ok(T::wrap(
        ArrayD::from_shape_vec(IxDyn(shape), out).map_err(KernelError::from)?,
    ))
}

fn compute_conv(
    ctx: &Context<'_>,
    attrs: &ConvAttrs,
    which: ConvKind,
    inputs: &[&Value],
    op: &str,
) -> OpResult<Value> {
    by_float(
        inputs,
        op,
        || conv_typed::<f32>(ctx, attrs, which, inputs, op),
        || conv_typed::<f64>(ctx, attrs, which, inputs, op),
    )
}

/// A convolution op or one of its gradients (see [`ConvKind`]), with its attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv {
    pub kind: ConvKind,
    pub attrs: ConvAttrs,
}

impl OpDef for Conv {
    fn type_name(&self) -> &'static str {
        self.kind.name()
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        // TF's backprop ops take the other operand's shape as a tensor where ferroflow takes the
        // operand itself: only the forward convolution has a TF node of the same inputs.
        if self.kind != ConvKind::Forward {
            return None;
        }
        let a = &self.attrs;
        Some(
            TfNode::typed(inputs)?
                .with("strides", nhwc(a.strides))
                .with("dilations", nhwc(a.dilations))
                .with("padding", TfAttr::Str(a.padding.tf_name().into()))
                .with("data_format", TfAttr::Str("NHWC".into()))
                .with("use_cudnn_on_gpu", TfAttr::Bool(true)),
        )
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        infer_conv(inputs, &self.attrs, self.kind, self.kind.name())
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        compute_conv(ctx, &self.attrs, self.kind, inputs, self.kind.name())
    }
    /// All three are bilinear in their data inputs, with `⟨dy, conv(x, w)⟩ = ⟨BackpropInput(w,
    /// dy), x⟩ = ⟨BackpropFilter(x, dy), w⟩`. So `Conv2D` gives `BackpropInput(x, w, g)` and
    /// `BackpropFilter(x, w, g)`; `BackpropInput(·, w, dy)` with incoming `h` (shaped as x) gives
    /// `∂/∂w = BackpropFilter(h, w, dy)` and `∂/∂dy = conv(h, w)`; `BackpropFilter(x, ·, dy)` with
    /// incoming `h` (shaped as w) gives `∂/∂x = BackpropInput(x, h, dy)` and `∂/∂dy = conv(x, h)`.
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let node = |kind: ConvKind, inputs: [Tensor; 3]| g.conv_node(kind, &inputs, self.attrs);
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        Ok(match self.kind {
            ConvKind::Forward => vec![
                Some(node(ConvKind::Input, [a, b, grad])?),
                Some(node(ConvKind::Filter, [a, b, grad])?),
            ],
            ConvKind::Input => {
                let dy = ctx.input(2)?;
                vec![
                    None,
                    Some(node(ConvKind::Filter, [grad, b, dy])?),
                    Some(g.conv2d_with(grad, b, self.attrs)?),
                ]
            }
            ConvKind::Filter => {
                let dy = ctx.input(2)?;
                vec![
                    Some(node(ConvKind::Input, [a, grad, dy])?),
                    None,
                    Some(g.conv2d_with(a, grad, self.attrs)?),
                ]
            }
        })
    }
}

/// The builder's argument error for an op that could not be added.
fn bad_argument(op: &str, message: String) -> Error {
    Error::InvalidArgument {
        node: op.to_string(),
        op: op.to_string(),
        message,
    }
}

impl Graph {
    /// `tf.nn.conv2d(input, filter, strides, padding)` (NHWC, HWIO filter): `strides` as `[s]`,
    /// `[s_h, s_w]` or `[1, s_h, s_w, 1]`, `padding` `"SAME"` or `"VALID"`.
    pub fn conv2d(
        &self,
        input: impl Into<Tensor>,
        filter: impl Into<Tensor>,
        strides: &[usize],
        padding: &str,
    ) -> Result<Tensor> {
        self.conv2d_dilated(input, filter, strides, padding, &[1])
    }

    /// `tf.nn.conv2d(..., dilations=...)`: the filter's taps `dilations` apart (`[d]`, `[d_h,
    /// d_w]` or `[1, d_h, d_w, 1]`).
    pub fn conv2d_dilated(
        &self,
        input: impl Into<Tensor>,
        filter: impl Into<Tensor>,
        strides: &[usize],
        padding: &str,
        dilations: &[usize],
    ) -> Result<Tensor> {
        let attrs = ConvAttrs {
            strides: spatial("strides", strides).map_err(|m| bad_argument("Conv2D", m))?,
            dilations: spatial("dilations", dilations).map_err(|m| bad_argument("Conv2D", m))?,
            padding: Padding::parse(padding).ok_or_else(|| {
                bad_argument(
                    "Conv2D",
                    format!("padding '{padding}': expected SAME or VALID"),
                )
            })?,
        };
        self.conv2d_with(input, filter, attrs)
    }

    /// [`Graph::conv2d`] with its attributes as data.
    pub fn conv2d_with(
        &self,
        input: impl Into<Tensor>,
        filter: impl Into<Tensor>,
        attrs: ConvAttrs,
    ) -> Result<Tensor> {
        self.conv_node(ConvKind::Forward, &[input.into(), filter.into()], attrs)
    }

    /// TF's `Conv2DBackpropInput`, the shape taken from `input` (see the module's documentation).
    pub fn conv2d_backprop_input(
        &self,
        input: Tensor,
        filter: Tensor,
        out_backprop: Tensor,
        attrs: ConvAttrs,
    ) -> Result<Tensor> {
        self.conv_node(ConvKind::Input, &[input, filter, out_backprop], attrs)
    }

    /// TF's `Conv2DBackpropFilter`, the shape taken from `filter`.
    pub fn conv2d_backprop_filter(
        &self,
        input: Tensor,
        filter: Tensor,
        out_backprop: Tensor,
        attrs: ConvAttrs,
    ) -> Result<Tensor> {
        self.conv_node(ConvKind::Filter, &[input, filter, out_backprop], attrs)
    }

    fn conv_node(&self, kind: ConvKind, inputs: &[Tensor], attrs: ConvAttrs) -> Result<Tensor> {
        self.add_node(Conv { kind, attrs }.into(), inputs, None, kind.name())
    }
}
