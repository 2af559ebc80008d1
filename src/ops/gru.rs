//! A GRU layer over a whole sequence [N, T, F] -> [N, T, H], with a padding
//! mask, as one op: forward saves the gates, backward runs through time.
//!
//! Gates as PyTorch's `nn.GRU` orders and defines them (r, z, n):
//! `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x + b_iz + W_hz h + b_hz)`,
//! `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`.

mod cuda;

use super::recurrent::{self, Dims, RnnWeights, SequenceGrads};
use crate::backend::cpu::Float;
use crate::{with_dtype, Result, Tape, Tensor, Var};

const OP: &str = "gru";

/// Runs the layer from `h0` (zeros if `None`) over x [N, T, F]; returns the
/// outputs [N, T, H] (zero at padded frames) and the final state [N, H]. The
/// initial and final states are plain tensors: a state carried across chunks
/// is detached, so no gradient flows into `h0`.
pub fn gru(
    tape: &Tape,
    x: &Var,
    w: RnnWeights,
    h0: Option<&Tensor>,
    mask: Option<&[bool]>,
) -> Result<(Var, Tensor)> {
    let d = recurrent::check(OP, x, &w, 3, &[h0], mask)?;
    recurrent::count_products(tape, x, &w, &d);
    let mask = recurrent::mask_or_all(mask, &d);
    let (xt, wih, whh) = (
        x.value().clone(),
        w.w_ih.value().clone(),
        w.w_hh.value().clone(),
    );
    if let Some(dev) = recurrent::device(OP, x, &w, &[h0])? {
        let ws = [&wih, &whh, w.b_ih.value(), w.b_hh.value()];
        let (out, h_last, saved) = cuda::forward(&dev, &xt, ws, h0, &mask, &d)?;
        let y = tape.record(OP, &w.inputs(x), out, move |g, needs| {
            cuda::backward(&dev, g, &xt, [&wih, &whh], &saved, &d, needs)
        })?;
        return Ok((y, h_last));
    }
    let (out, h_last, saved) = with_dtype!(xt.dtype(), T => {
        let h = recurrent::state_or_zeros::<T>(h0, &d)?;
        forward::<T>(&xt, &wih, &whh, [w.b_ih.value(), w.b_hh.value()], h, &mask, &d)?
    });
    let y = tape.record(OP, &w.inputs(x), out, move |g, needs| {
        with_dtype!(g.dtype(), T => backward::<T>(g, &xt, &wih, &whh, &saved, &mask, &d, needs))
    })?;
    Ok((y, h_last))
}

/// What backward reads, all step-major: gates r, z, n [T, N, 3H], the
/// hidden projection of the n gate `W_hn h + b_hn` [T, N, H] and the state
/// each step read [T, N, H].
struct Saved {
    gates: Tensor,
    ghn: Tensor,
    hprev: Tensor,
}

fn forward<T: Float>(
    x: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    [b_ih, b_hh]: [&Tensor; 2],
    mut h: Vec<T>,
    mask: &[bool],
    d: &Dims,
) -> Result<(Tensor, Tensor, Saved)> {
    let (nn, t_len, hd) = (d.n, d.t, d.h);
    let whh = w_hh.data::<T>()?;
    let bhh = b_hh.data::<T>()?;
    let gx = recurrent::input_projection(x.data::<T>()?, w_ih.data::<T>()?, b_ih.data::<T>()?, d);
    let mut out = vec![T::ZERO; nn * t_len * hd];
    let mut gates = vec![T::ZERO; t_len * nn * 3 * hd];
    let mut ghn = vec![T::ZERO; t_len * nn * hd];
    let mut hprev = Vec::with_capacity(t_len * nn * hd);
    for t in 0..t_len {
        hprev.extend_from_slice(&h);
        let gh = recurrent::hidden_projection(&h, whh, bhh, d);
        for n in (0..nn).filter(|&n| mask[n * t_len + t]) {
            let row = n * t_len + t;
            let (gxr, ghr) = (&gx[row * 3 * hd..], &gh[n * 3 * hd..]);
            let sg = &mut gates[(t * nn + n) * 3 * hd..(t * nn + n + 1) * 3 * hd];
            for j in 0..hd {
                let r = (gxr[j] + ghr[j]).sigmoid();
                let z = (gxr[hd + j] + ghr[hd + j]).sigmoid();
                let hn = ghr[2 * hd + j];
                let c = (gxr[2 * hd + j] + r * hn).tanh();
                let hj = &mut h[n * hd + j];
                *hj = (T::ONE - z) * c + z * *hj;
                out[row * hd + j] = *hj;
                (sg[j], sg[hd + j], sg[2 * hd + j]) = (r, z, c);
                ghn[(t * nn + n) * hd + j] = hn;
            }
        }
    }
    let saved = Saved {
        gates: Tensor::from_vec(gates, [t_len, nn, 3 * hd])?,
        ghn: Tensor::from_vec(ghn, [t_len, nn, hd])?,
        hprev: Tensor::from_vec(hprev, [t_len, nn, hd])?,
    };
    Ok((
        Tensor::from_vec(out, [nn, t_len, hd])?,
        Tensor::from_vec(h, [nn, hd])?,
        saved,
    ))
}

#[allow(clippy::too_many_arguments)]
fn backward<T: Float>(
    g: &Tensor,
    x: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    s: &Saved,
    mask: &[bool],
    d: &Dims,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (nn, t_len, hd) = (d.n, d.t, d.h);
    let (gout, gates, ghn, hprev) = (
        g.data::<T>()?,
        s.gates.data::<T>()?,
        s.ghn.data::<T>()?,
        s.hprev.data::<T>()?,
    );
    let whh = w_hh.data::<T>()?;
    let mut dgx = vec![T::ZERO; nn * t_len * 3 * hd];
    let mut dgh = vec![T::ZERO; t_len * nn * 3 * hd];
    let mut dh = vec![T::ZERO; nn * hd];
    for t in (0..t_len).rev() {
        // A padded frame passed the state through: its gradient passes back unchanged.
        let mut dh_prev = dh.clone();
        for n in (0..nn).filter(|&n| mask[n * t_len + t]) {
            let (row, sr) = (n * t_len + t, t * nn + n);
            let sg = &gates[sr * 3 * hd..(sr + 1) * 3 * hd];
            for j in 0..hd {
                let dht = dh[n * hd + j] + gout[row * hd + j];
                let (r, z, c) = (sg[j], sg[hd + j], sg[2 * hd + j]);
                let hp = hprev[sr * hd + j];
                dh_prev[n * hd + j] = dht * z;
                let dc = dht * (T::ONE - z) * (T::ONE - c * c);
                let dr = dc * ghn[sr * hd + j] * r * (T::ONE - r);
                let dz = dht * (hp - c) * z * (T::ONE - z);
                let gxr = &mut dgx[row * 3 * hd..];
                (gxr[j], gxr[hd + j], gxr[2 * hd + j]) = (dr, dz, dc);
                let ghr = &mut dgh[sr * 3 * hd..];
                (ghr[j], ghr[hd + j], ghr[2 * hd + j]) = (dr, dz, dc * r);
            }
        }
        recurrent::add_hidden_grad(&mut dh_prev, &dgh, t, whh, d);
        dh = dh_prev;
    }
    recurrent::finish_backward(
        SequenceGrads { dgx, dgh },
        x.data::<T>()?,
        w_ih.data::<T>()?,
        hprev,
        d,
        needs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::ops::recurrent::test_inputs;
    use crate::{DType, Rng};

    fn run(
        t: &Tape,
        v: &[Var],
        h0: Option<&Tensor>,
        mask: Option<&[bool]>,
    ) -> Result<(Var, Tensor)> {
        let w = [v[1].clone(), v[2].clone(), v[3].clone(), v[4].clone()];
        gru(t, &v[0], RnnWeights::from_vars(&w), h0, mask)
    }

    #[test]
    fn one_step_by_hand() {
        // r = z = σ(x + h), n = tanh(x + r·h) with x = 0.5, h = 0.2.
        let tape = Tape::no_grad();
        let (x, w) = test_inputs::unit(&tape, 3);
        let h0 = Tensor::full([1, 1], 0.2, DType::F64);
        let (y, h) = gru(&tape, &x, RnnWeights::from_vars(&w), Some(&h0), None).unwrap();
        let s = 1.0 / (1.0 + (-0.7f64).exp());
        let n = (0.5 + s * 0.2f64).tanh();
        let want = (1.0 - s) * n + s * 0.2;
        assert!((y.value().item().unwrap() - want).abs() < 1e-14);
        assert_eq!(h.item().unwrap(), y.value().item().unwrap());
    }

    #[test]
    fn gradcheck_odd_length_with_padding_and_initial_state() {
        let mut rng = Rng::new(31);
        let inputs = test_inputs::random(3, [3, 5, 4, 3], 0.5, &mut rng);
        let h0 = Tensor::randn([3, 3], 0.5, DType::F64, &mut rng);
        let mask = test_inputs::mask();
        check_gradients(&inputs, 1e-6, |tp, v| {
            Ok(run(tp, v, Some(&h0), Some(&mask))?.0)
        })
        .unwrap();
        check_gradients(&inputs, 1e-6, |tp, v| Ok(run(tp, v, None, None)?.0)).unwrap();
    }

    #[test]
    fn padded_frames_carry_the_state_and_output_zero() {
        let tape = Tape::no_grad();
        let v: Vec<Var> = test_inputs::random(3, [1, 4, 2, 3], 1.0, &mut Rng::new(3))
            .into_iter()
            .map(|t| tape.constant(t))
            .collect();
        let (y, h) = run(&tape, &v, None, Some(&[true, true, false, false])).unwrap();
        let y = y.value().to_f64_vec();
        assert!(y[6..].iter().all(|&a| a == 0.0));
        assert_eq!(h.to_f64_vec(), y[3..6]);
    }
}
