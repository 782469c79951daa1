//! `tf.train.Saver`: which variables under which keys, `save` with global step, `max_to_keep` and the
//! `checkpoint` state file, `restore` of exactly the saver's variables, `latest_checkpoint`.

use crate::checkpoint::{data_path, write_checkpoint, CheckpointReader};
use crate::files::sync_dir;
use crate::tf_checkpoint::{write_tf_checkpoint, TfCheckpointReader};
use crate::{IoError, Result};
use ferroflow_core::{DType, Graph, Session, Variable};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The variables a saver handles, as TF's `var_list` argument.
#[derive(Clone, Debug, PartialEq)]
pub enum VarList {
    /// Every global variable (TF's `None`).
    All,
    /// A list: each variable is saved under its op name (`hidden1/kernel`).
    List(Vec<Variable>),
    /// checkpoint key → variable: renaming and subsets (the lecture's `reuse_vars_dict`).
    Map(Vec<(String, Variable)>),
}

impl From<Vec<Variable>> for VarList {
    fn from(v: Vec<Variable>) -> Self {
        VarList::List(v)
    }
}
impl From<&[Variable]> for VarList {
    fn from(v: &[Variable]) -> Self {
        VarList::List(v.to_vec())
    }
}
impl From<Vec<(String, Variable)>> for VarList {
    fn from(v: Vec<(String, Variable)>) -> Self {
        VarList::Map(v)
    }
}

/// The contents of a `checkpoint` state file.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointState {
    pub model_checkpoint_path: String,
    pub all_model_checkpoint_paths: Vec<String>,
}

/// The file format `Saver::save` writes (`restore` reads either).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SaveFormat {
    /// `<prefix>.ffckpt`: one file, streamed, checksummed (docs/checkpoint-format.md).
    #[default]
    Ferroflow,
    /// TensorFlow's V2 bundle, `<prefix>.index` + `<prefix>.data-00000-of-00001`, which Python
    /// TensorFlow's `tf.train.Saver.restore` reads.
    TensorFlow,
}

/// Saves and restores variables (TF's `tf.train.Saver`).
pub struct Saver {
    graph: Graph,
    entries: Vec<(String, Variable)>,
    format: SaveFormat,
    max_to_keep: Option<usize>,
    write_meta_graph: bool,
    kept: Mutex<Vec<String>>,
}

impl Saver {
    /// `tf.train.Saver(var_list)`. Errors as TF's: no variables; one variable under two keys; two
    /// variables with one name.
    pub fn new(g: &Graph, var_list: impl Into<VarList>) -> Result<Self> {
        let entries: Vec<(String, Variable)> = match var_list.into() {
            VarList::All => g
                .global_variables()
                .into_iter()
                .map(|v| (v.op_name(g), v))
                .collect(),
            VarList::List(vs) => {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for v in vs {
                    let name = v.op_name(g);
                    if !seen.insert(name.clone()) {
                        return Err(IoError::DuplicateName { name });
                    }
                    out.push((name, v));
                }
                out
            }
            VarList::Map(m) => {
                let mut seen_vars = HashSet::new();
                let mut seen_keys = HashSet::new();
                for (k, v) in &m {
                    if !seen_vars.insert(*v) {
                        return Err(IoError::SameVariableTwice { key: k.clone() });
                    }
                    if !seen_keys.insert(k.clone()) {
                        return Err(IoError::DuplicateName { name: k.clone() });
                    }
                }
                m
            }
        };
        if entries.is_empty() {
            return Err(IoError::NoVariables);
        }
        Ok(Saver {
            graph: g.clone(),
            entries,
            format: SaveFormat::default(),
            max_to_keep: Some(5),
            write_meta_graph: true,
            kept: Mutex::new(Vec::new()),
        })
    }

    /// `max_to_keep` (default 5); `None` keeps every checkpoint (the state file then lists only the latest).
    pub fn max_to_keep(mut self, n: Option<usize>) -> Self {
        self.max_to_keep = n;
        self
    }

    /// The format `save` writes (default [`SaveFormat::Ferroflow`]).
    pub fn format(mut self, format: SaveFormat) -> Self {
        self.format = format;
        self
    }

    /// Whether `save` writes `<prefix>.meta` beside the checkpoint (default true, as in TF): in
    /// ferroflow's meta-graph format (the whole graph, training step included), or with
    /// [`SaveFormat::TensorFlow`] as TF's `MetaGraphDef` of every node TF can represent (the model
    /// and its initializers, not ferroflow's gradient and update ops), which
    /// `tf.compat.v1.train.import_meta_graph` and [`crate::import_meta_graph`] both read.
    pub fn write_meta_graph(mut self, yes: bool) -> Self {
        self.write_meta_graph = yes;
        self
    }

    /// The (checkpoint key, variable) pairs, in order.
    pub fn entries(&self) -> &[(String, Variable)] {
        &self.entries
    }

    /// `saver.save(sess, path, global_step)`: writes `<prefix>.ffckpt` (or, with
    /// [`SaveFormat::TensorFlow`], `<prefix>.index` and `<prefix>.data-00000-of-00001`) and
    /// `<prefix>.meta`, updates
    /// `<dir>/checkpoint`, deletes checkpoints beyond `max_to_keep`, and returns the prefix
    /// (`path-<step>` with a step). Each file is written atomically; the state file last. A save
    /// holds a lock on its directory: a second save into it at the same time (another rank of a
    /// job, another thread) fails with [`IoError::Busy`] rather than race on the state file.
    pub fn save(&self, sess: &Session, path: &str, global_step: Option<i64>) -> Result<String> {
        let prefix = match global_step {
            Some(s) => format!("{path}-{s}"),
            None => path.to_string(),
        };
        let file = data_path(&prefix);
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| IoError::Io {
                path: dir.into(),
                source,
            })?;
        }
        crate::files::recover_dir(&file);
        let _lock = crate::files::SaveLock::take(&file)?;
        let g = &self.graph;
        match self.format {
            SaveFormat::Ferroflow => {
                let mut specs = Vec::with_capacity(self.entries.len());
                for (key, v) in &self.entries {
                    let shape = match v.shape(g).to_known() {
                        Some(s) => s,
                        None => sess.variable_value(*v)?.shape().to_vec(),
                    };
                    specs.push((key.clone(), v.dtype(g), shape));
                }
                write_checkpoint(&file, &specs, |i| {
                    let (key, v) = self.entries.get(i).ok_or(IoError::NoVariables)?;
                    sess.variable_value(*v).map_err(|e| IoError::Corrupt {
                        path: data_path(key),
                        message: e.to_string(),
                    })
                })?;
            }
            SaveFormat::TensorFlow => {
                let mut tensors = Vec::with_capacity(self.entries.len());
                for (key, v) in &self.entries {
                    tensors.push((key.clone(), sess.variable_value(*v)?));
                }
                write_tf_checkpoint(&prefix, &tensors)?;
            }
        }
        if self.write_meta_graph {
            let meta = format!("{prefix}.meta");
            match self.format {
                SaveFormat::Ferroflow => {
                    crate::meta_graph::export_meta_graph(g, Path::new(&meta), Some(self))?
                }
                // Beside a checkpoint in TF's format, TF's own MetaGraphDef: the graph TF can
                // represent (the model, its initializers, what computes from them).
                SaveFormat::TensorFlow => {
                    crate::tf_graph::export_tf_meta_graph_of_all(g, Path::new(&meta))?
                }
            }
        }
        self.update_state(&prefix)?;
        Ok(prefix)
    }

    fn update_state(&self, prefix: &str) -> Result<()> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|p| p != prefix);
        kept.push(prefix.to_string());
        if let Some(n) = self.max_to_keep {
            while kept.len() > n.max(1) {
                let old = kept.remove(0);
                let _ = std::fs::remove_file(data_path(&old));
                let _ = std::fs::remove_file(format!("{old}.meta"));
                let _ = std::fs::remove_file(format!("{old}.index"));
                let _ = std::fs::remove_file(format!("{old}.data-00000-of-00001"));
            }
        }
        let dir = Path::new(prefix)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let rel = |p: &str| -> String {
            if Path::new(p).is_absolute() {
                p.to_string()
            } else {
                Path::new(p)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.to_string())
            }
        };
        let listed: Vec<String> = if self.max_to_keep.is_some() {
            kept.clone()
        } else {
            vec![prefix.to_string()]
        };
        let mut text = format!("model_checkpoint_path: {:?}\n", rel(prefix));
        for p in &listed {
            text.push_str(&format!("all_model_checkpoint_paths: {:?}\n", rel(p)));
        }
        let state = dir.join("checkpoint");
        let tmp = crate::files::temp_path(&dir.join("checkpoint"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &state)
        };
        write().map_err(|source| IoError::Io {
            path: state.clone(),
            source,
        })?;
        sync_dir(&state);
        Ok(())
    }

    /// `saver.restore(sess, prefix)`: assigns exactly the saver's variables from the checkpoint; the
    /// others keep their values. The prefix may name a ferroflow checkpoint (`<prefix>.ffckpt`) or a
    /// TensorFlow V2 checkpoint (`<prefix>.index` + data shards), with the same key semantics. Errors name
    /// the key: missing, or of another shape or dtype; every key is checked before anything is assigned.
    /// Like `save`, it removes the temporary files of killed saves from the checkpoint's directory.
    pub fn restore(&self, sess: &Session, prefix: &str) -> Result<()> {
        crate::files::recover_dir(&data_path(prefix));
        let mut source = AnyCheckpoint::open(prefix)?;
        let g = &self.graph;
        let listed: std::collections::HashMap<String, (DType, Vec<usize>)> = source
            .entries()?
            .into_iter()
            .map(|(k, d, s)| (k, (d, s)))
            .collect();
        for (key, v) in &self.entries {
            let (dtype, shape) = listed
                .get(key)
                .cloned()
                .ok_or_else(|| IoError::KeyNotFound {
                    key: key.clone(),
                    path: source.path(),
                })?;
            if dtype != v.dtype(g) || !v.shape(g).accepts(&shape) {
                return Err(IoError::Mismatch {
                    key: key.clone(),
                    var_shape: v.shape(g).to_string(),
                    var_dtype: v.dtype(g).to_string(),
                    ckpt_shape: shape,
                    ckpt_dtype: dtype.to_string(),
                });
            }
        }
        // All or nothing: every tensor is read and verified before any variable changes, so a
        // checkpoint that fails midway leaves the session as it was.
        let mut values = Vec::with_capacity(self.entries.len());
        for (key, v) in &self.entries {
            let value = source.read(key)?.ok_or_else(|| IoError::KeyNotFound {
                key: key.clone(),
                path: source.path(),
            })?;
            values.push((*v, value));
        }
        for (v, value) in values {
            sess.set_variable_value(v, value)?;
        }
        Ok(())
    }
}

/// A checkpoint prefix in either format: ferroflow's (`<prefix>.ffckpt`, preferred when both exist) or
/// TensorFlow's V2 bundle (`<prefix>.index` + shards). What `Saver::restore` and `ferroflow inspect`
/// read from.
pub enum AnyCheckpoint {
    Ferroflow(CheckpointReader, PathBuf),
    TensorFlow(TfCheckpointReader, PathBuf),
}

impl AnyCheckpoint {
    /// Opens `prefix` in whichever format exists; neither is `IoError::NotACheckpoint`.
    pub fn open(prefix: &str) -> Result<Self> {
        let file = data_path(prefix);
        if file.exists() {
            Ok(AnyCheckpoint::Ferroflow(
                CheckpointReader::open(&file)?,
                file,
            ))
        } else if TfCheckpointReader::exists(prefix) {
            Ok(AnyCheckpoint::TensorFlow(
                TfCheckpointReader::open(prefix)?,
                PathBuf::from(format!("{prefix}.index")),
            ))
        } else {
            Err(IoError::NotACheckpoint {
                path: PathBuf::from(prefix),
            })
        }
    }
    /// The file the entries come from (for error messages).
    pub fn path(&self) -> PathBuf {
        match self {
            AnyCheckpoint::Ferroflow(_, p) | AnyCheckpoint::TensorFlow(_, p) => p.clone(),
        }
    }
    /// Every (key, dtype, shape), in the file's order.
    pub fn entries(&self) -> Result<Vec<(String, DType, Vec<usize>)>> {
        Ok(match self {
            AnyCheckpoint::Ferroflow(r, _) => r
                .entries()
                .iter()
                .map(|e| {
                    (
                        e.name.clone(),
                        e.dtype,
                        e.shape.iter().map(|&d| d as usize).collect(),
                    )
                })
                .collect(),
            AnyCheckpoint::TensorFlow(r, _) => r
                .tensors()?
                .into_iter()
                .map(|t| (t.name, t.dtype, t.shape))
                .collect(),
        })
    }
    /// The entries that cannot be read, with the reason (TF checkpoints only: string tensors,
    /// partitioned variables, unknown dtypes).
    pub fn unreadable(&self) -> Vec<(String, String)> {
        match self {
            AnyCheckpoint::Ferroflow(..) => Vec::new(),
            AnyCheckpoint::TensorFlow(r, _) => r.unreadable(),
        }
    }
    /// Reads one tensor (checksum verified); `None` when the key is absent.
    pub fn read(&mut self, key: &str) -> Result<Option<ferroflow_core::Value>> {
        match self {
            AnyCheckpoint::Ferroflow(r, _) => r.read(key),
            AnyCheckpoint::TensorFlow(r, _) => r.read(key),
        }
    }
}

/// The largest state file read: a text line per kept checkpoint.
const MAX_STATE: u64 = 16 << 20;

fn parse_state(text: &str) -> Option<CheckpointState> {
    let mut latest = None;
    let mut all = Vec::new();
    for line in text.lines() {
        let (k, v) = line.split_once(':')?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))?
            .replace("\\\"", "\"")
            .replace("\\\\", "\\");
        match k.trim() {
            "model_checkpoint_path" => latest = Some(v),
            "all_model_checkpoint_paths" => all.push(v),
            _ => {}
        }
    }
    Some(CheckpointState {
        model_checkpoint_path: latest?,
        all_model_checkpoint_paths: all,
    })
}

/// `tf.train.get_checkpoint_state(dir)`: the state file with relative entries joined to `dir`;
/// `None` when there is no state file.
pub fn get_checkpoint_state(dir: &Path) -> Result<Option<CheckpointState>> {
    let path = dir.join("checkpoint");
    let bytes = match crate::files::read_bounded(&path, MAX_STATE, "checkpoint state file") {
        Ok(b) => b,
        Err(IoError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let text = String::from_utf8(bytes).map_err(|_| IoError::Corrupt {
        path: path.clone(),
        message: "the checkpoint state file is not UTF-8 text".into(),
    })?;
    let mut st = parse_state(&text).ok_or_else(|| IoError::Corrupt {
        path: path.clone(),
        message: "unparsable checkpoint state file".into(),
    })?;
    let join = |p: &str| {
        if Path::new(p).is_absolute() {
            p.to_string()
        } else {
            dir.join(p).to_string_lossy().into_owned()
        }
    };
    st.model_checkpoint_path = join(&st.model_checkpoint_path);
    st.all_model_checkpoint_paths = st
        .all_model_checkpoint_paths
        .iter()
        .map(|p| join(p))
        .collect();
    Ok(Some(st))
}

/// `tf.train.latest_checkpoint(dir)`: the newest prefix, or `None` without a state file.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<String>> {
    Ok(get_checkpoint_state(dir)?.map(|s| s.model_checkpoint_path))
}
