//! The facade's integration tests, one module per concern.
//! A single test binary: one link instead of one per file.

mod buffer_reuse;
mod demos;
mod distributed;
mod fuzz_corpus;
mod graph_building_prop;
#[cfg(feature = "mpi")]
mod mpi;
mod tf2_object_checkpoint;
mod tf_checkpoint;
mod tf_cnn_checkpoint;
mod tf_fixtures;
mod tf_meta_import;
mod tf_probe;
mod threads_same_bits;
