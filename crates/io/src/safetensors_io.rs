//! Export and import variables by name in the safetensors format (the `safetensors` crate), so
//! weights move to and from PyTorch/JAX tooling. Import converts float16 and bfloat16 tensors into
//! float32 or float64 variables (exactly) and int32 tensors into int64 variables; export writes
//! float variables as float16 or bfloat16 on request ([`FloatFormat`], rounding to nearest even).

use crate::checkpoint::{bytes_value, value_bytes, widened_value, Narrow};
use crate::{IoError, Result};
use ferroflow_core::{DType, Graph, Session, Variable};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::Path;

fn to_st(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        DType::Bool => Dtype::BOOL,
    }
}

/// How [`export_safetensors_with`] stores float variables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FloatFormat {
    /// Each in its own dtype (float32 or float64).
    #[default]
    Native,
    /// As float16 (IEEE half precision), rounded to nearest even.
    F16,
    /// As bfloat16, rounded to nearest even.
    BF16,
}

/// Writes the variables' current values to `path`, each under its op name (`hidden1/kernel`).
pub fn export_safetensors(g: &Graph, sess: &Session, vars: &[Variable], path: &Path) -> Result<()> {
    export_safetensors_with(g, sess, vars, path, FloatFormat::Native)
}

/// [`export_safetensors`], float variables stored as `floats` says.
pub fn export_safetensors_with(
    g: &Graph,
    sess: &Session,
    vars: &[Variable],
    path: &Path,
    floats: FloatFormat,
) -> Result<()> {
    let mut owned = Vec::with_capacity(vars.len());
    for v in vars {
        let value = sess.variable_value(*v)?;
        let halves = |f: &dyn Fn(f64) -> [u8; 2]| -> Vec<u8> {
            value.to_f64_vec().into_iter().flat_map(f).collect()
        };
        let (dtype, bytes) = match floats {
            FloatFormat::F16 if value.dtype().is_float() => (
                Dtype::F16,
                halves(&|x| half::f16::from_f64(x).to_le_bytes()),
            ),
            FloatFormat::BF16 if value.dtype().is_float() => (
                Dtype::BF16,
                halves(&|x| half::bf16::from_f64(x).to_le_bytes()),
            ),
            _ => (to_st(value.dtype()), value_bytes(&value)),
        };
        owned.push((v.op_name(g), dtype, value.shape().to_vec(), bytes));
    }
    let corrupt = |m: String| IoError::Corrupt {
        path: path.into(),
        message: m,
    };
    let views = owned
        .iter()
        .map(|(name, dt, shape, bytes)| {
            Ok((
                name.clone(),
                TensorView::new(*dt, shape.clone(), bytes)
                    .map_err(|e| corrupt(format!("{name}: {e}")))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, None).map_err(|e| corrupt(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|source| IoError::Io {
        path: path.into(),
        source,
    })
}

/// Sets each variable from the tensor of the same op name in a safetensors file (or the key given
/// in `map`). Checks every key, dtype and shape before assigning anything.
pub fn import_safetensors(
    g: &Graph,
    sess: &Session,
    map: &[(String, Variable)],
    path: &Path,
) -> Result<()> {
    // Regular files only; the size bound is the format's own (an 8-byte header length, then data).
    let bytes = crate::files::read_bounded(path, u64::MAX / 2, "safetensors file")?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| IoError::Corrupt {
        path: path.into(),
        message: e.to_string(),
    })?;
    let mut values = Vec::with_capacity(map.len());
    for (key, v) in map {
        let t = st.tensor(key).map_err(|_| IoError::KeyNotFound {
            key: key.clone(),
            path: path.into(),
        })?;
        let (dt, shape) = (v.dtype(g), t.shape().to_vec());
        let narrow = match t.dtype() {
            Dtype::I32 => Some(Narrow::Int32),
            Dtype::F16 => Some(Narrow::F16),
            Dtype::BF16 => Some(Narrow::BF16),
            _ => None,
        };
        let converts = match narrow {
            Some(n) => n.widens_to(dt),
            None => t.dtype() == to_st(dt),
        };
        if !converts {
            return Err(IoError::DTypeMismatch {
                key: key.clone(),
                var_dtype: dt.to_string(),
                file_dtype: format!("{:?}", t.dtype()),
                path: path.into(),
            });
        }
        if !v.shape(g).accepts(&shape) {
            return Err(IoError::Mismatch {
                key: key.clone(),
                var_shape: v.shape(g).to_string(),
                var_dtype: dt.to_string(),
                ckpt_shape: shape,
                ckpt_dtype: format!("{:?}", t.dtype()),
            });
        }
        let value = match narrow {
            Some(n) => widened_value(n, dt, &shape, t.data()),
            None => bytes_value(dt, &shape, t.data()),
        }
        .map_err(|m| IoError::Corrupt {
            path: path.into(),
            message: format!("{key}: {m}"),
        })?;
        values.push((*v, value));
    }
    for (v, value) in values {
        sess.set_variable_value(v, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroflow_core::{Initializer, VarOptions};

    #[test]
    fn round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("ff-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        let g = Graph::new();
        g.set_random_seed(3);
        let k = g
            .get_variable("hidden1/kernel", &[3, 2], DType::F32)
            .unwrap();
        let b = g
            .get_variable_with(
                "hidden1/bias",
                &[2],
                DType::F64,
                VarOptions::init(Initializer::Constant(0.25)),
            )
            .unwrap();
        let s = Session::new(&g);
        s.run_targets(&[g.global_variables_initializer().unwrap()], &[])
            .unwrap();
        export_safetensors(&g, &s, &[k, b], &path).unwrap();
        let g2 = Graph::new();
        let k2 = g2
            .get_variable("hidden1/kernel", &[3, 2], DType::F32)
            .unwrap();
        let b2 = g2.get_variable("other", &[2], DType::F64).unwrap();
        let s2 = Session::new(&g2);
        import_safetensors(
            &g2,
            &s2,
            &[("hidden1/kernel".into(), k2), ("hidden1/bias".into(), b2)],
            &path,
        )
        .unwrap();
        assert_eq!(s2.variable_value(k2).unwrap(), s.variable_value(k).unwrap());
        assert_eq!(s2.variable_value(b2).unwrap().to_f64_vec(), [0.25, 0.25]);
        let e = import_safetensors(&g2, &s2, &[("nope".into(), k2)], &path).unwrap_err();
        assert!(e.to_string().contains("Key nope not found"), "{e}");
        let e = import_safetensors(&g2, &s2, &[("hidden1/bias".into(), k2)], &path).unwrap_err();
        assert!(e.to_string().contains("key hidden1/bias"), "{e}");
        std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\xffgarbage").unwrap();
        assert!(matches!(
            import_safetensors(&g2, &s2, &[("hidden1/kernel".into(), k2)], &path),
            Err(IoError::Corrupt { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// float16/bfloat16 both ways and int32 in: a float32 variable written as float16 and as
    /// bfloat16 reads back rounded as each format rounds (0.1 → 0.0999755859375 in float16,
    /// 0.10009765625 in bfloat16; 3.0 exactly); an int32 tensor fills an int64 variable; a float32
    /// file into an int64 variable is a dtype error, not a shape error.
    #[test]
    fn half_precision_and_int32() {
        let dir = std::env::temp_dir().join(format!("ff-st-half-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let g = Graph::new();
        let w = g
            .get_variable_with("w", &[2], DType::F32, VarOptions::init(Initializer::Zeros))
            .unwrap();
        let s = Session::new(&g);
        s.set_variable_value(
            w,
            ferroflow_core::Value::from_f32(&[2], vec![0.1, 3.0]).unwrap(),
        )
        .unwrap();
        for (format, first) in [
            (FloatFormat::F16, 0.0999755859375),
            (FloatFormat::BF16, 0.10009765625),
        ] {
            let path = dir.join("h.safetensors");
            export_safetensors_with(&g, &s, &[w], &path, format).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let dtype = if format == FloatFormat::F16 {
                Dtype::F16
            } else {
                Dtype::BF16
            };
            assert_eq!(st.tensor("w").unwrap().dtype(), dtype);
            let g2 = Graph::new();
            let w2 = g2.get_variable("w", &[2], DType::F64).unwrap();
            let s2 = Session::new(&g2);
            import_safetensors(&g2, &s2, &[("w".into(), w2)], &path).unwrap();
            assert_eq!(s2.variable_value(w2).unwrap().to_f64_vec(), [first, 3.0]);
        }
        let path = dir.join("i.safetensors");
        let data: Vec<u8> = [7i32, -3, i32::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let view = TensorView::new(Dtype::I32, vec![3], &data).unwrap();
        std::fs::write(
            &path,
            safetensors::tensor::serialize([("n", view)], None).unwrap(),
        )
        .unwrap();
        let n = g.get_variable("n", &[3], DType::I64).unwrap();
        import_safetensors(&g, &s, &[("n".into(), n)], &path).unwrap();
        assert_eq!(
            s.variable_value(n).unwrap().to_f64_vec(),
            [7.0, -3.0, 2147483647.0]
        );
        let e = import_safetensors(&g, &s, &[("n".into(), w)], &path).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not convert to the variable's dtype float32"),
            "{e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
