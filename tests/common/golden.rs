//! What the PyTorch golden tests share (`tests/golden.rs`, the SE-ResNet
//! multi-task model; `tests/golden_mae.rs`, masked-autoencoder pretraining):
//! finding and reading a fixture with its magic and version checked, and the
//! elementwise comparison with per-tensor bounds and a per-group report.

use mtaffect::train::ConfigFile;
use mtaffect::{tensor_file, DType, Error, Params, Result, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// `tests/fixtures/<file>` in the source tree: under `MTAFFECT_ROOT` where
/// the tree is not where the test was built (the GPU host runs a prebuilt
/// bundle over a copy of it), else under the crate's own folder.
fn fixture_path(file: &str) -> PathBuf {
    std::env::var_os("MTAFFECT_ROOT")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/fixtures")
        .join(file)
}

/// Which fixture a test reads: its file under `tests/fixtures`, the magic
/// and format version its header must carry, and the script that writes it
/// (named in the version error).
pub struct Kind {
    pub file: &'static str,
    pub magic: &'static str,
    pub version: &'static str,
    pub script: &'static str,
}

/// A fixture: the run config in its metadata (`C`, the config type of the
/// run it reproduces) and its tensors.
pub struct Fixture<C> {
    pub config: C,
    pub tensors: BTreeMap<String, Tensor>,
}

impl<C: ConfigFile> Fixture<C> {
    /// The committed fixture of `kind`.
    pub fn open(kind: &Kind) -> Result<Self> {
        Self::load(&fixture_path(kind.file), kind)
    }

    /// Reads `path`, refusing another file or another format version.
    pub fn load(path: &Path, kind: &Kind) -> Result<Self> {
        let (tensors, meta) = read_fixture(path, kind)?;
        let toml = meta.get("config").ok_or_else(|| {
            Error::Config(format!("{}: metadata has no run config", path.display()))
        })?;
        let config = C::from_toml(toml, &format!("{} config", path.display()))?;
        Ok(Fixture { config, tensors })
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Config(format!("golden fixture has no tensor '{name}'")))
    }
}

/// A fixture's tensors and metadata, refusing another file or another
/// format version.
fn read_fixture(
    path: &Path,
    kind: &Kind,
) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let (tensors, meta) = tensor_file::read(path, "golden fixture")?;
    let bad = |msg: String| Error::Config(format!("{}: {msg}", path.display()));
    let field = |k: &str| meta.get(k).map_or("(missing)", String::as_str);
    if field("magic") != kind.magic {
        return Err(bad(format!(
            "metadata magic is '{}', expected '{}': not a golden fixture",
            field("magic"),
            kind.magic
        )));
    }
    if field("version") != kind.version {
        return Err(bad(format!(
            "fixture version '{}', this test reads version {}; regenerate it with {}",
            field("version"),
            kind.version,
            kind.script
        )));
    }
    Ok((tensors, meta))
}

/// Replaces every parameter with the fixture's `param.<name>` in `dtype`;
/// the fixture must hold exactly the model's parameters, shapes included.
pub fn load_params(
    tensors: &BTreeMap<String, Tensor>,
    params: &mut Params,
    dtype: DType,
) -> Result<()> {
    for id in params.ids() {
        let name = params.name(id).to_string();
        let w = tensors
            .get(&format!("param.{name}"))
            .ok_or_else(|| Error::Config(format!("golden fixture has no parameter '{name}'")))?;
        if w.dims() != params.get(id).dims() {
            return Err(Error::Config(format!(
                "golden parameter '{name}' is {:?}, the model's is {:?}",
                w.dims(),
                params.get(id).dims()
            )));
        }
        *params.get_mut(id) = w.to_dtype(dtype);
    }
    let in_fixture = tensors.keys().filter(|k| k.starts_with("param.")).count();
    if in_fixture != params.len() {
        return Err(Error::Config(format!(
            "golden fixture has {in_fixture} parameters, the model {}",
            params.len()
        )));
    }
    Ok(())
}

/// Writes a fixture with `other_magic` and one with version "0" and checks
/// that `Fixture::load` refuses each with a message naming the file and, for
/// the version, the script that writes the fixture.
pub fn assert_refuses_other_fixtures<C: ConfigFile>(kind: &Kind, other_magic: &str) {
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::zeros([2], DType::F32);
    let regenerate = format!("regenerate it with {}", kind.script);
    for (magic, version, want) in [
        (other_magic, kind.version, "not a golden fixture"),
        (kind.magic, "0", regenerate.as_str()),
    ] {
        let path = dir.path().join("f.safetensors");
        let meta = HashMap::from([
            ("magic".to_string(), magic.to_string()),
            ("version".to_string(), version.to_string()),
        ]);
        tensor_file::write(&path, "golden fixture", vec![("x".into(), &x)], meta).unwrap();
        let e = Fixture::<C>::load(&path, kind)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("f.safetensors") && e.contains(want), "{e}");
    }
}

/// Elementwise `|ours - ref| <= rel·|ref| + abs·max|ref|`: relative where a
/// value is large, and relative to its tensor's scale where an element is near
/// zero (a gradient entry that cancels to ~0 still carries the rounding error
/// of the larger terms it was summed from).
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub rel: f64,
    pub abs: f64,
}

/// The largest `error / bound` over the elements (at most 1 passes), or a
/// message naming the tensor and its worst element.
pub fn compare(
    name: &str,
    ours: &Tensor,
    reference: &Tensor,
    tol: Tol,
) -> std::result::Result<f64, String> {
    if ours.dims() != reference.dims() {
        return Err(format!(
            "{name}: shape {:?}, reference {:?}",
            ours.dims(),
            reference.dims()
        ));
    }
    let (a, b) = (ours.to_f64_vec(), reference.to_f64_vec());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut worst = (0.0f64, 0usize);
    for (i, (x, r)) in a.iter().zip(&b).enumerate() {
        let diff = (x - r).abs();
        let ratio = if diff == 0.0 {
            0.0
        } else {
            diff / (tol.rel * r.abs() + tol.abs * scale)
        };
        // `!(ratio <= worst)` also takes a NaN, which then stays the worst.
        if !(ratio <= worst.0) {
            worst = (ratio, i);
            if ratio.is_nan() {
                break;
            }
        }
    }
    let (ratio, i) = worst;
    if ratio <= 1.0 {
        Ok(ratio)
    } else {
        Err(format!(
            "{name}[{i}]: ours {:e}, PyTorch {:e}, |diff| {:.3e} > {tol:?} (max |ref| {scale:.3e}); {:.1}x the bound",
            a[i],
            b[i],
            (a[i] - b[i]).abs(),
            ratio
        ))
    }
}

/// The group of a tensor name: what comes before its first dot.
pub fn group(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Every fixture tensor whose name starts with one of `computed` that `got`
/// misses or does not match within `tolerance(name)`, and every tensor of
/// `got` the fixture lacks; the worst passing ratio of each group.
pub fn mismatches(
    got: &BTreeMap<String, Tensor>,
    reference: &BTreeMap<String, Tensor>,
    computed: &[&str],
    tolerance: impl Fn(&str) -> Tol,
) -> (Vec<String>, BTreeMap<String, f64>) {
    let mut bad = Vec::new();
    let mut worst: BTreeMap<String, f64> = BTreeMap::new();
    for (name, r) in reference
        .iter()
        .filter(|(k, _)| computed.iter().any(|p| k.starts_with(p)))
    {
        match got.get(name) {
            None => bad.push(format!("{name}: not computed by mtaffect")),
            Some(ours) => match compare(name, ours, r, tolerance(name)) {
                Ok(ratio) => {
                    let w = worst.entry(group(name).to_string()).or_insert(0.0);
                    *w = w.max(ratio);
                }
                Err(e) => bad.push(e),
            },
        }
    }
    bad.extend(
        got.keys()
            .filter(|k| !reference.contains_key(*k))
            .map(|k| format!("{k}: computed by mtaffect but not in the fixture")),
    );
    (bad, worst)
}
