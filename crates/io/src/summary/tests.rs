//! Event bytes and histogram buckets against TensorFlow's, images, text and flushing.

use super::*;

#[test]
fn histogram_buckets_match_tensorflow() {
    // tf1-reference.md §11's example.
    let h = histogram_proto(&[1.0, 2.0, 2.5, -1.0, 0.0]);
    let want = [
        -1.00897,
        -0.917246,
        0.0,
        1e-12,
        0.917246,
        1.00897,
        1.96620,
        2.16282,
        2.37910,
        2.61701,
        f64::MAX,
    ];
    assert_eq!(h.bucket_limit.len(), want.len());
    for (a, b) in h.bucket_limit.iter().zip(want) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-12), "{a} vs {b}");
    }
    assert_eq!(
        h.bucket,
        [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    );
    assert_eq!((h.min, h.max, h.num, h.sum), (-1.0, 2.5, 5.0, 4.5));
}

#[test]
fn scalar_event_bytes_match_tensorflow() {
    // `09 <f64 wall> 10 05 2a 0c 0a 0a 0a 03 "mse" 15 <f32 3.0>`.
    let e = Event {
        wall_time: 1.5,
        step: 5,
        summary: Some(Summary {
            value: vec![SummaryValue {
                tag: "mse".into(),
                simple_value: Some(3.0),
                ..Default::default()
            }],
        }),
        ..Default::default()
    };
    let b = prost::Message::encode_to_vec(&e);
    let mut want = vec![0x09];
    want.extend_from_slice(&1.5f64.to_le_bytes());
    want.extend_from_slice(&[
        0x10, 0x05, 0x2a, 0x0c, 0x0a, 0x0a, 0x0a, 0x03, b'm', b's', b'e', 0x15,
    ]);
    want.extend_from_slice(&3.0f32.to_le_bytes());
    assert_eq!(b, want);
}

#[test]
fn an_image_is_written_as_a_png_tensorboard_can_show() {
    let dir = std::env::temp_dir().join(format!("ff-image-summary-{}", std::process::id()));
    let mut w = FileWriter::new(&dir, None).unwrap();
    // A 2×3 grey image: 0, 50, 100 over 150, 200, 250.
    let pixels = [0u8, 50, 100, 150, 200, 250];
    w.add_image("filters", &pixels, 2, 3, 1, 7).unwrap();
    let e = w.add_image("bad", &pixels, 2, 2, 1, 7).unwrap_err();
    assert!(e.to_string().contains("6 values for 2×2×1"), "{e}");
    let e = w.add_image("bad", &pixels, 1, 3, 2, 7).unwrap_err();
    assert!(e.to_string().contains("2 channels"), "{e}");
    w.flush().unwrap();
    // The second record of the file (after the file-version event).
    let bytes = std::fs::read(w.path()).unwrap();
    let first = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let at = 12 + first + 4;
    let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let data = &bytes[at + 12..at + 12 + len];
    let event: Event = prost::Message::decode(data).unwrap();
    assert_eq!(event.step, 7);
    let value = &event.summary.unwrap().value[0];
    assert_eq!(value.tag, "filters");
    let image = value.image.as_ref().unwrap();
    assert_eq!((image.height, image.width, image.colorspace), (2, 3, 1));
    let decoder = png::Decoder::new(std::io::Cursor::new(image.encoded_image_string.as_slice()));
    let mut reader = decoder.read_info().unwrap();
    let mut out = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut out).unwrap();
    assert_eq!((info.width, info.height), (3, 2));
    assert_eq!(&out[..info.buffer_size()], &pixels);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The file holds every event once the writer is dropped, and with `flush_secs(0)` after each
/// event; with the default 120 s, small events stay buffered until then.
#[test]
fn events_reach_the_file_on_drop_and_every_flush_secs() {
    let dir = std::env::temp_dir().join(format!("ff-flush-{}", std::process::id()));
    let w = FileWriter::new(&dir, None).unwrap();
    let path = w.path().to_path_buf();
    let mut w = w;
    for step in 0..50 {
        w.add_scalar("loss", 1.0, step).unwrap();
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    drop(w);
    let dropped = std::fs::metadata(&path).unwrap().len();
    assert!(dropped > 50 * 20, "{dropped} bytes");
    let mut w = FileWriter::new(&dir.join("eager"), None)
        .unwrap()
        .flush_secs(0.0);
    w.add_text("notes", "first run", 1).unwrap();
    let written = std::fs::read(w.path()).unwrap();
    assert!(written.windows(9).any(|b| b == b"first run"));
    assert!(written.windows(4).any(|b| b == b"text"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// The graph event carries each node's dtype and `_output_shapes`: a `[None, 3]` placeholder and
/// the `[None, 2]` product of it with a `[3, 2]` constant.
#[test]
fn the_graph_carries_dtypes_and_output_shapes() {
    let g = Graph::new();
    let x = g
        .named("X")
        .placeholder(ferroflow_core::DType::F32, [None, Some(3)])
        .unwrap();
    let w = g
        .constant(Value::from_f32(&[3, 2], vec![0.0; 6]).unwrap())
        .unwrap();
    g.named("y").matmul(x, w).unwrap();
    let dir = std::env::temp_dir().join(format!("ff-graph-attrs-{}", std::process::id()));
    let mut writer = FileWriter::new(&dir, Some(&g)).unwrap();
    writer.flush().unwrap();
    let bytes = std::fs::read(writer.path()).unwrap();
    let first = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let at = 12 + first + 4;
    let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let event: Event = prost::Message::decode(&bytes[at + 12..at + 12 + len]).unwrap();
    let graph: GraphDef = prost::Message::decode(event.graph_def.unwrap().as_slice()).unwrap();
    let node = |name: &str| graph.node.iter().find(|n| n.name == name).unwrap().clone();
    let shape = |n: &NodeDef| match &n.attr["_output_shapes"].value {
        Some(AttrKind::List(l)) => l.shape[0].dim.iter().map(|d| d.size).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let (xn, yn) = (node("X"), node("y"));
    assert_eq!(xn.attr["dtype"].value, Some(AttrKind::Type(1)));
    assert_eq!(shape(&xn), [-1, 3]);
    assert_eq!(yn.op, "MatMul");
    assert_eq!(yn.attr["T"].value, Some(AttrKind::Type(1)));
    assert_eq!(shape(&yn), [-1, 2]);
    drop(writer);
    std::fs::remove_dir_all(dir).unwrap();
}
