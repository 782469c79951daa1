//! Export and import variables by name in the safetensors format (the `safetensors` crate), so
//! weights move to and from PyTorch/JAX tooling.

use crate::checkpoint::{bytes_value, value_bytes};
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

/// Writes the variables' current values to `path`, each under its op name (`hidden1/kernel`).
pub fn export_safetensors(g: &Graph, sess: &Session, vars: &[Variable], path: &Path) -> Result<()> {
    let mut owned = Vec::with_capacity(vars.len());
    for v in vars {
        let value = sess.variable_value(*v)?;
        owned.push((
            v.op_name(g),
            value.dtype(),
            value.shape().to_vec(),
            value_bytes(&value),
        ));
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
                TensorView::new(to_st(*dt), shape.clone(), bytes)
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
    let bytes = crate::checkpoint::read_bounded(path, u64::MAX / 2, "safetensors file")?;
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
        if t.dtype() != to_st(dt) || !v.shape(g).accepts(&shape) {
            return Err(IoError::Mismatch {
                key: key.clone(),
                var_shape: v.shape(g).to_string(),
                var_dtype: dt.to_string(),
                ckpt_shape: shape,
                ckpt_dtype: format!("{:?}", t.dtype()),
            });
        }
        let value = bytes_value(dt, &shape, t.data()).map_err(|m| IoError::Corrupt {
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
}
