//! A meta-graph's own errors: a version this build does not read, a body whose checksum fails, and
//! an op type this build does not know (behind a valid checksum) are each an error that says so.

use ferroflow_core::{DType, Graph};
use ferroflow_io::{export_meta_graph, import_meta_graph};

/// A small graph's meta-graph file: magic, version (bytes 8..12), body length, body, checksum.
fn exported(dir: &std::path::Path) -> Vec<u8> {
    let g = Graph::new();
    let x = g
        .named("x")
        .placeholder(DType::F32, [None, Some(2)])
        .unwrap();
    let w = g
        .named("w")
        .constant(ferroflow_core::Value::filled(DType::F32, &[2, 3], 0.5).unwrap())
        .unwrap();
    g.named("product").matmul(x, w).unwrap();
    let path = dir.join("m.meta");
    export_meta_graph(&g, &path, None).unwrap();
    std::fs::read(&path).unwrap()
}

/// `bytes` with the body's checksum made valid again.
fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len();
    let crc = crc32c::crc32c(&bytes[20..n - 4]);
    bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn version_checksum_and_unknown_op_errors_say_what_is_wrong() {
    let dir = std::env::temp_dir().join(format!("ff-meta-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = exported(&dir);
    let path = dir.join("bad.meta");
    let error = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        import_meta_graph(&path).err().unwrap().to_string()
    };
    std::fs::write(&path, &good).unwrap();
    assert!(import_meta_graph(&path).is_ok());

    // Bytes 8..12 are the version (1).
    let mut v2 = good.clone();
    v2[8] = 2;
    let e = error(&v2);
    assert!(
        e.contains("meta-graph version 2 is not supported (this build reads 1)"),
        "{e}"
    );

    // A flipped byte in the body.
    let mut flipped = good.clone();
    flipped[40] ^= 0x10;
    let e = error(&flipped);
    assert!(e.ends_with("checksum mismatch"), "{e}");

    // The op type `MatMul` renamed `MatMuX` (same length) with the checksum made valid: the node
    // is named, and so is the type.
    let at = good
        .windows(6)
        .position(|w| w == b"MatMul")
        .expect("the body names the op type");
    let mut renamed = good.clone();
    renamed[at + 5] = b'X';
    let e = error(&resealed(renamed));
    assert!(
        e.contains("node 'product'") && e.contains("'MatMuX'"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
