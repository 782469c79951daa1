#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferroflow_tools::fuzzing::tf_meta_graph(data));
