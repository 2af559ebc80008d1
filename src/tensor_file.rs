//! Named tensors plus string metadata in one safetensors file, written
//! atomically: the container of checkpoints and of per-video feature files.
//! Errors name the file and what kind of file it was meant to be.

use crate::io::write_atomic;
use crate::{DType, Error, Result, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A file that cannot be used: an I/O error of kind `InvalidData`, so the
/// message reads "<path>: <kind>: <what is wrong>".
pub fn invalid(path: &Path, kind: &str, msg: String) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{kind}: {msg}")),
    )
}

/// Writes `tensors` and `meta` to `path` atomically; `kind` names the file in errors.
pub fn write(
    path: &Path,
    kind: &str,
    tensors: Vec<(String, &Tensor)>,
    meta: HashMap<String, String>,
) -> Result<()> {
    let views: Vec<(String, Bytes)> = tensors.into_iter().map(|(k, t)| (k, Bytes(t))).collect();
    let bytes = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| invalid(path, kind, e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Every tensor (f32 or f64) and the metadata of a safetensors file.
pub fn read(
    path: &Path,
    kind: &str,
) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let unreadable = |e: safetensors::SafeTensorError| {
        invalid(
            path,
            kind,
            format!("not a readable safetensors file (truncated?): {e}"),
        )
    };
    let st = SafeTensors::deserialize(&bytes).map_err(unreadable)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(unreadable)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = to_tensor(&view)
            .map_err(|msg| invalid(path, kind, format!("tensor '{name}': {msg}")))?;
        tensors.insert(name, t);
    }
    Ok((tensors, meta))
}

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
    }
}

/// A tensor as safetensors sees it. `serialize` copies each tensor's bytes
/// straight into the file image, so saving holds one extra copy of the
/// state, not two.
struct Bytes<'a>(&'a Tensor);

impl View for Bytes<'_> {
    fn dtype(&self) -> Dtype {
        st_dtype(self.0.dtype())
    }

    fn shape(&self) -> &[usize] {
        self.0.dims()
    }

    /// Little-endian elements (the safetensors byte order): the buffer itself
    /// on little-endian hosts, a converted copy elsewhere.
    fn data(&self) -> Cow<'_, [u8]> {
        fn le<T: bytemuck::Pod, const N: usize>(v: &[T], to_le: fn(T) -> [u8; N]) -> Cow<'_, [u8]> {
            if cfg!(target_endian = "little") {
                Cow::Borrowed(bytemuck::cast_slice(v))
            } else {
                Cow::Owned(v.iter().flat_map(|&x| to_le(x)).collect())
            }
        }
        match self.0.dtype() {
            DType::F32 => le(
                self.0.data::<f32>().expect("dtype matched"),
                f32::to_le_bytes,
            ),
            DType::F64 => le(
                self.0.data::<f64>().expect("dtype matched"),
                f64::to_le_bytes,
            ),
        }
    }

    fn data_len(&self) -> usize {
        self.0.numel() * self.dtype().bitsize() / 8
    }
}

/// An f32 or f64 tensor from a safetensors view; other dtypes are an error
/// message for the caller to place.
pub(crate) fn to_tensor(view: &TensorView) -> std::result::Result<Tensor, String> {
    let dims = view.shape().to_vec();
    let b = view.data();
    // The file's data section need not be aligned for f32/f64, so decode
    // element by element rather than casting the slice.
    let t = match view.dtype() {
        Dtype::F32 => Tensor::from_vec(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect::<Vec<f32>>(),
            dims,
        ),
        Dtype::F64 => Tensor::from_vec(
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect::<Vec<f64>>(),
            dims,
        ),
        other => return Err(format!("dtype {other:?} is not supported (f32, f64)")),
    };
    t.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    #[test]
    fn roundtrip_and_errors_name_the_file_and_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.safetensors");
        let a = Tensor::randn([2, 3], 1.0, DType::F32, &mut Rng::new(1));
        let b = Tensor::from_f64s(&[1.0, 2.0, 99999.0], [3], DType::F64).unwrap();
        let meta = HashMap::from([("video".to_string(), "v".to_string())]);
        write(
            &path,
            "features",
            vec![("a".into(), &a), ("b".into(), &b)],
            meta.clone(),
        )
        .unwrap();
        let (t, m) = read(&path, "features").unwrap();
        assert_eq!(m, meta);
        assert_eq!(t["a"].to_f64_vec(), a.to_f64_vec());
        assert_eq!(
            (t["b"].dtype(), t["b"].to_f64_vec()),
            (DType::F64, b.to_f64_vec())
        );
        std::fs::write(&path, b"garbage").unwrap();
        let e = read(&path, "features").unwrap_err().to_string();
        assert!(
            e.contains("v.safetensors") && e.contains("features:"),
            "{e}"
        );
    }
}
