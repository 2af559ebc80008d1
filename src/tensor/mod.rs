//! Tensors: a runtime shape over reference-counted storage.
//!
//! Storage is immutable once shared: ops produce new tensors, and in-place
//! updates (optimizers) go through [`Tensor::data_mut`], which copies only if
//! the buffer is still shared (for example, saved by a live tape).

mod dtype;
mod rng;
mod shape;

pub use dtype::DType;
pub use rng::Rng;
pub use shape::Shape;

use crate::backend::cpu::Float;
use crate::{with_dtype, Error, Result};
use std::sync::Arc;

/// Host memory of one dtype.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone)]
pub struct Tensor {
    shape: Shape,
    storage: Arc<CpuStorage>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({} {})", self.dtype(), self.shape)
    }
}

impl Tensor {
    // ---- construction -------------------------------------------------

    /// Wraps `data` (row-major) as a tensor of `shape`.
    pub fn from_vec<T: Float>(data: Vec<T>, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::shape(
                "from_vec",
                format!(
                    "{} elements given for shape {} ({} elements)",
                    data.len(),
                    shape,
                    shape.numel()
                ),
            ));
        }
        Ok(Tensor {
            shape,
            storage: Arc::new(T::wrap(data)),
        })
    }

    /// Like `from_vec` but converting from f64 values, handy in tests and tools.
    pub fn from_f64s(data: &[f64], shape: impl Into<Shape>, dtype: DType) -> Result<Tensor> {
        with_dtype!(dtype, T => Tensor::from_vec(data.iter().map(|&v| T::from_f64(v)).collect::<Vec<T>>(), shape))
    }

    pub fn full(shape: impl Into<Shape>, value: f64, dtype: DType) -> Tensor {
        let shape = shape.into();
        let n = shape.numel();
        let storage = with_dtype!(dtype, T => T::wrap(vec![T::from_f64(value); n]));
        Tensor {
            shape,
            storage: Arc::new(storage),
        }
    }

    pub fn zeros(shape: impl Into<Shape>, dtype: DType) -> Tensor {
        Tensor::full(shape, 0.0, dtype)
    }

    pub fn ones(shape: impl Into<Shape>, dtype: DType) -> Tensor {
        Tensor::full(shape, 1.0, dtype)
    }

    pub fn scalar(value: f64, dtype: DType) -> Tensor {
        Tensor::full(Shape::scalar(), value, dtype)
    }

    /// Normal(0, std^2) entries from the seeded generator.
    pub fn randn(shape: impl Into<Shape>, std: f64, dtype: DType, rng: &mut Rng) -> Tensor {
        let shape = shape.into();
        let v: Vec<f64> = (0..shape.numel()).map(|_| std * rng.normal()).collect();
        Tensor::from_f64s(&v, shape, dtype).expect("length matches by construction")
    }

    /// Uniform [lo, hi) entries from the seeded generator.
    pub fn uniform(
        shape: impl Into<Shape>,
        lo: f64,
        hi: f64,
        dtype: DType,
        rng: &mut Rng,
    ) -> Tensor {
        let shape = shape.into();
        let v: Vec<f64> = (0..shape.numel()).map(|_| rng.uniform(lo, hi)).collect();
        Tensor::from_f64s(&v, shape, dtype).expect("length matches by construction")
    }

    // ---- inspection ---------------------------------------------------

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }

    /// The elements as a slice of `T`; an error if `T` is not the tensor's dtype.
    pub fn data<T: Float>(&self) -> Result<&[T]> {
        T::slice(&self.storage).ok_or_else(|| Error::DType {
            op: "data",
            expected: T::DTYPE.to_string(),
            found: self.dtype().to_string(),
        })
    }

    /// Mutable elements; copies the buffer first if another tensor shares it.
    pub fn data_mut<T: Float>(&mut self) -> Result<&mut [T]> {
        let found = self.dtype();
        T::slice_mut(Arc::make_mut(&mut self.storage)).ok_or_else(|| Error::DType {
            op: "data_mut",
            expected: T::DTYPE.to_string(),
            found: found.to_string(),
        })
    }

    pub fn to_vec<T: Float>(&self) -> Result<Vec<T>> {
        Ok(self.data::<T>()?.to_vec())
    }

    /// The elements converted to f64, whatever the dtype.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &*self.storage {
            CpuStorage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuStorage::F64(v) => v.clone(),
        }
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!("expected one element, found shape {}", self.shape),
            ));
        }
        Ok(self.to_f64_vec()[0])
    }

    /// True when both tensors share one buffer (no copy was made).
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    // ---- shape changes (no autograd; see ops::reshape for the tape versions) --

    /// Same elements, new shape; shares the buffer.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!("cannot view {} as {}", self.shape, shape),
            ));
        }
        Ok(Tensor {
            shape,
            storage: self.storage.clone(),
        })
    }

    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        Tensor::from_f64s(&self.to_f64_vec(), self.shape.clone(), dtype)
            .expect("length matches by construction")
    }

    /// Elements `start..start+len` along `axis` (batch slicing is axis 0).
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        if axis >= self.rank() || start + len > self.shape.dim(axis) {
            return Err(Error::shape(
                "narrow",
                format!(
                    "range {start}..{} along axis {axis} is outside shape {}",
                    start + len,
                    self.shape
                ),
            ));
        }
        let (outer, n, inner) = self.shape.split_at_axis(axis);
        let mut dims = self.dims().to_vec();
        dims[axis] = len;
        with_dtype!(self.dtype(), T => {
            let src = self.data::<T>()?;
            let mut out = Vec::with_capacity(outer * len * inner);
            for o in 0..outer {
                let base = (o * n + start) * inner;
                out.extend_from_slice(&src[base..base + len * inner]);
            }
            Tensor::from_vec(out, dims)
        })
    }

    /// Joins tensors along `axis`; all other dims and the dtype must agree.
    /// Channel concat of NHWC activations is `axis = 3`.
    pub fn concat(parts: &[&Tensor], axis: usize) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| Error::arg("concat", "no tensors given"))?;
        if axis >= first.rank() {
            return Err(Error::arg(
                "concat",
                format!("axis {axis} out of range for shape {}", first.shape),
            ));
        }
        let mut total = 0;
        for p in parts {
            check_same_dtype("concat", first, p)?;
            let ok = p.rank() == first.rank()
                && p.dims()
                    .iter()
                    .zip(first.dims())
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !ok {
                return Err(Error::shape(
                    "concat",
                    format!("{} and {} differ outside axis {axis}", first.shape, p.shape),
                ));
            }
            total += p.shape.dim(axis);
        }
        let (outer, _, inner) = first.shape.split_at_axis(axis);
        let mut dims = first.dims().to_vec();
        dims[axis] = total;
        with_dtype!(first.dtype(), T => {
            let mut out = Vec::with_capacity(outer * total * inner);
            for o in 0..outer {
                for p in parts {
                    let w = p.shape.dim(axis) * inner;
                    out.extend_from_slice(&p.data::<T>()?[o * w..(o + 1) * w]);
                }
            }
            Tensor::from_vec(out, dims)
        })
    }
}

pub(crate) fn check_same_dtype(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::DType {
            op,
            expected: a.dtype().to_string(),
            found: b.dtype().to_string(),
        });
    }
    Ok(())
}

pub(crate) fn check_same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    check_same_dtype(op, a, b)?;
    if a.shape() != b.shape() {
        return Err(Error::shape(op, format!("{} vs {}", a.shape(), b.shape())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_checks_length_and_names_shapes() {
        let e = Tensor::from_vec(vec![1.0f32; 5], [2, 3])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("from_vec") && e.contains("[2, 3]") && e.contains('5'),
            "{e}"
        );
    }

    #[test]
    fn wrong_dtype_access_is_an_error() {
        let t = Tensor::zeros([2], DType::F32);
        let e = t.data::<f64>().unwrap_err().to_string();
        assert!(e.contains("f64") && e.contains("f32"), "{e}");
    }

    #[test]
    fn narrow_and_concat_roundtrip_on_batch_and_channels() {
        let mut rng = Rng::new(0);
        let t = Tensor::randn([3, 2, 2, 5], 1.0, DType::F64, &mut rng);
        let a = t.narrow(0, 0, 1).unwrap();
        let b = t.narrow(0, 1, 2).unwrap();
        assert_eq!(b.dims(), &[2, 2, 2, 5]);
        let back = Tensor::concat(&[&a, &b], 0).unwrap();
        assert_eq!(back.to_f64_vec(), t.to_f64_vec());
        let c1 = t.narrow(3, 0, 2).unwrap();
        let c2 = t.narrow(3, 2, 3).unwrap();
        let back = Tensor::concat(&[&c1, &c2], 3).unwrap();
        assert_eq!(back.to_f64_vec(), t.to_f64_vec());
        // Channel 2 of element (0,0,1) sits at flat index 1*5 + 2.
        assert_eq!(c2.to_f64_vec()[3], t.to_f64_vec()[7]);
    }

    #[test]
    fn concat_rejects_mismatched_shapes_and_dtypes() {
        let a = Tensor::zeros([2, 3], DType::F32);
        let b = Tensor::zeros([3, 3], DType::F32);
        let e = Tensor::concat(&[&a, &b], 1).unwrap_err().to_string();
        assert!(e.contains("[2, 3]") && e.contains("[3, 3]"), "{e}");
        let c = Tensor::zeros([2, 3], DType::F64);
        assert!(Tensor::concat(&[&a, &c], 0).is_err());
        assert!(a.narrow(0, 1, 2).is_err());
    }

    #[test]
    fn reshape_shares_and_data_mut_copies_on_write() {
        let a = Tensor::ones([2, 3], DType::F32);
        let mut b = a.reshape([3, 2]).unwrap();
        assert!(a.shares_storage(&b));
        b.data_mut::<f32>().unwrap()[0] = 5.0;
        assert!(!a.shares_storage(&b));
        assert_eq!(a.to_f64_vec()[0], 1.0);
        assert!(a.reshape([4]).is_err());
    }
}
