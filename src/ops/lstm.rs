//! An LSTM layer over a whole sequence [N, T, F] -> [N, T, H], with a padding
//! mask and an initial (h, c) state, as one op: forward saves the activated
//! gates and cell states, backward runs through time.
//!
//! Gates as PyTorch's `nn.LSTM` orders them (i, f, g, o):
//! `i, f, o = σ(W_i· x + b_i· + W_h· h + b_h·)`, `g = tanh(..)`,
//! `c' = f ⊙ c + i ⊙ g`, `h' = o ⊙ tanh(c')`.

mod cuda;

use super::recurrent::{self, Dims, RnnWeights, SequenceGrads};
use crate::backend::cpu::Float;
use crate::{with_dtype, Result, Tape, Tensor, Var};

const OP: &str = "lstm";

/// The (h, c) state between chunks of one video: plain tensors [N, H], so a
/// state carried into the next chunk is detached from this chunk's graph.
#[derive(Clone, Debug)]
pub struct LstmState {
    pub h: Tensor,
    pub c: Tensor,
}

/// Runs the layer from `state` (zeros if `None`) over x [N, T, F]; returns
/// the outputs [N, T, H] (zero at padded frames) and the final state.
pub fn lstm(
    tape: &Tape,
    x: &Var,
    w: RnnWeights,
    state: Option<&LstmState>,
    mask: Option<&[bool]>,
) -> Result<(Var, LstmState)> {
    let states = [state.map(|s| &s.h), state.map(|s| &s.c)];
    let d = recurrent::check(OP, x, &w, 4, &states, mask)?;
    recurrent::count_products(tape, x, &w, &d);
    let mask = recurrent::mask_or_all(mask, &d);
    let (xt, wih, whh) = (
        x.value().clone(),
        w.w_ih.value().clone(),
        w.w_hh.value().clone(),
    );
    if let Some(dev) = recurrent::device(OP, x, &w, &states)? {
        let ws = [&wih, &whh, w.b_ih.value(), w.b_hh.value()];
        let (out, last, saved) = cuda::forward(&dev, &xt, ws, states, &mask, &d)?;
        let y = tape.record(OP, &w.inputs(x), out, move |g, needs| {
            cuda::backward(&dev, g, &xt, [&wih, &whh], &saved, &d, needs)
        })?;
        return Ok((y, last));
    }
    let (out, last, saved) = with_dtype!(xt.dtype(), T => {
        let h = recurrent::state_or_zeros::<T>(states[0], &d)?;
        let c = recurrent::state_or_zeros::<T>(states[1], &d)?;
        forward::<T>(&xt, &wih, &whh, [w.b_ih.value(), w.b_hh.value()], [h, c], &mask, &d)?
    });
    let y = tape.record(OP, &w.inputs(x), out, move |g, needs| {
        with_dtype!(g.dtype(), T => backward::<T>(g, &xt, &wih, &whh, &saved, &mask, &d, needs))
    })?;
    Ok((y, last))
}

/// What backward reads, step-major: activated gates i, f, g, o [T, N, 4H],
/// the cell state each step read and tanh of the one it wrote [T, N, H] each,
/// and the hidden state each step read [T, N, H].
struct Saved {
    gates: Tensor,
    cprev: Tensor,
    tanh_c: Tensor,
    hprev: Tensor,
}

fn forward<T: Float>(
    x: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
    [b_ih, b_hh]: [&Tensor; 2],
    [mut h, mut c]: [Vec<T>; 2],
    mask: &[bool],
    d: &Dims,
) -> Result<(Tensor, LstmState, Saved)> {
    let (nn, t_len, hd) = (d.n, d.t, d.h);
    let whh = w_hh.data::<T>()?;
    let bhh = b_hh.data::<T>()?;
    let gx = recurrent::input_projection(x.data::<T>()?, w_ih.data::<T>()?, b_ih.data::<T>()?, d);
    let mut out = vec![T::ZERO; nn * t_len * hd];
    let mut gates = vec![T::ZERO; t_len * nn * 4 * hd];
    let mut tanh_c = vec![T::ZERO; t_len * nn * hd];
    let (mut hprev, mut cprev) = (
        Vec::with_capacity(h.len() * t_len),
        Vec::with_capacity(h.len() * t_len),
    );
    for t in 0..t_len {
        hprev.extend_from_slice(&h);
        cprev.extend_from_slice(&c);
        let gh = recurrent::hidden_projection(&h, whh, bhh, d);
        for n in (0..nn).filter(|&n| mask[n * t_len + t]) {
            let (row, sr) = (n * t_len + t, t * nn + n);
            let pre = |k: usize| gx[row * 4 * hd + k] + gh[n * 4 * hd + k];
            let sg = &mut gates[sr * 4 * hd..(sr + 1) * 4 * hd];
            for j in 0..hd {
                let i = pre(j).sigmoid();
                let f = pre(hd + j).sigmoid();
                let g = pre(2 * hd + j).tanh();
                let o = pre(3 * hd + j).sigmoid();
                let cj = &mut c[n * hd + j];
                *cj = f * *cj + i * g;
                let tc = cj.tanh();
                h[n * hd + j] = o * tc;
                out[row * hd + j] = o * tc;
                tanh_c[sr * hd + j] = tc;
                (sg[j], sg[hd + j], sg[2 * hd + j], sg[3 * hd + j]) = (i, f, g, o);
            }
        }
    }
    let step_major = |v: Vec<T>, w: usize| Tensor::from_vec(v, [t_len, nn, w]);
    let saved = Saved {
        gates: step_major(gates, 4 * hd)?,
        cprev: step_major(cprev, hd)?,
        tanh_c: step_major(tanh_c, hd)?,
        hprev: step_major(hprev, hd)?,
    };
    let last = LstmState {
        h: Tensor::from_vec(h, [nn, hd])?,
        c: Tensor::from_vec(c, [nn, hd])?,
    };
    Ok((Tensor::from_vec(out, [nn, t_len, hd])?, last, saved))
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
    let gout = g.data::<T>()?;
    let (gates, cprev, tanh_c) = (
        s.gates.data::<T>()?,
        s.cprev.data::<T>()?,
        s.tanh_c.data::<T>()?,
    );
    let whh = w_hh.data::<T>()?;
    let mut dgx = vec![T::ZERO; nn * t_len * 4 * hd];
    let mut dgh = vec![T::ZERO; t_len * nn * 4 * hd];
    let (mut dh, mut dc) = (vec![T::ZERO; nn * hd], vec![T::ZERO; nn * hd]);
    for t in (0..t_len).rev() {
        // Padded frames pass both gradients back unchanged.
        let mut dh_prev = dh.clone();
        for n in (0..nn).filter(|&n| mask[n * t_len + t]) {
            let (row, sr) = (n * t_len + t, t * nn + n);
            let sg = &gates[sr * 4 * hd..(sr + 1) * 4 * hd];
            for j in 0..hd {
                let (i, f, gg, o) = (sg[j], sg[hd + j], sg[2 * hd + j], sg[3 * hd + j]);
                let tc = tanh_c[sr * hd + j];
                let dht = dh[n * hd + j] + gout[row * hd + j];
                let dct = dc[n * hd + j] + dht * o * (T::ONE - tc * tc);
                dc[n * hd + j] = dct * f;
                dh_prev[n * hd + j] = T::ZERO;
                let dpre = [
                    dct * gg * i * (T::ONE - i),
                    dct * cprev[sr * hd + j] * f * (T::ONE - f),
                    dct * i * (T::ONE - gg * gg),
                    dht * tc * o * (T::ONE - o),
                ];
                for (k, v) in dpre.into_iter().enumerate() {
                    dgx[row * 4 * hd + k * hd + j] = v;
                    dgh[sr * 4 * hd + k * hd + j] = v;
                }
            }
        }
        recurrent::add_hidden_grad(&mut dh_prev, &dgh, t, whh, d);
        dh = dh_prev;
    }
    recurrent::finish_backward(
        SequenceGrads { dgx, dgh },
        x.data::<T>()?,
        w_ih.data::<T>()?,
        s.hprev.data::<T>()?,
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
        s: Option<&LstmState>,
        mask: Option<&[bool]>,
    ) -> Result<(Var, LstmState)> {
        let w = [v[1].clone(), v[2].clone(), v[3].clone(), v[4].clone()];
        lstm(t, &v[0], RnnWeights::from_vars(&w), s, mask)
    }

    #[test]
    fn one_step_by_hand() {
        // State (0.2, 0.3), x = 0.5: every gate sees 0.7.
        let tape = Tape::no_grad();
        let (x, w) = test_inputs::unit(&tape, 4);
        let s = LstmState {
            h: Tensor::full([1, 1], 0.2, DType::F64),
            c: Tensor::full([1, 1], 0.3, DType::F64),
        };
        let (y, last) = lstm(&tape, &x, RnnWeights::from_vars(&w), Some(&s), None).unwrap();
        let sg = 1.0 / (1.0 + (-0.7f64).exp());
        let c1 = sg * 0.3 + sg * 0.7f64.tanh();
        assert!((last.c.item().unwrap() - c1).abs() < 1e-14);
        assert!((y.value().item().unwrap() - sg * c1.tanh()).abs() < 1e-14);
    }

    #[test]
    fn gradcheck_odd_length_with_padding_and_initial_state() {
        let mut rng = Rng::new(41);
        let x = test_inputs::random(4, [3, 5, 3, 2], 0.6, &mut rng);
        let s = LstmState {
            h: Tensor::randn([3, 2], 0.5, DType::F64, &mut rng),
            c: Tensor::randn([3, 2], 0.5, DType::F64, &mut rng),
        };
        let mask = test_inputs::mask();
        check_gradients(&x, 1e-6, |tp, v| Ok(run(tp, v, Some(&s), Some(&mask))?.0)).unwrap();
        check_gradients(&x, 1e-6, |tp, v| Ok(run(tp, v, None, None)?.0)).unwrap();
    }

    #[test]
    fn chunks_with_carried_state_equal_one_pass() {
        // Statefulness: two chunks with the state carried give the outputs of one long pass.
        let mut rng = Rng::new(5);
        let tape = Tape::no_grad();
        let v: Vec<Var> = test_inputs::random(4, [2, 6, 3, 4], 0.6, &mut rng)
            .into_iter()
            .map(|t| tape.constant(t))
            .collect();
        let (whole, end) = run(&tape, &v, None, None).unwrap();
        let mut parts = Vec::new();
        let mut state = None;
        for k in 0..2 {
            let mut vk = v.clone();
            vk[0] = tape.constant(v[0].value().narrow(1, 3 * k, 3).unwrap());
            let (y, s) = run(&tape, &vk, state.as_ref(), None).unwrap();
            parts.push(y.into_value());
            state = Some(s);
        }
        let joined = Tensor::concat(&[&parts[0], &parts[1]], 1).unwrap();
        let diff = whole
            .value()
            .to_f64_vec()
            .iter()
            .zip(joined.to_f64_vec())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-14, "{diff}");
        assert_eq!(state.unwrap().c.to_f64_vec(), end.c.to_f64_vec());
    }
}
