//! Tensors: a runtime shape over reference-counted storage.
//!
//! Storage is immutable once shared: ops produce new tensors, and in-place
//! updates (optimizers) go through [`Tensor::data_mut`], which copies only if
//! the buffer is still shared (for example, saved by a live tape).
//!
//! Storage is host memory or (f32 only) CUDA device memory. Moving between
//! them is explicit ([`Tensor::to_device`], [`Tensor::to_cpu`]); reading the
//! elements of a CUDA tensor as a host slice is a "wrong backend" error.

pub(crate) mod cuda_copy;
mod device;
mod dtype;
mod rng;
mod shape;

pub use device::Device;
pub use dtype::DType;
pub use rng::Rng;
pub use shape::Shape;

use crate::backend::cpu::{CpuStorage, Float};
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::{with_dtype, Error, Result};
use std::sync::Arc;

/// A tensor's elements: on the host in any dtype, or f32 on a GPU.
#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    Cuda(CudaStorage),
}

impl Storage {
    fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(c) => c.dtype(),
            Storage::Cuda(_) => DType::F32,
        }
    }
}

#[derive(Clone)]
pub struct Tensor {
    shape: Shape,
    storage: Arc<Storage>,
    /// The values rounded to bf16, same layout, written by the op that
    /// computed them for a bf16 consumer (see [`Tensor::with_bf16_copy`]).
    bf16: Option<Arc<CudaStorage>>,
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
            storage: Arc::new(Storage::Cpu(T::wrap(data))),
            bf16: None,
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
            storage: Arc::new(Storage::Cpu(storage)),
            bf16: None,
        }
    }

    pub fn zeros(shape: impl Into<Shape>, dtype: DType) -> Tensor {
        Tensor::full(shape, 0.0, dtype)
    }

    /// Zeros on `device` (filled there: no host buffer is copied over).
    pub fn zeros_on(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        match device {
            Device::Cpu => Ok(Tensor::zeros(shape, dtype)),
            Device::Cuda(d) => {
                let shape = shape.into();
                Tensor::from_cuda(CudaStorage::zeros(d, shape.numel())?, shape)
            }
        }
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

    /// The elements as a host slice of `T`; an error if `T` is not the
    /// tensor's dtype or the tensor lives on a GPU.
    pub fn data<T: Float>(&self) -> Result<&[T]> {
        let cpu = self.cpu("data")?;
        T::slice(cpu).ok_or_else(|| Error::DType {
            op: "data",
            expected: T::DTYPE.to_string(),
            found: self.dtype().to_string(),
        })
    }

    /// Mutable host elements; copies the buffer first if another tensor shares it.
    pub fn data_mut<T: Float>(&mut self) -> Result<&mut [T]> {
        self.bf16 = None; // the caller may change the values
        let found = self.dtype();
        let copy = match Arc::get_mut(&mut self.storage) {
            Some(_) => None,
            None => Some(self.cpu("data_mut")?.clone()),
        };
        if let Some(c) = copy {
            self.storage = Arc::new(Storage::Cpu(c));
        }
        let cpu = match Arc::get_mut(&mut self.storage) {
            Some(Storage::Cpu(c)) => Some(c),
            _ => None,
        };
        let cpu = cpu.ok_or_else(|| self_backend_error("data_mut", "cpu", "cuda"))?;
        T::slice_mut(cpu).ok_or_else(|| Error::DType {
            op: "data_mut",
            expected: T::DTYPE.to_string(),
            found: found.to_string(),
        })
    }

    /// The host storage; a "wrong backend" error naming `op` for a CUDA tensor.
    fn cpu(&self, op: &'static str) -> Result<&CpuStorage> {
        match &*self.storage {
            Storage::Cpu(c) => Ok(c),
            Storage::Cuda(_) => Err(self_backend_error(op, "cpu", &self.device().to_string())),
        }
    }

    /// The device storage; a "wrong backend" error naming `op` for a host tensor.
    pub fn cuda(&self, op: &'static str) -> Result<&CudaStorage> {
        match &*self.storage {
            Storage::Cuda(c) => Ok(c),
            Storage::Cpu(_) => Err(self_backend_error(op, "cuda", "cpu")),
        }
    }

    /// Mutable device storage (optimizer updates in place); copies the
    /// buffer on the device first if another tensor shares it.
    pub fn cuda_mut(&mut self, op: &'static str) -> Result<&mut CudaStorage> {
        self.bf16 = None; // the caller may change the values
        if Arc::get_mut(&mut self.storage).is_none() {
            let copy = self.cuda(op)?.try_clone()?;
            self.storage = Arc::new(Storage::Cuda(copy));
        }
        match Arc::get_mut(&mut self.storage) {
            Some(Storage::Cuda(c)) => Ok(c),
            _ => Err(self_backend_error(op, "cuda", "cpu")),
        }
    }

    /// Attaches `copy`, this CUDA tensor's values rounded to bf16 (nearest
    /// even) in the same row-major layout, two per f32 slot, with the last
    /// dim a multiple of 8 (the tensor-core convolutions' 16-byte rows).
    /// An op that computes a tensor a bf16 convolution reads next (batch
    /// norm + ReLU, batch norm's input gradient under a bf16 tape) writes
    /// the copy in the same pass, so the convolution need not convert it.
    /// The copy follows clones and is dropped by reshapes, copies and any
    /// mutable access ([`Tensor::data_mut`], [`Tensor::cuda_mut`]).
    pub fn with_bf16_copy(mut self, copy: CudaStorage) -> Result<Tensor> {
        let op = "with_bf16_copy";
        self.cuda(op)?;
        let last = self.dims().last().copied().unwrap_or(0);
        if last % 8 != 0 || copy.len() != self.numel().div_ceil(2) {
            return Err(Error::shape(
                op,
                format!(
                    "a bf16 copy of {} needs a last dim that is a multiple of 8 and {} slots, found {}",
                    self.shape,
                    self.numel().div_ceil(2),
                    copy.len()
                ),
            ));
        }
        self.bf16 = Some(Arc::new(copy));
        Ok(self)
    }

    /// The bf16 copy attached by [`Tensor::with_bf16_copy`], if any.
    pub fn bf16_copy(&self) -> Option<&Arc<CudaStorage>> {
        self.bf16.as_ref()
    }

    /// Wraps device storage of `shape.numel()` elements as a tensor.
    pub fn from_cuda(storage: CudaStorage, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if storage.len() != shape.numel() {
            return Err(Error::shape(
                "from_cuda",
                format!("{} elements for shape {}", storage.len(), shape),
            ));
        }
        Ok(Tensor {
            shape,
            storage: Arc::new(Storage::Cuda(storage)),
            bf16: None,
        })
    }

    pub fn device(&self) -> Device {
        match &*self.storage {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(c) => Device::Cuda(c.device().clone()),
        }
    }

    pub fn is_cuda(&self) -> bool {
        matches!(&*self.storage, Storage::Cuda(_))
    }

    /// The GPU this tensor lives on, if any.
    pub fn cuda_device(&self) -> Option<&Arc<CudaDevice>> {
        match &*self.storage {
            Storage::Cuda(c) => Some(c.device()),
            Storage::Cpu(_) => None,
        }
    }

    /// An explicit copy to `device` (shares the buffer when already there).
    /// CUDA tensors are f32: an f64 tensor is converted on the way.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        match (device, &*self.storage) {
            (Device::Cpu, _) => self.to_cpu(),
            (Device::Cuda(d), Storage::Cuda(c)) if c.device().ordinal() == d.ordinal() => {
                Ok(self.clone())
            }
            (Device::Cuda(d), Storage::Cuda(c)) => {
                // Across GPUs through the host: rare, and explicit.
                let host = c.to_host()?;
                Tensor::from_cuda(CudaStorage::from_host(d, &host)?, self.shape.clone())
            }
            (Device::Cuda(d), Storage::Cpu(_)) => {
                let host = self.to_dtype(DType::F32);
                let storage = CudaStorage::from_host(d, host.data::<f32>()?)?;
                Tensor::from_cuda(storage, self.shape.clone())
            }
        }
    }

    /// An explicit device-to-host copy (waits for the GPU); shares the
    /// buffer when already on the host.
    pub fn to_cpu(&self) -> Result<Tensor> {
        match &*self.storage {
            Storage::Cpu(_) => Ok(self.clone()),
            Storage::Cuda(c) => Tensor::from_vec(c.to_host()?, self.shape.clone()),
        }
    }

    pub fn to_vec<T: Float>(&self) -> Result<Vec<T>> {
        Ok(self.data::<T>()?.to_vec())
    }

    /// The elements converted to f64, whatever the dtype. A CUDA tensor is
    /// read back to the host here (the caller asked for host values); if that
    /// copy fails the result is all NaN; use [`Tensor::try_to_f64_vec`] to
    /// get the driver's error instead.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.try_to_f64_vec()
            .unwrap_or_else(|_| vec![f64::NAN; self.numel()])
    }

    /// The elements converted to f64, reading a CUDA tensor back to the host.
    pub fn try_to_f64_vec(&self) -> Result<Vec<f64>> {
        Ok(match &*self.storage {
            Storage::Cpu(CpuStorage::F32(v)) => v.iter().map(|&x| x as f64).collect(),
            Storage::Cpu(CpuStorage::F64(v)) => v.clone(),
            Storage::Cuda(c) => c.to_host()?.iter().map(|&x| x as f64).collect(),
        })
    }

    /// The value of a one-element tensor (read back from the GPU if there).
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!("expected one element, found shape {}", self.shape),
            ));
        }
        Ok(self.try_to_f64_vec()?[0])
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
            bf16: None,
        })
    }

    /// A copy in `dtype` (on the host; a CUDA tensor asked for f64 is read back).
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
        if let Some(dev) = self.cuda_device() {
            return cuda_copy::narrow(dev, self, (outer, n, inner), start, len, dims);
        }
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
        if let Some(dev) = same_device("concat", parts)? {
            return cuda_copy::concat(&dev, parts, axis, outer, inner, dims);
        }
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

/// The GPU all of `tensors` live on, None if all are on the host, an error
/// naming `op` if they are split between devices.
pub(crate) fn same_device(
    op: &'static str,
    tensors: &[&Tensor],
) -> Result<Option<Arc<CudaDevice>>> {
    let first = tensors.first().map(|t| t.device()).unwrap_or(Device::Cpu);
    for t in tensors.iter().skip(1) {
        let d = t.device();
        if d != first {
            return Err(Error::Device {
                op,
                lhs: first.to_string(),
                rhs: d.to_string(),
            });
        }
    }
    Ok(match first {
        Device::Cpu => None,
        Device::Cuda(d) => Some(d),
    })
}

fn self_backend_error(op: &'static str, expected: &str, found: &str) -> Error {
    Error::Backend {
        op,
        expected: expected.to_string(),
        found: found.to_string(),
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
