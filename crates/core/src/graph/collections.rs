//! Collections (TF's `tf.add_to_collection` / `tf.get_collection`) with TF's exact scope rule.

use super::{Graph, Operation, Tensor, Variable};
use crate::error::{Error, Result};

/// The standard collection keys, with TF's key strings (`tf.GraphKeys`).
pub mod keys {
    /// `tf.GraphKeys.GLOBAL_VARIABLES`.
    pub const GLOBAL_VARIABLES: &str = "variables";
    /// `tf.GraphKeys.VARIABLES`, an alias of GLOBAL_VARIABLES.
    pub const VARIABLES: &str = "variables";
    /// `tf.GraphKeys.TRAINABLE_VARIABLES`.
    pub const TRAINABLE_VARIABLES: &str = "trainable_variables";
    /// `tf.GraphKeys.LOCAL_VARIABLES`.
    pub const LOCAL_VARIABLES: &str = "local_variables";
    /// `tf.GraphKeys.MODEL_VARIABLES`.
    pub const MODEL_VARIABLES: &str = "model_variables";
    /// `tf.GraphKeys.UPDATE_OPS`.
    pub const UPDATE_OPS: &str = "update_ops";
    /// `tf.GraphKeys.LOSSES`.
    pub const LOSSES: &str = "losses";
    /// `tf.GraphKeys.REGULARIZATION_LOSSES`.
    pub const REGULARIZATION_LOSSES: &str = "regularization_losses";
    /// `tf.GraphKeys.SUMMARIES`.
    pub const SUMMARIES: &str = "summaries";
    /// `tf.GraphKeys.GLOBAL_STEP`.
    pub const GLOBAL_STEP: &str = "global_step";
    /// `tf.GraphKeys.TRAIN_OP`.
    pub const TRAIN_OP: &str = "train_op";
    /// `tf.GraphKeys.INIT_OP`.
    pub const INIT_OP: &str = "init_op";
    /// `tf.GraphKeys.SAVERS`.
    pub const SAVERS: &str = "savers";
    /// `tf.GraphKeys.MOVING_AVERAGE_VARIABLES`.
    pub const MOVING_AVERAGE_VARIABLES: &str = "moving_average_variables";
}

/// An entry of a collection.
#[derive(Clone, Debug, PartialEq)]
pub enum CollectionItem {
    /// A variable; matched by its tensor name (`hidden1/kernel:0`).
    Variable(Variable),
    /// A tensor; matched by its tensor name (`loss:0`).
    Tensor(Tensor),
    /// An operation; matched by its op name (`train`).
    Operation(Operation),
    /// A string (as TF allows any Python object); it has no name, so a scoped query skips it.
    Str(String),
}

/// Types that can be picked out of a collection by `get_collection::<T>`.
pub trait FromCollectionItem: Sized {
    /// The item as `Self`, when it is of that kind.
    fn from_item(item: &CollectionItem) -> Option<Self>;
}

impl FromCollectionItem for CollectionItem {
    fn from_item(item: &CollectionItem) -> Option<Self> {
        Some(item.clone())
    }
}
impl FromCollectionItem for Variable {
    fn from_item(item: &CollectionItem) -> Option<Self> {
        match item {
            CollectionItem::Variable(v) => Some(*v),
            _ => None,
        }
    }
}
impl FromCollectionItem for Tensor {
    fn from_item(item: &CollectionItem) -> Option<Self> {
        match item {
            CollectionItem::Tensor(t) => Some(*t),
            CollectionItem::Variable(v) => Some(v.value()),
            _ => None,
        }
    }
}
impl FromCollectionItem for Operation {
    fn from_item(item: &CollectionItem) -> Option<Self> {
        match item {
            CollectionItem::Operation(o) => Some(*o),
            CollectionItem::Tensor(t) => Some(t.op()),
            _ => None,
        }
    }
}

impl From<Variable> for CollectionItem {
    fn from(v: Variable) -> Self {
        CollectionItem::Variable(v)
    }
}
impl From<Tensor> for CollectionItem {
    fn from(t: Tensor) -> Self {
        CollectionItem::Tensor(t)
    }
}
impl From<Operation> for CollectionItem {
    fn from(o: Operation) -> Self {
        CollectionItem::Operation(o)
    }
}

/// TF's collection scope filter: a regex matched at the **start** of a name (Python's `re.match`),
/// not anchored at the end.
#[derive(Clone, Debug)]
pub struct ScopeRegex(regex::Regex);

impl ScopeRegex {
    /// Compiles the pattern; an invalid one is an error naming it.
    pub fn new(pattern: &str) -> Result<Self> {
        regex::Regex::new(&format!("^(?:{pattern})"))
            .map(ScopeRegex)
            .map_err(|e| Error::BadRegex {
                pattern: pattern.to_string(),
                message: e.to_string(),
            })
    }
    /// True when the pattern matches at the start of `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.0.is_match(name)
    }
}

impl Graph {
    /// Appends an item to the collection `key` (TF's `tf.add_to_collection`).
    pub fn add_to_collection(&self, key: &str, item: impl Into<CollectionItem>) {
        let item = item.into();
        self.with_inner_mut(|g| g.collections.entry(key.to_string()).or_default().push(item));
    }

    /// The name a scoped query matches against: `name:0` for tensors and variables, the op name for
    /// operations, none for strings.
    pub fn collection_item_name(&self, item: &CollectionItem) -> Option<String> {
        match item {
            CollectionItem::Variable(v) => Some(self.tensor_name(v.var_tensor())),
            CollectionItem::Tensor(t) => Some(self.tensor_name(*t)),
            CollectionItem::Operation(o) => Some(self.op_name(*o)),
            CollectionItem::Str(_) => None,
        }
    }

    /// TF's `tf.get_collection(key, scope)`: the items of a collection in insertion order, keeping those
    /// of type `T` (use `CollectionItem` for all).
    ///
    /// With `scope = Some(re)`, an item is kept when the regex matches **at the start** of its name
    /// (Python's `re.match`): the match is anchored at the start only, not at the end, and it is tested
    /// against the tensor name *including* `:0`. Consequences, exactly as in TF:
    /// - `"hidden[123]"` also selects `hidden10/...` (its name starts with `hidden1`);
    /// - `"hidden1/kernel$"` selects nothing, because the name ends in `:0`;
    /// - `"kernel"` selects nothing (not a search), while `".*kernel"` selects every kernel;
    /// - `""` selects every named item; items without a name (strings) are skipped.
    ///
    /// With `scope = None` every item is returned, strings included. A missing key gives an empty list.
    /// An invalid regex is an error naming the pattern.
    pub fn get_collection<T: FromCollectionItem>(
        &self,
        key: &str,
        scope: Option<&str>,
    ) -> Result<Vec<T>> {
        let items = self.with_inner(|g| g.collections.get(key).cloned().unwrap_or_default());
        let re = scope.map(ScopeRegex::new).transpose()?;
        let mut out = Vec::new();
        for item in &items {
            if let Some(re) = &re {
                match self.collection_item_name(item) {
                    Some(name) if re.matches(&name) => {}
                    _ => continue,
                }
            }
            if let Some(t) = T::from_item(item) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// The keys of all collections, sorted.
    pub fn get_all_collection_keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.with_inner(|g| g.collections.keys().cloned().collect());
        k.sort();
        k
    }

    /// Replaces a collection's contents (used by meta-graph import and by `clear_collection`).
    pub fn set_collection(&self, key: &str, items: Vec<CollectionItem>) {
        self.with_inner_mut(|g| {
            g.collections.insert(key.to_string(), items);
        });
    }

    /// `tf.global_variables()`.
    pub fn global_variables(&self) -> Vec<Variable> {
        self.get_collection(keys::GLOBAL_VARIABLES, None)
            .unwrap_or_default()
    }

    /// `tf.trainable_variables()`.
    pub fn trainable_variables(&self) -> Vec<Variable> {
        self.get_collection(keys::TRAINABLE_VARIABLES, None)
            .unwrap_or_default()
    }
}
