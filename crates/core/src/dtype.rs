//! Element types and static shapes with unknown dimensions (TF's `None`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    F32,
    F64,
    I64,
    Bool,
}

impl DType {
    /// True for the dtypes that receive gradients (f32, f64).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
    /// TF's name of the dtype (`float32`, ...).
    pub fn tf_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::Bool => "bool",
        }
    }
    /// Size of one element in bytes.
    pub fn size_of(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tf_name())
    }
}

/// One dimension of a static shape: `None` is unknown (TF's `?`).
pub type Dim = Option<usize>;

/// A static shape: unknown rank, or a list of possibly unknown dimensions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape(Option<Vec<Dim>>);

impl Shape {
    /// A shape of unknown rank.
    pub fn unknown() -> Self {
        Shape(None)
    }
    /// The shape of a scalar.
    pub fn scalar() -> Self {
        Shape(Some(vec![]))
    }
    /// A shape with the given possibly unknown dimensions.
    pub fn new(dims: Vec<Dim>) -> Self {
        Shape(Some(dims))
    }
    /// A fully known shape.
    pub fn known(dims: &[usize]) -> Self {
        Shape(Some(dims.iter().map(|&d| Some(d)).collect()))
    }
    /// A shape of known rank whose dimensions are all unknown.
    pub fn unknown_dims(rank: usize) -> Self {
        Shape(Some(vec![None; rank]))
    }
    /// The dimensions, or `None` when the rank is unknown.
    pub fn dims(&self) -> Option<&[Dim]> {
        self.0.as_deref()
    }
    /// The rank, or `None` when unknown.
    pub fn rank(&self) -> Option<usize> {
        self.0.as_ref().map(|d| d.len())
    }
    /// The concrete dimensions when every one is known.
    pub fn to_known(&self) -> Option<Vec<usize>> {
        self.0.as_ref()?.iter().copied().collect()
    }
    /// True when rank and all dimensions are known.
    pub fn is_fully_defined(&self) -> bool {
        self.to_known().is_some()
    }
    /// Number of elements when fully known (None when unknown or when the count overflows).
    pub fn num_elements(&self) -> Option<usize> {
        self.to_known()
            .and_then(|d| d.iter().try_fold(1usize, |a, &x| a.checked_mul(x)))
    }
    /// True when a concrete shape is an instance of this static shape.
    pub fn accepts(&self, concrete: &[usize]) -> bool {
        match &self.0 {
            None => true,
            Some(d) => {
                d.len() == concrete.len()
                    && d.iter()
                        .zip(concrete)
                        .all(|(s, c)| s.is_none_or(|s| s == *c))
            }
        }
    }
    /// True when two static shapes could describe the same concrete shape.
    pub fn compatible_with(&self, other: &Shape) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.is_none() || y.is_none() || x == y)
            }
            _ => true,
        }
    }
    /// The most specific shape compatible with both, or `None` when they conflict.
    pub fn merge(&self, other: &Shape) -> Option<Shape> {
        match (&self.0, &other.0) {
            (None, _) => Some(other.clone()),
            (_, None) => Some(self.clone()),
            (Some(a), Some(b)) => {
                if a.len() != b.len() {
                    return None;
                }
                let mut out = Vec::with_capacity(a.len());
                for (x, y) in a.iter().zip(b) {
                    out.push(match (x, y) {
                        (Some(p), Some(q)) if p != q => return None,
                        (Some(p), _) => Some(*p),
                        (None, q) => *q,
                    });
                }
                Some(Shape(Some(out)))
            }
        }
    }
    /// Numpy broadcasting of two static shapes; `Err` with a message when they cannot broadcast.
    pub fn broadcast(&self, other: &Shape) -> Result<Shape, String> {
        let (a, b) = match (&self.0, &other.0) {
            (Some(a), Some(b)) => (a, b),
            _ => return Ok(Shape::unknown()),
        };
        let n = a.len().max(b.len());
        let mut out = vec![None; n];
        for (i, slot) in out.iter_mut().enumerate() {
            let da = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                Some(1)
            };
            let db = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                Some(1)
            };
            *slot = match (da, db) {
                (Some(x), Some(y)) if x == y => Some(x),
                (Some(1), y) => y,
                (x, Some(1)) => x,
                (Some(x), Some(y)) => {
                    return Err(format!(
                        "shapes {} and {} are incompatible for broadcasting ({x} vs {y})",
                        self, other
                    ))
                }
                (Some(x), None) | (None, Some(x)) => Some(x),
                (None, None) => None,
            };
        }
        Ok(Shape(Some(out)))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("<unknown>"),
            Some(d) => {
                f.write_str("(")?;
                for (i, x) in d.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match x {
                        Some(v) => write!(f, "{v}")?,
                        None => f.write_str("?")?,
                    }
                }
                if d.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape::known(d)
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape::known(&d)
    }
}
impl<const N: usize> From<[Dim; N]> for Shape {
    fn from(d: [Dim; N]) -> Self {
        Shape::new(d.to_vec())
    }
}
impl From<Vec<Dim>> for Shape {
    fn from(d: Vec<Dim>) -> Self {
        Shape::new(d)
    }
}

/// Static type information of a tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorInfo {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorInfo {
    /// Builds the info from a dtype and shape.
    pub fn new(dtype: DType, shape: Shape) -> Self {
        TensorInfo { dtype, shape }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_rules() {
        let a = Shape::new(vec![None, Some(3)]);
        let b = Shape::known(&[3]);
        assert_eq!(a.broadcast(&b).unwrap(), Shape::new(vec![None, Some(3)]));
        let c = Shape::known(&[2, 1, 3]);
        let d = Shape::known(&[4, 1]);
        assert_eq!(c.broadcast(&d).unwrap(), Shape::known(&[2, 4, 3]));
        assert!(Shape::known(&[2, 3])
            .broadcast(&Shape::known(&[4]))
            .is_err());
        assert_eq!(Shape::new(vec![None, Some(784)]).to_string(), "(?, 784)");
    }

    #[test]
    fn merge_and_accept() {
        let a = Shape::new(vec![None, Some(3)]);
        assert!(a.accepts(&[7, 3]));
        assert!(!a.accepts(&[7, 4]));
        assert!(!a.accepts(&[3]));
        assert_eq!(a.merge(&Shape::known(&[2, 3])), Some(Shape::known(&[2, 3])));
        assert_eq!(a.merge(&Shape::known(&[2, 4])), None);
    }
}
