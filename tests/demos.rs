//! Small, fast versions of the lecture's demos, asserting their claims as measured facts.

use ferroflow::demos::transfer;

#[test]
fn transfer_learning_reuses_frozen_lower_layers() {
    let dir = std::env::temp_dir().join(format!("ff-demo-transfer-{}", std::process::id()));
    let cfg = transfer::Config { pretrain_epochs: 8, transfer_epochs: 15, per_class: 20, hidden_units: 32, quiet: true, dir: dir.clone(), ..Default::default() };
    let r = transfer::run(&cfg).unwrap();
    assert!(r.pretrain_accuracy > 0.9, "pretraining on 0-4 reaches {:.3}", r.pretrain_accuracy);
    assert!(r.frozen_bit_identical, "hidden1-3 must stay bit-identical");
    assert_eq!(r.rows.len(), 3);
    assert_eq!(r.rows[1].trained_variables, 6, "hidden4, hidden5, outputs: kernel and bias each");
    for row in &r.rows {
        assert!(row.test_accuracy > 0.5, "{}: {:.3} on 5 classes", row.name, row.test_accuracy);
    }
    let table = transfer::table(&r, &cfg);
    assert!(table.contains("reuse hidden1-3, frozen"));
    std::fs::remove_dir_all(dir).unwrap();
}
