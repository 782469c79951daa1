//! TF1 naming and collections, case by case as in tf1-reference.md §1-2.

use ferroflow_core::{keys, DType, Error, Graph, Reuse, Shape, Tensor, Value, Variable};

fn names(g: &Graph, ts: &[Tensor]) -> Vec<String> {
    ts.iter().map(|&t| g.op_name(t)).collect()
}

#[test]
fn uniquification_after_name_scopes() {
    // tf.add(x, 1, name="hidden1") after two name_scope("hidden1") blocks gets hidden1_2.
    let g = Graph::new();
    let x = g.constant(1.0f32).unwrap();
    {
        let s = g.name_scope("hidden1").unwrap();
        assert_eq!(s.scope(), "hidden1/");
        assert_eq!(g.op_name(g.add(x, x).unwrap()), "hidden1/Add");
    }
    {
        let s = g.name_scope("hidden1").unwrap();
        assert_eq!(s.scope(), "hidden1_1/");
        assert_eq!(g.op_name(g.add(x, x).unwrap()), "hidden1_1/Add");
    }
    assert_eq!(
        g.op_name(g.named("hidden1").add(x, x).unwrap()),
        "hidden1_2"
    );
}

#[test]
fn explicit_suffixed_name_collides_again() {
    let g = Graph::new();
    let a = g.named("hidden1").constant(1.0f32).unwrap();
    let b = g.named("hidden1").constant(1.0f32).unwrap();
    let c = g.named("hidden1_1").constant(1.0f32).unwrap();
    assert_eq!(
        names(&g, &[a, b, c]),
        ["hidden1", "hidden1_1", "hidden1_1_1"]
    );
}

#[test]
fn names_collide_case_insensitively() {
    let g = Graph::new();
    let a = g.named("hidden1").constant(1.0f32).unwrap();
    let b = g.named("Hidden1").constant(1.0f32).unwrap();
    let c = g.named("HIDDEN1").constant(1.0f32).unwrap();
    assert_eq!(names(&g, &[a, b, c]), ["hidden1", "Hidden1_1", "HIDDEN1_2"]);
    // `add` then `Add` collide too.
    let s = g.named("add").add(a, b).unwrap();
    let t = g.add(a, b).unwrap();
    assert_eq!(names(&g, &[s, t]), ["add", "Add_1"]);
}

#[test]
fn default_op_names() {
    let g = Graph::new();
    let x = g.placeholder(DType::F32, [None, Some(3)]).unwrap();
    let w = g
        .constant(Value::from_f32(&[3, 2], vec![0.0; 6]).unwrap())
        .unwrap();
    let cases = [
        (g.matmul(x, w).unwrap(), "MatMul", "MatMul"),
        (g.relu(x).unwrap(), "Relu", "Relu"),
        (g.elu(x).unwrap(), "Elu", "Elu"),
        (g.selu(x).unwrap(), "Selu", "Selu"),
        (g.leaky_relu_default(x).unwrap(), "LeakyRelu", "LeakyRelu"),
        (g.sigmoid(x).unwrap(), "Sigmoid", "Sigmoid"),
        (g.tanh(x).unwrap(), "Tanh", "Tanh"),
        (g.reduce_mean(x, None, false).unwrap(), "Mean", "Mean"),
        (g.stop_gradient(x).unwrap(), "StopGradient", "StopGradient"),
        (g.mul(x, x).unwrap(), "Mul", "Mul"),
        (g.div(x, x).unwrap(), "truediv", "RealDiv"),
        (g.add(x, x).unwrap(), "Add", "AddV2"),
    ];
    for (t, name, ty) in cases {
        assert_eq!(g.op_name(t), name);
        assert_eq!(g.op_type(t), ty);
    }
    assert_eq!(g.op_name(x), "Placeholder");
    assert_eq!(g.op_name(w), "Const");
}

#[test]
fn tensor_lookup_by_name() {
    let g = Graph::new();
    let x = g
        .named("X")
        .placeholder(DType::F32, Shape::unknown())
        .unwrap();
    let _d = g.name_scope("dnn").unwrap();
    let _h = g.name_scope("hidden1").unwrap();
    let r = g.relu(x).unwrap();
    assert_eq!(g.tensor_name(r), "dnn/hidden1/Relu:0");
    assert_eq!(g.get_tensor_by_name("dnn/hidden1/Relu:0").unwrap(), r);
    assert_eq!(g.get_operation_by_name("dnn/hidden1/Relu").unwrap(), r.op());
    assert!(matches!(
        g.get_tensor_by_name("nope:0"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        g.get_tensor_by_name("X"),
        Err(Error::OperationNotTensor { .. })
    ));
    assert!(matches!(
        g.get_tensor_by_name("X:1"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn name_scope_absolute_root_and_slashes() {
    let g = Graph::new();
    let one = g.constant(1.0f32).unwrap();
    let captured = {
        let s = g.name_scope("s").unwrap();
        let _t = g.name_scope("t").unwrap();
        assert_eq!(g.current_name_scope(), "s/t/");
        s.scope().to_string()
    };
    {
        // Re-entering a captured scope (trailing slash) uses it verbatim.
        let _again = g.name_scope(&captured).unwrap();
        assert_eq!(g.op_name(g.neg(one).unwrap()), "s/Neg");
        // "" resets to the root.
        let _root = g.name_scope("").unwrap();
        assert_eq!(g.op_name(g.neg(one).unwrap()), "Neg");
    }
    // An explicit name with a slash is allowed.
    assert_eq!(g.tensor_name(g.named("x/y").neg(one).unwrap()), "x/y:0");
    assert!(matches!(
        g.name_scope("_bad"),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        g.name_scope("a b"),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn tf_variable_honours_name_scope() {
    let g = Graph::new();
    let init = g.constant(1.0f32).unwrap();
    let _ns = g.name_scope("ns").unwrap();
    let w = g.variable("w", init, true).unwrap();
    assert_eq!(w.name(&g), "ns/w:0");
    assert_eq!(g.op_name(w.initializer()), "ns/w/Assign");
    assert_eq!(g.tensor_name(w.value()), "ns/w/read:0");
    let v = g.variable("", init, true).unwrap();
    let v1 = g.variable("", init, true).unwrap();
    assert_eq!(
        (v.op_name(&g), v1.op_name(&g)),
        ("ns/Variable".into(), "ns/Variable_1".into())
    );
}

#[test]
fn get_variable_ignores_name_scope_and_uses_variable_scope() {
    let g = Graph::new();
    {
        let _ns = g.name_scope("ns").unwrap();
        let gv = g.get_variable("gv", &[2], DType::F32).unwrap();
        assert_eq!(gv.name(&g), "gv:0");
    }
    let _vs = g.variable_scope("vs").unwrap();
    let _ns = g.name_scope("ns").unwrap();
    let w = g.get_variable("w", &[2], DType::F32).unwrap();
    assert_eq!(w.name(&g), "vs/w:0");
    let one = g.constant(1.0f32).unwrap();
    assert_eq!(g.op_name(g.identity(one).unwrap()), "vs/ns/Identity");
    // The default initializer is glorot_uniform, under <name>/Initializer/.
    assert!(g
        .get_operation_by_name("vs/w/Initializer/random_uniform/RandomUniform")
        .is_ok());
}

#[test]
fn reentering_a_variable_scope_keeps_variable_names_but_moves_ops() {
    let g = Graph::new();
    let one = g.constant(1.0f32).unwrap();
    {
        let _vs = g.variable_scope("vs").unwrap();
        assert_eq!(g.op_name(g.neg(one).unwrap()), "vs/Neg");
    }
    let _vs = g.variable_scope("vs").unwrap();
    let v = g.get_variable("v", &[1], DType::F32).unwrap();
    assert_eq!(v.op_name(&g), "vs/v");
    assert_eq!(g.op_name(g.neg(one).unwrap()), "vs_1/Neg");
}

#[test]
fn get_variable_reuse_rules() {
    let g = Graph::new();
    let gv = {
        let _vs = g.variable_scope("vs").unwrap();
        g.get_variable("gv", &[2], DType::F32).unwrap()
    };
    {
        let _vs = g.variable_scope("vs").unwrap();
        let e = g.get_variable("gv", &[2], DType::F32).unwrap_err();
        assert_eq!(
            e,
            Error::VariableExists {
                name: "vs/gv".into()
            }
        );
        assert!(e
            .to_string()
            .starts_with("Variable vs/gv already exists, disallowed."));
    }
    {
        let _vs = g.variable_scope_with("vs", Reuse::Yes).unwrap();
        assert_eq!(g.get_variable("gv", &[2], DType::F32).unwrap(), gv);
        let e = g.get_variable("nope", &[2], DType::F32).unwrap_err();
        assert!(e.to_string().starts_with("Variable vs/nope does not exist"));
        let e = g.get_variable("gv", &[3], DType::F32).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Trying to share variable vs/gv, but specified shape (3,) and found shape (2,)."
        );
        // Reuse is inherited by nested scopes.
        let _inner = g.variable_scope("inner").unwrap();
        assert!(g.get_variable("x", &[1], DType::F32).is_err());
    }
    {
        let _vs = g.variable_scope_with("vs", Reuse::Auto).unwrap();
        assert_eq!(g.get_variable("gv", &[2], DType::F32).unwrap(), gv);
        let fresh = g.get_variable("fresh", &[1], DType::F32).unwrap();
        assert_eq!(g.get_variable("fresh", &[1], DType::F32).unwrap(), fresh);
    }
    {
        let _vs = g.variable_scope("vs").unwrap();
        g.reuse_variables();
        assert_eq!(g.get_variable("gv", &[2], DType::F32).unwrap(), gv);
    }
}

fn layer_graph(layers: &[&str]) -> (Graph, Vec<Variable>) {
    let g = Graph::new();
    let mut vars = Vec::new();
    for l in layers {
        let _vs = g.variable_scope(l).unwrap();
        vars.push(g.get_variable("kernel", &[2, 2], DType::F32).unwrap());
        vars.push(g.get_variable("bias", &[2], DType::F32).unwrap());
    }
    (g, vars)
}

fn coll(g: &Graph, scope: Option<&str>) -> Vec<String> {
    let vs: Vec<Variable> = g.get_collection(keys::GLOBAL_VARIABLES, scope).unwrap();
    vs.iter().map(|v| v.name(g)).collect()
}

#[test]
fn get_collection_matches_at_the_start_only() {
    let (g, _) = layer_graph(&[
        "hidden1", "hidden2", "hidden3", "hidden4", "hidden10", "outputs",
    ]);
    let prefixes = |scope: &str| -> Vec<String> {
        let mut p: Vec<String> = coll(&g, Some(scope))
            .iter()
            .map(|n| n.split('/').next().unwrap().to_string())
            .collect();
        p.dedup();
        p
    };
    assert_eq!(
        prefixes("hidden[123]"),
        ["hidden1", "hidden2", "hidden3", "hidden10"]
    );
    assert_eq!(prefixes("hidden1"), ["hidden1", "hidden10"]);
    assert_eq!(
        prefixes("hidden[34]|outputs"),
        ["hidden3", "hidden4", "outputs"]
    );
    assert!(coll(&g, Some("idden1")).is_empty());
    assert!(coll(&g, Some("kernel")).is_empty());
    assert_eq!(coll(&g, Some(".*kernel")).len(), 6);
    assert!(coll(&g, Some("hidden1/kernel$")).is_empty());
    assert_eq!(coll(&g, Some("")).len(), 12);
    // Insertion order, names with :0.
    assert_eq!(
        coll(&g, None)[..4],
        [
            "hidden1/kernel:0",
            "hidden1/bias:0",
            "hidden2/kernel:0",
            "hidden2/bias:0"
        ]
    );
    assert!(matches!(
        g.get_collection::<Variable>(keys::GLOBAL_VARIABLES, Some("(")),
        Err(Error::BadRegex { .. })
    ));
}

#[test]
fn custom_collections_and_items_without_names() {
    let g = Graph::new();
    let t = g.named("loss").constant(1.0f32).unwrap();
    g.add_to_collection("mine", t);
    g.add_to_collection("mine", ferroflow_core::CollectionItem::Str("note".into()));
    g.add_to_collection("mine", t.op());
    let all: Vec<ferroflow_core::CollectionItem> = g.get_collection("mine", None).unwrap();
    assert_eq!(all.len(), 3);
    let scoped: Vec<ferroflow_core::CollectionItem> = g.get_collection("mine", Some("")).unwrap();
    assert_eq!(
        scoped.len(),
        2,
        "the string has no name and is skipped by a scoped query"
    );
    let tensors: Vec<Tensor> = g.get_collection("mine", Some("loss:0")).unwrap();
    assert_eq!(tensors, vec![t]);
    assert!(g
        .get_collection::<Tensor>("missing", None)
        .unwrap()
        .is_empty());
    let trainable: Vec<Variable> = g.get_collection(keys::TRAINABLE_VARIABLES, None).unwrap();
    assert!(trainable.is_empty());
}

#[test]
fn shape_errors_name_node_op_and_shapes() {
    let g = Graph::new();
    let a = g.placeholder(DType::F32, [None, Some(3)]).unwrap();
    let b = g.placeholder(DType::F32, [Some(4), Some(2)]).unwrap();
    let e = g.named("bad").matmul(a, b).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Shape { .. }));
    assert!(
        msg.contains("'bad'")
            && msg.contains("MatMul")
            && msg.contains("(?, 3)")
            && msg.contains("(4, 2)"),
        "{msg}"
    );
    let i = g.placeholder(DType::I64, [Some(3)]).unwrap();
    let e = g.add(a, i).unwrap_err();
    assert!(matches!(e, Error::DType { .. }), "{e}");
    // A failed build leaves the name free.
    let ok = g.named("bad").neg(a).unwrap();
    assert_eq!(g.op_name(ok), "bad");
}
