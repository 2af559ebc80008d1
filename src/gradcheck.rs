//! f64 central-difference gradient checking for any op or composite of ops.
//!
//! The function under test maps inputs to an output `y`; the checker
//! backpropagates a fixed random seed `r` (so every output element matters)
//! and compares each input's analytic gradient of `L = sum(r * y)` with
//! `(L(x + h e_i) - L(x - h e_i)) / 2h`.

use crate::{DType, Error, ParamId, Params, Result, Rng, Tape, Tensor, Var};

/// Step of the central differences: with f64, truncation error (~h^2) and
/// round-off (~1e-16 |L| / h) are both far below 1e-6 at this size.
pub const STEP: f64 = 1e-5;

/// Gradients smaller than this are compared absolutely: the relative error
/// of a near-zero derivative measures only round-off.
pub const REL_FLOOR: f64 = 1e-2;

/// The worst disagreement found.
#[derive(Debug, Clone)]
pub struct GradCheckReport {
    pub max_rel_error: f64,
    pub input: usize,
    pub element: usize,
    pub analytic: f64,
    pub numeric: f64,
}

fn rel_error(a: f64, n: f64) -> f64 {
    (a - n).abs() / a.abs().max(n.abs()).max(REL_FLOOR)
}

fn weighted_sum(y: &Tensor, r: &[f64]) -> f64 {
    y.to_f64_vec().iter().zip(r).map(|(a, b)| a * b).sum()
}

/// Checks `f`'s gradients with respect to every input; `Err` if the maximal
/// relative error exceeds `tol` (the message names input, element and both values).
/// Inputs must be f64. `f` must be deterministic (seed any randomness inside it).
pub fn check_gradients<F>(inputs: &[Tensor], tol: f64, f: F) -> Result<GradCheckReport>
where
    F: Fn(&Tape, &[Var]) -> Result<Var>,
{
    let mut params = Params::new();
    for (i, x) in inputs.iter().enumerate() {
        params.add(format!("input{i}"), x.clone())?;
    }
    check_param_gradients(params, tol, |tape, p| {
        let vars: Vec<Var> = p.ids().map(|id| tape.param(p, id)).collect();
        f(tape, &vars)
    })
}

/// [`check_gradients`] for a module: the gradients with respect to every
/// tensor of `params` (all f64) of `f`, which reads them with
/// `tape.param(params, id)` (an `nn` layer's forward through a
/// [`Ctx`](crate::nn::Ctx) does); "input i" in a failure is the i-th
/// registered tensor.
pub fn check_param_gradients<F>(mut params: Params, tol: f64, f: F) -> Result<GradCheckReport>
where
    F: Fn(&Tape, &Params) -> Result<Var>,
{
    let ids: Vec<ParamId> = params.ids().collect();
    for &id in &ids {
        let found = params.get(id).dtype();
        if found != DType::F64 {
            return Err(Error::DType {
                op: "gradcheck",
                expected: "f64".into(),
                found: found.to_string(),
            });
        }
    }

    let tape = Tape::new();
    let y = f(&tape, &params)?;
    let mut rng = Rng::new(0x5eed);
    let r = Tensor::randn(y.shape().clone(), 1.0, DType::F64, &mut rng);
    let rv = r.to_f64_vec();
    let grads = tape.backward_with_seed(&y, r)?;

    let eval = |p: &Params| -> Result<f64> {
        let t = Tape::no_grad();
        Ok(weighted_sum(f(&t, p)?.value(), &rv))
    };

    let mut worst = GradCheckReport {
        max_rel_error: 0.0,
        input: 0,
        element: 0,
        analytic: 0.0,
        numeric: 0.0,
    };
    for (i, &id) in ids.iter().enumerate() {
        let analytic = grads
            .get(id)
            .map(Tensor::to_f64_vec)
            .unwrap_or_else(|| vec![0.0; params.get(id).numel()]);
        for (e, &a) in analytic.iter().enumerate() {
            let x0 = params.get(id).data::<f64>()?[e];
            params.get_mut(id).data_mut::<f64>()?[e] = x0 + STEP;
            let lp = eval(&params)?;
            params.get_mut(id).data_mut::<f64>()?[e] = x0 - STEP;
            let lm = eval(&params)?;
            params.get_mut(id).data_mut::<f64>()?[e] = x0;
            let n = (lp - lm) / (2.0 * STEP);
            let err = rel_error(a, n);
            // A NaN error is kept as the worst, and fails the check below.
            if err.is_nan() || err > worst.max_rel_error {
                worst = GradCheckReport {
                    max_rel_error: err,
                    input: i,
                    element: e,
                    analytic: a,
                    numeric: n,
                };
            }
        }
    }
    if worst.max_rel_error.is_nan() || worst.max_rel_error > tol {
        return Err(Error::Tape(format!(
            "gradient check failed: input {} element {}: analytic {:.9e} vs numeric {:.9e} (relative error {:.3e} > {:.1e})",
            worst.input, worst.element, worst.analytic, worst.numeric, worst.max_rel_error, tol
        )));
    }
    Ok(worst)
}
