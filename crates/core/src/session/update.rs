//! The in-place variable updates of a run: `assign_add`/`assign_sub` and the fused optimizer rules,
//! on the variable's own storage when no reader holds it, else on a copy.

use super::*;
use crate::error::KernelError;

/// `var += value` (or `-=`) in place when no one else holds the variable's value, else on a copy.
pub(super) fn update_in_place(
    cur: &mut Arc<Value>,
    value: &Value,
    add: bool,
) -> crate::error::OpResult<()> {
    if cur.shape() != value.shape() {
        return Err(KernelError::Shape(format!(
            "update of shape {:?} does not fit the variable's shape {:?}",
            value.shape(),
            cur.shape()
        )));
    }
    match (Arc::make_mut(cur), value) {
        (Value::F32(a), Value::F32(b)) => {
            a.zip_mut_with(b, |x, &y| *x = if add { *x + y } else { *x - y })
        }
        (Value::F64(a), Value::F64(b)) => {
            a.zip_mut_with(b, |x, &y| *x = if add { *x + y } else { *x - y })
        }
        (Value::I64(a), Value::I64(b)) => a.zip_mut_with(b, |x, &y| {
            *x = if add {
                x.wrapping_add(y)
            } else {
                x.wrapping_sub(y)
            }
        }),
        (a, b) => {
            return Err(KernelError::DType(format!(
                "cannot update a {} variable with a {} value",
                a.dtype(),
                b.dtype()
            )))
        }
    }
    Ok(())
}

fn slice_mut<T>(a: &mut ndarray::ArrayD<T>) -> crate::error::OpResult<&mut [T]> {
    a.as_slice_mut()
        .ok_or_else(|| KernelError::Shape("variable storage is not contiguous".into()))
}

/// Runs a fused optimizer rule on a variable and its slots, in place where no reader holds them.
pub(super) fn apply_in_place(
    ctx: &Context<'_>,
    rule: &ApplyRule,
    w: &mut Arc<Value>,
    slots: &mut [Arc<Value>],
    grad: &Value,
    (lr, scale): (&Value, Option<&Value>),
) -> crate::error::OpResult<()> {
    if slots.len() != rule.slot_count() {
        return Err(KernelError::InvalidArgument(
            "missing slot variables".into(),
        ));
    }
    let lr = lr
        .scalar_value()
        .ok_or_else(|| KernelError::InvalidArgument("the learning rate must be a scalar".into()))?;
    // A scale of the variable's dtype read as f64 converts back exactly.
    let scale = match scale {
        Some(s) => s.scalar_value().ok_or_else(|| {
            KernelError::InvalidArgument("the gradient scale must be a scalar".into())
        })?,
        None => 1.0,
    };
    let lr = (lr, scale);
    match w.dtype() {
        DType::F32 => apply_typed::<f32>(ctx, rule, w, slots, grad, lr),
        DType::F64 => apply_typed::<f64>(ctx, rule, w, slots, grad, lr),
        d => Err(KernelError::InvalidArgument(format!(
            "cannot apply an optimizer update to a {d} variable"
        ))),
    }
}

fn apply_typed<T: FloatArray>(
    ctx: &Context<'_>,
    rule: &ApplyRule,
    w: &mut Arc<Value>,
    slots: &mut [Arc<Value>],
    grad: &Value,
    (lr, scale): (f64, f64),
) -> crate::error::OpResult<()> {
    let mut ss: SmallVec<[&mut [T]; 4]> = SmallVec::new();
    for s in slots.iter_mut() {
        let dt = s.dtype();
        let a = T::array_mut(Arc::make_mut(s)).ok_or_else(|| {
            KernelError::DType(format!("a slot of dtype {dt} does not match the variable"))
        })?;
        ss.push(slice_mut(a)?);
    }
    let g = T::array(grad).and_then(|a| a.as_slice()).ok_or_else(|| {
        KernelError::DType(format!(
            "the gradient ({}) does not match the variable's dtype",
            grad.dtype()
        ))
    })?;
    let wa = T::array_mut(Arc::make_mut(w))
        .ok_or_else(|| KernelError::DType("variable dtype changed".into()))?;
    rule.apply(
        ctx,
        slice_mut(wa)?,
        &mut ss,
        g,
        T::from_f64(lr),
        T::from_f64(scale),
    )
}
