//! What the CUDA parity suites share: opening the GPU (or failing), the
//! tolerance check and its one-line report, and `check` (`check_backbone`),
//! which runs a closure (a backbone) on the CPU reference (f64) and the GPU
//! (f32) and compares the output and every input (parameter) gradient.

// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use mtaffect::backend::cuda::CudaDevice;
use mtaffect::model::Backbone;
use mtaffect::nn::{self, Buffers};
use mtaffect::{DType, Device, Params, Result, Rng, Tape, Tensor, Var};
use std::sync::Arc;

/// GPU 0 with every new buffer poisoned. The tests that call it are
/// `#[ignore = "needs a CUDA GPU"]`, so `cargo test` reports them as ignored
/// where there is none; run with `--include-ignored` (scripts/gpu_checks.sh
/// does on the GPU host), a missing GPU is a failure, not a pass.
pub fn gpu() -> Arc<CudaDevice> {
    let d = CudaDevice::get(0).unwrap_or_else(|e| panic!("this test needs a CUDA GPU: {e}"));
    d.set_poison(true);
    d
}

/// Fails unless GPU 0 can be opened (the ignored suites that train whole
/// models and need no output poisoning; see `gpu`).
pub fn require_gpu() {
    if let Err(e) = Device::parse("cuda") {
        panic!("this test needs a CUDA GPU: {e}");
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

/// Where a closure under test runs: the CPU reference (f64) or the GPU (f32).
pub struct Ctx {
    pub device: Device,
}

impl Ctx {
    /// A constant input (targets, masks) on this side's device and dtype.
    pub fn put(&self, t: &Tensor) -> Tensor {
        match &self.device {
            Device::Cpu => t.to_dtype(DType::F64),
            d => t.to_device(d).expect("host-to-device copy"),
        }
    }
}

/// Worst disagreement over all checks of one test, printed at the end.
#[derive(Default)]
pub struct Report {
    pub checks: usize,
    pub worst_abs: f64,
    /// max over values of |gpu - ref| / bound; must stay <= 1.
    pub worst_ratio: f64,
}

impl Report {
    /// Checks `gpu` (which must still be on the GPU) against `reference`
    /// element by element: `|gpu - ref| <= atol + rtol |ref|`.
    pub fn compare(&mut self, what: &str, gpu: &Tensor, reference: &Tensor, tol: Tol) {
        assert_eq!(gpu.shape(), reference.shape(), "{what}: shapes differ");
        assert!(gpu.is_cuda(), "{what}: the result did not stay on the GPU");
        let g = gpu.try_to_f64_vec().expect("device-to-host copy");
        let r = reference.to_f64_vec();
        let what = format!("{what} ({})", gpu.shape());
        self.compare_values(&what, &g, &r, |i| tol.atol + tol.rtol * r[i].abs());
    }

    /// Asserts `|gpu[i] - reference[i]| <= bound(i)` for every element (for
    /// bounds that depend on more than the reference value).
    pub fn compare_values(
        &mut self,
        what: &str,
        gpu: &[f64],
        reference: &[f64],
        bound: impl Fn(usize) -> f64,
    ) {
        assert_eq!(gpu.len(), reference.len(), "{what}: lengths differ");
        for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
            let (err, b) = ((g - r).abs(), bound(i));
            assert!(
                err <= b,
                "{what}: element {i}: gpu {g} vs reference {r} (|err| {err:e} > {b:e})"
            );
            self.checks += 1;
            self.worst_abs = self.worst_abs.max(err);
            self.worst_ratio = self.worst_ratio.max(err / b);
        }
    }

    /// The `parity <op>: N checks, worst |err| E, worst err/tol R` line.
    pub fn print(&self, op: &str) {
        assert!(self.checks > 0, "{op}: nothing was checked");
        println!(
            "parity {op}: {} checks, worst |err| {:.3e}, worst err/tol {:.3}",
            self.checks, self.worst_abs, self.worst_ratio
        );
    }
}

/// Runs `f` on the CPU reference (f64) and on the GPU (f32) with the same
/// inputs (rounded to f32 first) and the same random output seed, and checks
/// the output and the gradient of every input.
pub fn check<F>(
    dev: &Arc<CudaDevice>,
    report: &mut Report,
    what: &str,
    inputs: &[Tensor],
    tol: Tol,
    f: F,
) where
    F: Fn(&Tape, &[Var], &Ctx) -> Result<Var>,
{
    let inputs: Vec<Tensor> = inputs.iter().map(|t| t.to_dtype(DType::F32)).collect();
    let run = |device: Device| -> (Tensor, Vec<Tensor>) {
        let ctx = Ctx { device };
        let mut params = Params::new();
        let ids: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| params.add(format!("in{i}"), ctx.put(t)).unwrap())
            .collect();
        let tape = Tape::new();
        let vars: Vec<Var> = ids.iter().map(|&id| tape.param(&params, id)).collect();
        let y = f(&tape, &vars, &ctx).unwrap_or_else(|e| panic!("{what} on {}: {e}", ctx.device));
        let seed = Tensor::randn(y.shape().clone(), 1.0, DType::F32, &mut Rng::new(0x5eed));
        let grads = tape
            .backward_with_seed(&y, ctx.put(&seed))
            .unwrap_or_else(|e| panic!("{what} backward on {}: {e}", ctx.device));
        let g = ids
            .iter()
            .map(|&id| grads.get(id).expect("every input gets a gradient").clone())
            .collect();
        (y.into_value(), g)
    };
    let (y_ref, g_ref) = run(Device::Cpu);
    let (y_gpu, g_gpu) = run(Device::Cuda(dev.clone()));
    report.compare(&format!("{what} forward"), &y_gpu, &y_ref, tol);
    for (i, (g, r)) in g_gpu.iter().zip(&g_ref).enumerate() {
        report.compare(&format!("{what} grad of input {i}"), g, r, tol);
    }
}

/// Runs backbone `net` in training mode (dropout and drop path seeded
/// alike) on the CPU reference (f64) and on the GPU (f32), its parameters
/// `p`, buffers `b` and images `x` copied to each, with the same random
/// output seed, and checks the output and the gradient of every parameter.
#[allow(clippy::too_many_arguments)]
pub fn check_backbone(
    dev: &Arc<CudaDevice>,
    report: &mut Report,
    what: &str,
    net: &dyn Backbone,
    p: &Params,
    b: &Buffers,
    x: &Tensor,
    tol: Tol,
) {
    let seed = |dims: &[usize]| randn(dims, &mut Rng::new(0x5eed));
    let run = |device: Device| -> (Tensor, Vec<Tensor>) {
        let c = Ctx { device };
        let on = |reg: &Params| {
            let mut out = Params::new();
            for id in reg.ids() {
                out.add(reg.name(id), c.put(reg.get(id))).unwrap();
            }
            out
        };
        let (params, mut buffers) = (on(p), on(b));
        let tape = Tape::new();
        let images = tape.constant(c.put(x));
        let mut drop_rng = Rng::new(7);
        let mut cx = nn::Ctx {
            tape: &tape,
            params: &params,
            buffers: &mut buffers,
            training: true,
            rng: &mut drop_rng,
            frozen: false,
        };
        let y = net
            .forward(&mut cx, &images)
            .unwrap_or_else(|e| panic!("{what} on {}: {e}", c.device));
        let grads = tape.backward_with_seed(&y, c.put(&seed(y.dims()))).unwrap();
        let g = p
            .ids()
            .map(|id| {
                grads
                    .get(id)
                    .expect("every parameter gets a gradient")
                    .clone()
            })
            .collect();
        (y.into_value(), g)
    };
    let (y_ref, g_ref) = run(Device::Cpu);
    let (y_gpu, g_gpu) = run(Device::Cuda(dev.clone()));
    assert_eq!(y_ref.dtype(), DType::F64);
    report.compare(&format!("{what} forward"), &y_gpu, &y_ref, tol);
    for ((id, g), r) in p.ids().zip(&g_gpu).zip(&g_ref) {
        report.compare(&format!("{what} grad of {}", p.name(id)), g, r, tol);
    }
}

pub fn randn(shape: &[usize], rng: &mut Rng) -> Tensor {
    Tensor::randn(shape, 1.0, DType::F32, rng)
}
