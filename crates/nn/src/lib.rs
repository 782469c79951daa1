//! ferroflow-nn: layers (dense, batch normalization, dropout), initializers, activations,
//! regularizers, losses, metrics, optimizers, gradient clipping, learning-rate schedules and data-parallel training, with
//! TF1's names, defaults and formulas, and the training-health monitor (`health`). Built only on
//! ferroflow-core's public API.
// Panic audit: no unwrap/expect in library code (indexing is reviewed and fuzzed: docs/reliability.md).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod batch_norm;
pub mod clip;
pub mod conv_layers;
pub mod distributed;
pub mod health;
pub mod layers;
pub mod losses;
pub mod optimizers;
pub mod regularizers;
pub mod schedules;

pub use batch_norm::{batch_normalization, BatchNormOptions};
pub use clip::{clip_by_global_norm, clip_by_norm, global_norm};
pub use conv_layers::{
    average_pooling2d, conv2d, conv2d_with, flatten, max_pooling2d, Conv2dOptions,
};
pub use distributed::{
    average_gradients, broadcast_global_variables, DistributedOptimizer, DEFAULT_FUSION_THRESHOLD,
};
pub use ferroflow_core::init::{compute_fans, FanMode, Initializer, VsDistribution};
pub use ferroflow_core::ops::apply::ApplyRule;
pub use layers::{dense, dense_with, dropout, Activation, DenseOptions, Training};
pub use optimizers::{get_or_create_global_step, LearningRate, Optimizer};
pub use regularizers::Regularizer;
