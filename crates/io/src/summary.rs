//! TensorBoard summaries: event files framed and encoded exactly as TensorFlow writes them (TFRecord
//! framing with masked CRC-32C, `Event`/`Summary`/`HistogramProto` protobufs via prost, TF's default
//! histogram buckets), a `GraphDef` of the graph for the graph view, summary ops collected in
//! SUMMARIES, and images (PNG) and text written straight to the file.
//!
//! Difference from TF: ferroflow has no string tensors, so `scalar` and `histogram` return the tensor
//! they watch (an identity named after the summary) and `merge_all` gives a [`MergedSummary`] that
//! evaluates them in a session and builds the `Summary` proto.

use crate::tf_checkpoint::{tf_dtype, ShapeProto};
use crate::tf_graph::{shape_proto, AttrKind, AttrList, AttrValue, GraphDef, NodeDef};
use crate::{IoError, Result};
use ferroflow_core::{keys, CollectionItem, Graph, Session, Tensor, TensorInfo, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, PartialEq, prost::Message)]
pub struct HistogramProto {
    #[prost(double, tag = "1")]
    pub min: f64,
    #[prost(double, tag = "2")]
    pub max: f64,
    #[prost(double, tag = "3")]
    pub num: f64,
    #[prost(double, tag = "4")]
    pub sum: f64,
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "4")]
    pub image: Option<ImageProto>,
    #[prost(message, optional, tag = "5")]
    pub histo: Option<HistogramProto>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

/// The parts of TF's `TensorProto` a text summary uses: a scalar string.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `DT_STRING` is 7.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub(crate) tensor_shape: Option<ShapeProto>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// TF's `SummaryMetadata`: which TensorBoard plugin shows the value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
}

/// TF's `SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// TF's `Summary.Image`: a PNG and its size (colorspace 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageProto {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// TF's `Summary` message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(string, optional, tag = "3")]
    file_version: Option<String>,
    #[prost(bytes = "vec", optional, tag = "4")]
    graph_def: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    summary: Option<Summary>,
}

/// A node's attributes as TF writes them for TensorBoard: its output dtype (`dtype` for
/// placeholders, constants and variables, `T` for the others) and `_output_shapes` (unknown
/// dimensions as -1, an unknown rank as `unknown_rank`).
fn output_attrs(
    op: &str,
    output: Option<&TensorInfo>,
) -> std::collections::BTreeMap<String, AttrValue> {
    let mut attr = std::collections::BTreeMap::new();
    let Some(info) = output else {
        return attr;
    };
    let key = match op {
        "Placeholder" | "PlaceholderWithDefault" | "Const" | "VariableV2" => "dtype",
        _ => "T",
    };
    attr.insert(
        key.to_string(),
        AttrValue {
            value: Some(AttrKind::Type(tf_dtype(info.dtype))),
        },
    );
    let shape = shape_proto(&info.shape);
    attr.insert(
        "_output_shapes".to_string(),
        AttrValue {
            value: Some(AttrKind::List(AttrList {
                i: Vec::new(),
                shape: vec![shape],
            })),
        },
    );
    attr
}

/// TF's default histogram bucket limits: ±1e-12·1.1^k up to 1e20, then ±DBL_MAX, and 0.
pub fn default_bucket_limits() -> Vec<f64> {
    let mut pos = Vec::new();
    let mut v = 1e-12;
    while v < 1e20 {
        pos.push(v);
        v *= 1.1;
    }
    pos.push(f64::MAX);
    let mut limits: Vec<f64> = pos.iter().rev().map(|x| -x).collect();
    limits.push(0.0);
    limits.extend(pos);
    limits
}

/// A histogram of `values` in TF's encoding: each value counts in the first bucket whose limit exceeds
/// it; runs of empty buckets collapse into one entry with the run's last limit and count 0.
pub fn histogram_proto(values: &[f64]) -> HistogramProto {
    let limits = default_bucket_limits();
    let mut counts = vec![0f64; limits.len()];
    let (mut min, mut max, mut sum, mut sq) = (f64::MAX, -f64::MAX, 0.0, 0.0);
    for &x in values {
        let i = limits
            .partition_point(|&l| l <= x)
            .min(limits.len().saturating_sub(1));
        if let Some(c) = counts.get_mut(i) {
            *c += 1.0;
        }
        min = min.min(x);
        max = max.max(x);
        sum += x;
        sq += x * x;
    }
    let mut h = HistogramProto {
        min,
        max,
        num: values.len() as f64,
        sum,
        sum_squares: sq,
        bucket_limit: vec![],
        bucket: vec![],
    };
    let mut empty_run_end: Option<f64> = None;
    for (l, c) in limits.iter().zip(&counts) {
        if *c == 0.0 {
            empty_run_end = Some(*l);
        } else {
            if let Some(e) = empty_run_end.take() {
                h.bucket_limit.push(e);
                h.bucket.push(0.0);
            }
            h.bucket_limit.push(*l);
            h.bucket.push(*c);
        }
    }
    if let Some(e) = empty_run_end {
        h.bucket_limit.push(e);
        h.bucket.push(0.0);
    }
    h
}

const KINDS: &str = "ferroflow_summary_kinds";

fn watch(g: &Graph, name: &str, t: Tensor, kind: &str) -> ferroflow_core::Result<Tensor> {
    let id = g.named(name).identity(t)?;
    g.add_to_collection(keys::SUMMARIES, id);
    g.add_to_collection(KINDS, CollectionItem::Str(kind.into()));
    Ok(id)
}

/// `tf.summary.scalar(name, t)`: the tag is the summary's name including its name scope.
pub fn scalar(g: &Graph, name: &str, t: Tensor) -> ferroflow_core::Result<Tensor> {
    watch(g, name, t, "scalar")
}

/// `tf.summary.histogram(name, t)`.
pub fn histogram(g: &Graph, name: &str, t: Tensor) -> ferroflow_core::Result<Tensor> {
    watch(g, name, t, "histogram")
}

/// The summaries of a graph, evaluated together (TF's `merge_all`).
#[derive(Clone, Debug)]
pub struct MergedSummary {
    entries: Vec<(String, bool, Tensor)>,
}

/// `tf.summary.merge_all()`: every scalar and histogram in SUMMARIES.
pub fn merge_all(g: &Graph) -> ferroflow_core::Result<MergedSummary> {
    let tensors: Vec<Tensor> = g.get_collection(keys::SUMMARIES, None)?;
    let kinds: Vec<CollectionItem> = g.get_collection(KINDS, None)?;
    let entries = tensors
        .iter()
        .zip(kinds)
        .map(|(t, k)| {
            (
                g.op_name(*t),
                k == CollectionItem::Str("histogram".into()),
                *t,
            )
        })
        .collect();
    Ok(MergedSummary { entries })
}

impl MergedSummary {
    /// Runs the watched tensors and builds the `Summary`.
    pub fn run(
        &self,
        sess: &Session,
        feeds: &[(Tensor, Value)],
    ) -> ferroflow_core::Result<Summary> {
        let fetches: Vec<Tensor> = self.entries.iter().map(|e| e.2).collect();
        let values = sess.run(&fetches, feeds, &[])?;
        let value = self
            .entries
            .iter()
            .zip(values)
            .map(|((tag, histo, _), v)| {
                let data = v.to_f64_vec();
                if *histo {
                    SummaryValue {
                        tag: tag.clone(),
                        histo: Some(histogram_proto(&data)),
                        ..Default::default()
                    }
                } else {
                    let x = data.first().copied().unwrap_or(f64::NAN) as f32;
                    SummaryValue {
                        tag: tag.clone(),
                        simple_value: Some(x),
                        ..Default::default()
                    }
                }
            })
            .collect();
        Ok(Summary { value })
    }
}

fn masked_crc(data: &[u8]) -> u32 {
    crate::tf_checkpoint::masked_crc32c(data)
}

/// Writes event files for TensorBoard (TF's `tf.summary.FileWriter`). As in TF, events reach the
/// file at least every `flush_secs` (120 by default; [`FileWriter::flush_secs`]), on
/// [`FileWriter::flush`] and [`FileWriter::close`], and when the writer is dropped.
pub struct FileWriter {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    flush_every: std::time::Duration,
    last_flush: std::time::Instant,
}

/// TF's default `flush_secs`.
const FLUSH_SECS: u64 = 120;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl FileWriter {
    /// Creates `<logdir>/events.out.tfevents.<seconds>.<hostname>`, writes the file-version event and,
    /// with a graph, its `GraphDef`.
    pub fn new(logdir: &Path, graph: Option<&Graph>) -> Result<Self> {
        std::fs::create_dir_all(logdir).map_err(|source| IoError::Io {
            path: logdir.into(),
            source,
        })?;
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let secs = now();
        let path = logdir.join(format!("events.out.tfevents.{:010}.{host}", secs as u64));
        let file = std::fs::File::create(&path).map_err(|source| IoError::Io {
            path: path.clone(),
            source,
        })?;
        let mut w = FileWriter {
            path,
            out: std::io::BufWriter::new(file),
            flush_every: std::time::Duration::from_secs(FLUSH_SECS),
            last_flush: std::time::Instant::now(),
        };
        w.write_event(&Event {
            wall_time: secs.floor(),
            file_version: Some("brain.Event:2".into()),
            ..Default::default()
        })?;
        if let Some(g) = graph {
            w.add_graph(g)?;
        }
        Ok(w)
    }

    /// TF's `flush_secs`: events written since the last flush reach the file once this many seconds
    /// have passed (checked when an event is added); 0 flushes every event.
    pub fn flush_secs(mut self, secs: f64) -> Self {
        self.flush_every = std::time::Duration::from_secs_f64(secs.max(0.0));
        self
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the graph's `GraphDef`: names, op types, inputs (control inputs as `^name`), and each
    /// node's output dtype and `_output_shapes`, which TensorBoard's graph view shows on the edges.
    pub fn add_graph(&mut self, g: &Graph) -> Result<()> {
        let mut node = Vec::with_capacity(g.len());
        for op in g.operations() {
            let n = g.node(op.index())?;
            let mut input: Vec<String> = n
                .inputs
                .iter()
                .map(|&i| g.op_name(Tensor::from_index(i)))
                .collect();
            input.extend(
                n.control_inputs
                    .iter()
                    .map(|&i| format!("^{}", g.op_name(Tensor::from_index(i)))),
            );
            let op = n.op.type_name();
            node.push(NodeDef {
                name: n.name.clone(),
                op: op.into(),
                input,
                attr: output_attrs(op, n.output.as_ref()),
            });
        }
        let bytes = prost::Message::encode_to_vec(&GraphDef {
            node,
            versions: None,
        });
        self.write_event(&Event {
            wall_time: now(),
            graph_def: Some(bytes),
            ..Default::default()
        })
    }

    /// `writer.add_summary(summary, step)`.
    pub fn add_summary(&mut self, summary: Summary, step: i64) -> Result<()> {
        self.write_event(&Event {
            wall_time: now(),
            step,
            summary: Some(summary),
            ..Default::default()
        })
    }

    /// A scalar without a graph op.
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: i64) -> Result<()> {
        let v = SummaryValue {
            tag: tag.into(),
            simple_value: Some(value as f32),
            ..Default::default()
        };
        self.add_summary(Summary { value: vec![v] }, step)
    }

    /// A histogram without a graph op.
    pub fn add_histogram(&mut self, tag: &str, values: &[f64], step: i64) -> Result<()> {
        let v = SummaryValue {
            tag: tag.into(),
            histo: Some(histogram_proto(values)),
            ..Default::default()
        };
        self.add_summary(Summary { value: vec![v] }, step)
    }

    /// An image (TensorBoard's Images tab), as `tf.summary.image` writes one: `pixels` row-major,
    /// `channels` (1 grey, 3 RGB, 4 RGBA) 8-bit values per pixel, stored as a PNG.
    pub fn add_image(
        &mut self,
        tag: &str,
        pixels: &[u8],
        height: usize,
        width: usize,
        channels: usize,
        step: i64,
    ) -> Result<()> {
        let bad = |message: String| IoError::Summary {
            path: self.path.clone(),
            message,
        };
        let color = match channels {
            1 => png::ColorType::Grayscale,
            3 => png::ColorType::Rgb,
            4 => png::ColorType::Rgba,
            c => {
                return Err(bad(format!(
                    "image '{tag}': {c} channels (1, 3 or 4 are supported)"
                )))
            }
        };
        let (h, w) = match (u32::try_from(height), u32::try_from(width)) {
            (Ok(h), Ok(w)) if h > 0 && w > 0 => (h, w),
            _ => return Err(bad(format!("image '{tag}': size {height}×{width}"))),
        };
        if height
            .checked_mul(width)
            .and_then(|n| n.checked_mul(channels))
            != Some(pixels.len())
        {
            return Err(bad(format!(
                "image '{tag}': {} values for {height}×{width}×{channels}",
                pixels.len()
            )));
        }
        let mut encoded = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut encoded, w, h);
            enc.set_color(color);
            enc.set_depth(png::BitDepth::Eight);
            let png_error = |e: png::EncodingError| bad(format!("image '{tag}': {e}"));
            let mut writer = enc.write_header().map_err(png_error)?;
            writer.write_image_data(pixels).map_err(png_error)?;
        }
        let v = SummaryValue {
            tag: tag.into(),
            image: Some(ImageProto {
                height: h as i32,
                width: w as i32,
                colorspace: channels as i32,
                encoded_image_string: encoded,
            }),
            ..Default::default()
        };
        self.add_summary(Summary { value: vec![v] }, step)
    }

    fn write_event(&mut self, e: &Event) -> Result<()> {
        let data = prost::Message::encode_to_vec(e);
        let len = (data.len() as u64).to_le_bytes();
        let io = |source| IoError::Io {
            path: self.path.clone(),
            source,
        };
        let mut rec = Vec::with_capacity(data.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc(&len).to_le_bytes());
        rec.extend_from_slice(&data);
        rec.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.out.write_all(&rec).map_err(io)?;
        if self.last_flush.elapsed() >= self.flush_every {
            self.flush()?;
        }
        Ok(())
    }

    /// `tf.summary.text(tag, text)` without a graph op: a string shown by TensorBoard's Text tab.
    pub fn add_text(&mut self, tag: &str, text: &str, step: i64) -> Result<()> {
        let v = SummaryValue {
            tag: tag.into(),
            tensor: Some(TensorProto {
                dtype: 7,
                tensor_shape: Some(ShapeProto::default()),
                string_val: vec![text.as_bytes().to_vec()],
            }),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: "text".into(),
                    content: Vec::new(),
                }),
            }),
            ..Default::default()
        };
        self.add_summary(Summary { value: vec![v] }, step)
    }

    /// Flushes buffered events to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.last_flush = std::time::Instant::now();
        let path = self.path.clone();
        self.out
            .flush()
            .map_err(|source| IoError::Io { path, source })
    }

    /// Flushes and closes.
    pub fn close(mut self) -> Result<()> {
        self.flush()
    }
}

impl Drop for FileWriter {
    /// Flushes what is buffered (an error here has no caller to go to; `close` reports it).
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests;
