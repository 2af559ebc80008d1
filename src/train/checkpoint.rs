//! Checkpoints as safetensors files.
//!
//! Layout of one file:
//! - model parameters under their registry names (`layer1.0.conv1.weight`);
//! - optimizer state under `optim.` + the optimizer's own key (`optim.m.3`);
//! - extra buffers (batch-norm running statistics, ...) under `buffers.`;
//! - `__metadata__`: format and version, step, epoch, position in the epoch,
//!   the RNG's four u64 words, the best score so far, and the resolved config.
//!
//! A trainer hands its state over where it lives (host or GPU): `save`
//! writes host copies, and `load` restores every parameter and buffer onto
//! the device of the one it replaces and hands the optimizer state back on
//! the parameters' device.
//!
//! Writes are atomic: the bytes go to `<file>.tmp` in the same directory, are
//! fsynced, and the temporary is renamed over the target, so a crash at any
//! point leaves either the old or the new checkpoint, never a torn one.
//! Loading checks every name, shape and dtype against the model before
//! changing anything, and errors name the file and the tensor.

use crate::tensor_file;
use crate::{Error, Params, Result, Tensor};
use safetensors::tensor::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Bumped when the layout changes incompatibly; older files are refused.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "mtaffect-checkpoint";
pub(crate) const OPTIM_PREFIX: &str = "optim.";
pub(crate) const BUFFER_PREFIX: &str = "buffers.";
/// What errors call these files.
const KIND: &str = "checkpoint";

/// Where a run stands: everything besides tensors that resuming needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainProgress {
    /// Optimizer steps taken.
    pub step: u64,
    pub epoch: u64,
    /// Batches of `epoch` already consumed.
    pub position_in_epoch: u64,
    /// The data/augmentation generator's state ([`crate::Rng::state`]).
    pub rng: [u64; 4],
    /// Best validation score so far and its step, so `best` survives a resume.
    pub best: Option<(f64, u64)>,
}

impl TrainProgress {
    /// This progress with the run's generator state as it is now.
    pub fn with_rng(self, rng: &crate::Rng) -> Self {
        TrainProgress {
            rng: rng.state(),
            ..self
        }
    }

    /// A run that has not taken a step.
    pub fn start() -> Self {
        TrainProgress {
            step: 0,
            epoch: 0,
            position_in_epoch: 0,
            rng: [0; 4],
            best: None,
        }
    }
}

/// What [`save`] writes. Borrowed; the tensors may live on any device.
pub struct CheckpointRef<'a> {
    pub params: &'a Params,
    /// `Optimizer::state_dict()`.
    pub optimizer: &'a BTreeMap<String, Tensor>,
    /// Non-trainable model state, by name.
    pub buffers: &'a BTreeMap<String, Tensor>,
    pub progress: TrainProgress,
    /// The resolved run config (`TrainConfig::to_toml_string`).
    pub config_toml: &'a str,
}

/// What [`load`] returns besides the parameters it restored in place.
#[derive(Debug)]
pub struct Checkpoint {
    pub progress: TrainProgress,
    /// For `Optimizer::load_state_dict`.
    pub optimizer: BTreeMap<String, Tensor>,
    pub config_toml: String,
}

/// Writes a checkpoint atomically (see the module docs), from host copies
/// of the tensors (a host tensor is shared, not copied). A state holding a
/// NaN or infinity anywhere (weights, optimizer moments, buffers) is refused
/// before anything is written, so the checkpoint already on disk, the last
/// finite one, stays.
pub fn save(path: impl AsRef<Path>, ckpt: &CheckpointRef) -> Result<()> {
    let path = path.as_ref();
    let mut host: Vec<(String, Tensor)> = Vec::new();
    for id in ckpt.params.ids() {
        let name = ckpt.params.name(id).to_string();
        host.push((name, ckpt.params.get(id).to_cpu()?));
    }
    for (k, t) in ckpt.optimizer {
        host.push((format!("{OPTIM_PREFIX}{k}"), t.to_cpu()?));
    }
    for (k, t) in ckpt.buffers {
        host.push((format!("{BUFFER_PREFIX}{k}"), t.to_cpu()?));
    }
    let views: Vec<(String, &Tensor)> = host.iter().map(|(k, t)| (k.clone(), t)).collect();
    if let Some((name, _)) = views.iter().find(|(_, t)| !all_finite(t)) {
        return Err(Error::NonFinite(format!(
            "step {}: tensor '{name}' holds a NaN or infinity; {} was not written",
            ckpt.progress.step,
            path.display()
        )));
    }
    let p = ckpt.progress;
    let mut meta = HashMap::from([
        ("format".to_string(), FORMAT_NAME.to_string()),
        ("format_version".into(), FORMAT_VERSION.to_string()),
        ("step".into(), p.step.to_string()),
        ("epoch".into(), p.epoch.to_string()),
        ("position_in_epoch".into(), p.position_in_epoch.to_string()),
        ("config".into(), ckpt.config_toml.to_string()),
    ]);
    for (i, w) in p.rng.iter().enumerate() {
        meta.insert(format!("rng.{i}"), w.to_string());
    }
    if let Some((score, step)) = p.best {
        // Display of f64 is the shortest string that parses back exactly.
        meta.insert("best_score".into(), score.to_string());
        meta.insert("best_step".into(), step.to_string());
    }
    tensor_file::write(path, KIND, views, meta)
}

/// Whether every element of a host tensor is finite (device tensors are
/// copied first).
pub fn all_finite(t: &Tensor) -> bool {
    match (t.data::<f32>(), t.data::<f64>()) {
        (Ok(v), _) => v.iter().all(|x| x.is_finite()),
        (_, Ok(v)) => v.iter().all(|x| x.is_finite()),
        _ => t.to_f64_vec().iter().all(|x| x.is_finite()),
    }
}

/// The resolved run config a checkpoint was written with, so `eval` and
/// `predict` can rebuild its model before loading the weights.
pub fn read_config(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| {
        bad(
            path,
            format!("not a readable safetensors file (truncated?): {e}"),
        )
    })?;
    let meta = header.metadata().clone().unwrap_or_default();
    meta.get("config")
        .cloned()
        .ok_or_else(|| bad(path, "metadata has no 'config'".into()))
}

/// Reads a checkpoint, restores `params` and `buffers` in place (each on
/// the device of the tensor it replaces), and returns the optimizer state
/// (on the parameters' device), progress and config. Every parameter and
/// buffer must be present with the model's shape and dtype, and the file
/// may hold no model tensor the model lacks; on any error nothing is
/// changed. `buffers` holds the model's current buffers (their names and
/// shapes are the expectation).
pub fn load(
    path: impl AsRef<Path>,
    params: &mut Params,
    buffers: &mut BTreeMap<String, Tensor>,
) -> Result<Checkpoint> {
    let path = path.as_ref();
    let (mut tensors, meta) = tensor_file::read(path, KIND)?;
    let progress = read_progress(path, &meta)?;

    let mut new_params = Vec::new();
    for id in params.ids() {
        let name = params.name(id);
        let expected = params.get(id);
        let t = take_matching(path, &mut tensors, name, expected, "the model")?;
        new_params.push((id, t.to_device(&expected.device())?));
    }
    let mut new_buffers = BTreeMap::new();
    for (name, expected) in buffers.iter() {
        let key = format!("{BUFFER_PREFIX}{name}");
        let t = take_matching(path, &mut tensors, &key, expected, "the model's buffer")?;
        new_buffers.insert(name.clone(), t.to_device(&expected.device())?);
    }
    let mut optimizer = BTreeMap::new();
    let leftovers: Vec<String> = tensors.keys().cloned().collect();
    for name in leftovers {
        let Some(key) = name.strip_prefix(OPTIM_PREFIX) else {
            return Err(bad(
                path,
                format!("tensor '{name}' is not a parameter or buffer of the model"),
            ));
        };
        let t = tensors.remove(&name).expect("key listed above");
        check_optim_shape(path, &name, key, &t, params)?;
        check_values_finite(path, &name, &t)?;
        optimizer.insert(key.to_string(), t.to_device(&params.device())?);
    }

    for (id, t) in new_params {
        params.set(id, t)?;
    }
    *buffers = new_buffers;
    Ok(Checkpoint {
        progress,
        optimizer,
        config_toml: meta.get("config").cloned().unwrap_or_default(),
    })
}

/// Removes `name` from `tensors`, checking it against `expected`.
fn take_matching(
    path: &Path,
    tensors: &mut BTreeMap<String, Tensor>,
    name: &str,
    expected: &Tensor,
    owner: &str,
) -> Result<Tensor> {
    let t = tensors
        .remove(name)
        .ok_or_else(|| bad(path, format!("missing tensor '{name}' that {owner} needs")))?;
    if t.dims() != expected.dims() {
        return Err(bad(
            path,
            format!(
                "tensor '{name}' has shape {:?} but {owner} expects {:?}",
                t.dims(),
                expected.dims()
            ),
        ));
    }
    if t.dtype() != expected.dtype() {
        return Err(bad(
            path,
            format!(
                "tensor '{name}' is {} but {owner} expects {}",
                t.dtype(),
                expected.dtype()
            ),
        ));
    }
    check_values_finite(path, name, &t)?;
    Ok(t)
}

/// Refuses a tensor holding NaN or infinity: such weights load silently and
/// give chance-level predictions or a run that diverges at once.
fn check_values_finite(path: &Path, name: &str, t: &Tensor) -> Result<()> {
    let values = t.try_to_f64_vec()?;
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(bad(
            path,
            format!(
                "tensor '{name}' holds {} at element {i} of {}; the checkpoint comes from a diverged run (use an earlier checkpoint)",
                values[i],
                values.len()
            ),
        )),
    }
}

/// Optimizer buffers are keyed `<buffer>.<parameter index>` (see
/// `optim::save_buffers`); such a buffer must have its parameter's shape, which
/// catches a checkpoint from a model whose parameters were registered in a
/// different order.
fn check_optim_shape(
    path: &Path,
    name: &str,
    key: &str,
    t: &Tensor,
    params: &Params,
) -> Result<()> {
    let Some(index) = key
        .rsplit_once('.')
        .and_then(|(_, i)| i.parse::<usize>().ok())
    else {
        return Ok(());
    };
    let Some(id) = params.ids().nth(index) else {
        return Err(bad(
            path,
            format!(
                "optimizer tensor '{name}' refers to parameter {index}, but the model has {}",
                params.len()
            ),
        ));
    };
    let p = params.get(id);
    if p.dims() != t.dims() {
        return Err(bad(
            path,
            format!(
                "optimizer tensor '{name}' has shape {:?} but parameter {index} ('{}') has shape {:?}",
                t.dims(),
                params.name(id),
                p.dims()
            ),
        ));
    }
    Ok(())
}

fn read_progress(path: &Path, meta: &HashMap<String, String>) -> Result<TrainProgress> {
    let get = |key: &str| {
        meta.get(key)
            .ok_or_else(|| bad(path, format!("metadata has no '{key}'")))
    };
    let num = |key: &str| -> Result<u64> {
        let v = get(key)?;
        v.parse()
            .map_err(|_| bad(path, format!("metadata '{key}' = '{v}' is not an integer")))
    };
    if get("format")? != FORMAT_NAME {
        return Err(bad(path, "not an mtaffect checkpoint".into()));
    }
    let version = num("format_version")?;
    if version != FORMAT_VERSION as u64 {
        return Err(bad(
            path,
            format!("format version {version}, this build reads {FORMAT_VERSION}"),
        ));
    }
    let best = match (meta.get("best_score"), meta.get("best_step")) {
        (Some(s), Some(_)) => {
            let score = s.parse::<f64>().map_err(|_| {
                bad(
                    path,
                    format!("metadata 'best_score' = '{s}' is not a number"),
                )
            })?;
            Some((score, num("best_step")?))
        }
        _ => None,
    };
    Ok(TrainProgress {
        step: num("step")?,
        epoch: num("epoch")?,
        position_in_epoch: num("position_in_epoch")?,
        rng: [num("rng.0")?, num("rng.1")?, num("rng.2")?, num("rng.3")?],
        best,
    })
}

/// A checkpoint that cannot be used: "<path>: checkpoint: <what is wrong>".
fn bad(path: &Path, msg: String) -> Error {
    tensor_file::invalid(path, KIND, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::tmp_path;
    use crate::optim::{Adam, AdamConfig, Optimizer};
    use crate::DType;
    use crate::{Gradients, Rng};

    fn model(rng: &mut Rng) -> (Params, BTreeMap<String, Tensor>) {
        let mut p = Params::new();
        p.add(
            "layer1.0.conv1.weight",
            Tensor::randn([4, 3, 3, 2], 0.5, DType::F32, rng),
        )
        .unwrap();
        p.add("fc.bias", Tensor::randn([5], 0.5, DType::F32, rng))
            .unwrap();
        let buffers = BTreeMap::from([
            (
                "bn1.running_mean".to_string(),
                Tensor::randn([4], 1.0, DType::F32, rng),
            ),
            ("bn1.running_var".to_string(), Tensor::ones([4], DType::F32)),
        ]);
        (p, buffers)
    }

    fn trained_optimizer(params: &mut Params, rng: &mut Rng) -> Adam {
        let mut opt = Adam::new(AdamConfig::default());
        step(params, &mut opt, rng);
        opt
    }

    fn progress() -> TrainProgress {
        TrainProgress {
            step: 1234,
            epoch: 3,
            position_in_epoch: 17,
            rng: Rng::new(99).state(),
            best: Some((1.0 / 3.0, 1000)),
        }
    }

    fn save_model(path: &Path, params: &Params, opt: &Adam, buffers: &BTreeMap<String, Tensor>) {
        save(
            path,
            &CheckpointRef {
                params,
                optimizer: &opt.state_dict(),
                buffers,
                progress: progress(),
                config_toml: "[train]\nsteps = 5\n",
            },
        )
        .unwrap();
    }

    #[test]
    fn round_trip_restores_everything_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        let mut rng = Rng::new(1);
        let (mut params, buffers) = model(&mut rng);
        let opt = trained_optimizer(&mut params, &mut rng);
        save_model(&path, &params, &opt, &buffers);
        assert!(!tmp_path(&path).exists());

        let (mut fresh, mut fresh_buffers) = model(&mut Rng::new(2));
        let ck = load(&path, &mut fresh, &mut fresh_buffers).unwrap();
        for id in params.ids() {
            assert_eq!(
                fresh.get(id).to_vec::<f32>().unwrap(),
                params.get(id).to_vec::<f32>().unwrap()
            );
        }
        for (k, t) in &buffers {
            assert_eq!(fresh_buffers[k].to_f64_vec(), t.to_f64_vec(), "{k}");
        }
        assert_eq!(ck.progress, progress());
        assert_eq!(ck.config_toml, "[train]\nsteps = 5\n");
        let mut opt2 = Adam::new(AdamConfig::default());
        opt2.load_state_dict(&ck.optimizer).unwrap();
        assert_eq!(opt2.step, opt.step);
        let (a, b) = (opt.state_dict(), opt2.state_dict());
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (k, t) in &a {
            assert_eq!(b[k].to_f64_vec(), t.to_f64_vec(), "{k}");
            assert_eq!(b[k].dtype(), t.dtype(), "{k}");
        }
        // The file is plain safetensors: other tools see the tensor names.
        let bytes = std::fs::read(&path).unwrap();
        let names = SafeTensors::deserialize(&bytes).unwrap().names().len();
        assert_eq!(names, 2 + 2 + a.len());
    }

    /// One "training step": gradients drawn from the run's generator, so the
    /// trajectory depends on weights, optimizer state and RNG alike.
    fn step(params: &mut Params, opt: &mut Adam, rng: &mut Rng) {
        let mut g = Gradients::new();
        for id in params.ids().collect::<Vec<_>>() {
            let shape = params.get(id).shape().clone();
            g.accumulate(id, Tensor::randn(shape, 1.0, DType::F32, rng))
                .unwrap();
        }
        opt.step(params, &g, 1e-2).unwrap();
    }

    #[test]
    fn resume_continues_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        let (mut params, buffers) = model(&mut Rng::new(1));
        let mut opt = Adam::new(AdamConfig::default());
        let mut rng = Rng::new(42);
        for _ in 0..2 {
            step(&mut params, &mut opt, &mut rng);
        }
        let progress = TrainProgress {
            step: 2,
            epoch: 0,
            position_in_epoch: 2,
            rng: rng.state(),
            best: None,
        };
        save(
            &path,
            &CheckpointRef {
                params: &params,
                optimizer: &opt.state_dict(),
                buffers: &buffers,
                progress,
                config_toml: "",
            },
        )
        .unwrap();
        for _ in 0..3 {
            step(&mut params, &mut opt, &mut rng);
        }

        let (mut resumed, mut resumed_buffers) = model(&mut Rng::new(7));
        let ck = load(&path, &mut resumed, &mut resumed_buffers).unwrap();
        let mut opt2 = Adam::new(AdamConfig::default());
        opt2.load_state_dict(&ck.optimizer).unwrap();
        let mut rng2 = Rng::from_state(ck.progress.rng);
        for _ in 0..3 {
            step(&mut resumed, &mut opt2, &mut rng2);
        }
        for id in params.ids() {
            let (a, b) = (
                params.get(id).data::<f32>().unwrap(),
                resumed.get(id).data::<f32>().unwrap(),
            );
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{}",
                params.name(id)
            );
        }
        assert_eq!(rng, rng2);
    }

    #[test]
    fn shape_mismatch_and_missing_tensor_name_file_and_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let mut rng = Rng::new(1);
        let (params, buffers) = model(&mut rng);
        let opt = Adam::new(AdamConfig::default());
        save_model(&path, &params, &opt, &buffers);

        let mut wider = Params::new();
        wider
            .add(
                "layer1.0.conv1.weight",
                Tensor::zeros([8, 3, 3, 2], DType::F32),
            )
            .unwrap();
        wider
            .add("fc.bias", Tensor::zeros([5], DType::F32))
            .unwrap();
        let mut b = buffers.clone();
        let e = load(&path, &mut wider, &mut b).unwrap_err().to_string();
        assert!(e.contains("ck.safetensors"), "{e}");
        assert!(
            e.contains(
                "'layer1.0.conv1.weight' has shape [4, 3, 3, 2] but the model expects [8, 3, 3, 2]"
            ),
            "{e}"
        );
        // Nothing was half-restored.
        assert!(wider
            .get(wider.ids().next().unwrap())
            .to_f64_vec()
            .iter()
            .all(|&v| v == 0.0));

        let mut extra = params.clone();
        extra
            .add("head.au.weight", Tensor::zeros([12, 5], DType::F32))
            .unwrap();
        let e = load(&path, &mut extra, &mut b).unwrap_err().to_string();
        assert!(e.contains("missing tensor 'head.au.weight'"), "{e}");

        let mut fewer = Params::new();
        fewer
            .add("fc.bias", Tensor::zeros([5], DType::F32))
            .unwrap();
        let e = load(&path, &mut fewer, &mut b).unwrap_err().to_string();
        assert!(
            e.contains("'layer1.0.conv1.weight' is not a parameter"),
            "{e}"
        );

        let mut f64_params = Params::new();
        f64_params
            .add(
                "layer1.0.conv1.weight",
                Tensor::zeros([4, 3, 3, 2], DType::F64),
            )
            .unwrap();
        f64_params
            .add("fc.bias", Tensor::zeros([5], DType::F64))
            .unwrap();
        let e = load(&path, &mut f64_params, &mut b)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is f32 but the model expects f64"), "{e}");

        let mut more_buffers = buffers.clone();
        more_buffers.insert("bn2.running_mean".into(), Tensor::zeros([4], DType::F32));
        let e = load(&path, &mut params.clone(), &mut more_buffers)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing tensor 'buffers.bn2.running_mean'"),
            "{e}"
        );
    }

    #[test]
    fn optimizer_state_for_reordered_parameters_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let mut rng = Rng::new(1);
        let (mut params, buffers) = model(&mut rng);
        let opt = trained_optimizer(&mut params, &mut rng);
        save_model(&path, &params, &opt, &buffers);
        // Same names and shapes, registered in the other order: parameter 0's
        // Adam moments would land on the wrong tensor.
        let mut swapped = Params::new();
        swapped
            .add("fc.bias", Tensor::zeros([5], DType::F32))
            .unwrap();
        swapped
            .add(
                "layer1.0.conv1.weight",
                Tensor::zeros([4, 3, 3, 2], DType::F32),
            )
            .unwrap();
        let e = load(&path, &mut swapped, &mut buffers.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("optimizer tensor 'optim.m.0'"), "{e}");
    }

    #[test]
    fn truncated_or_garbage_file_is_a_clean_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("torn.safetensors");
        let mut rng = Rng::new(1);
        let (params, buffers) = model(&mut rng);
        save_model(&path, &params, &Adam::new(AdamConfig::default()), &buffers);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [bytes.len() - 7, bytes.len() / 2, 12, 3, 0] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let e = load(&path, &mut params.clone(), &mut buffers.clone())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("checkpoint") && e.contains("torn.safetensors"),
                "cut {cut}: {e}"
            );
        }
        let e = load(
            dir.path().join("absent.safetensors"),
            &mut params.clone(),
            &mut buffers.clone(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("absent.safetensors"), "{e}");
    }

    #[test]
    fn failed_write_leaves_previous_checkpoint_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        let mut rng = Rng::new(1);
        let (mut params, buffers) = model(&mut rng);
        let opt = trained_optimizer(&mut params, &mut rng);
        save_model(&path, &params, &opt, &buffers);
        let good = std::fs::read(&path).unwrap();

        // A directory where the temporary file must go makes the write fail
        // (root ignores read-only permissions, so that is no reliable test).
        std::fs::create_dir(tmp_path(&path)).unwrap();
        let (other, _) = model(&mut Rng::new(5));
        let r = save(
            &path,
            &CheckpointRef {
                params: &other,
                optimizer: &BTreeMap::new(),
                buffers: &buffers,
                progress: progress(),
                config_toml: "",
            },
        );
        let e = r.unwrap_err().to_string();
        assert!(e.contains("last.safetensors.tmp"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), good);
        std::fs::remove_dir(tmp_path(&path)).unwrap();

        // A crash mid-write leaves a torn .tmp behind: the target still loads,
        // and the next save replaces the stale temporary.
        std::fs::write(tmp_path(&path), &good[..good.len() / 3]).unwrap();
        load(&path, &mut params.clone(), &mut buffers.clone()).unwrap();
        save_model(&path, &params, &opt, &buffers);
        assert!(!tmp_path(&path).exists());
        load(&path, &mut params.clone(), &mut buffers.clone()).unwrap();

        // Missing target directory: an error naming the path, nothing created.
        let nowhere = dir.path().join("no/such/dir/last.safetensors");
        let e = save(
            &nowhere,
            &CheckpointRef {
                params: &params,
                optimizer: &BTreeMap::new(),
                buffers: &buffers,
                progress: progress(),
                config_toml: "",
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no/such/dir"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap().len(), good.len());
    }

    #[test]
    fn a_non_finite_state_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        let mut rng = Rng::new(1);
        let (mut params, mut buffers) = model(&mut rng);
        let opt = trained_optimizer(&mut params, &mut rng);
        save_model(&path, &params, &opt, &buffers);
        let good = std::fs::read(&path).unwrap();
        let try_save = |params: &Params, buffers: &BTreeMap<String, Tensor>| {
            save(
                &path,
                &CheckpointRef {
                    params,
                    optimizer: &opt.state_dict(),
                    buffers,
                    progress: progress(),
                    config_toml: "",
                },
            )
            .unwrap_err()
            .to_string()
        };

        let mut bad = params.clone();
        let id = bad.ids().nth(1).unwrap();
        bad.set(
            id,
            Tensor::from_vec(vec![0.0f32, 1.0, f32::NAN, 2.0, 3.0], [5]).unwrap(),
        )
        .unwrap();
        let e = try_save(&bad, &buffers);
        assert!(e.contains("non-finite") && e.contains("'fc.bias'"), "{e}");
        buffers.insert(
            "bn1.running_var".into(),
            Tensor::from_vec(vec![1.0f32, f32::INFINITY, 1.0, 1.0], [4]).unwrap(),
        );
        let e = try_save(&params, &buffers);
        assert!(e.contains("'buffers.bn1.running_var'"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), good, "the finite one stays");
    }
}
