//! CUDA parity of the temporal ops and models: GRU (two layers, dropout
//! between them, padding), LSTM (initial state, padding), multi-head
//! attention with a key-padding mask (a fully padded sample, several query
//! and key tiles with tails), a whole Transformer encoder layer and small temporal
//! networks of every encoder kind, forward and every gradient, against the
//! CPU reference in f64 (tests/common: NaN-poisoned GPU buffers, one
//! `parity` line per test). Every test is `#[ignore = "needs a CUDA GPU"]`:
//! `--include-ignored` runs them (scripts/gpu_checks.sh).
//!
//! Tolerances (`|gpu - ref| <= atol + rtol·|ref|`): the recurrent ops carry
//! f32 rounding through every step of backward through time, and the
//! compositions stack several ops, so they are looser than single kernels.

mod common;

use common::{check, gpu, randn, Report, Tol};
use mtaffect::model::temporal::{
    Carry, EncoderKind, TemporalNet, TemporalNetConfig, TransformerLayer,
};
use mtaffect::nn::{Buffers, Ctx as NnCtx, Scope};
use mtaffect::ops::{self, LstmState, RnnWeights};
use mtaffect::{DType, Params, Result, Rng, Tensor, Var};

const RNN_TOL: Tol = Tol {
    atol: 2e-4,
    rtol: 2e-4,
};
const ATTENTION_TOL: Tol = Tol {
    atol: 1e-4,
    rtol: 1e-4,
};
const MODEL_TOL: Tol = Tol {
    atol: 5e-4,
    rtol: 5e-4,
};

/// Sequence n's frames from `start[n]` on are padding (padded ends; sample
/// 0 keeps every frame).
fn padded_ends(t: usize, start: &[usize]) -> Vec<bool> {
    start
        .iter()
        .flat_map(|&s| (0..t).map(move |i| i < s))
        .collect()
}

/// x [n, t, f] then `layers` layers of (w_ih, w_hh, b_ih, b_hh) with `g` gates, N(0, 0.4²).
fn rnn_inputs(g: usize, [n, t, f, h]: [usize; 4], layers: usize, rng: &mut Rng) -> Vec<Tensor> {
    let mut v = vec![randn(&[n, t, f], rng)];
    for l in 0..layers {
        let fin = if l == 0 { f } else { h };
        for d in [vec![g * h, fin], vec![g * h, h], vec![g * h], vec![g * h]] {
            v.push(Tensor::randn(d, 0.4, DType::F32, rng));
        }
    }
    v
}

fn weights(v: &[Var], layer: usize) -> [Var; 4] {
    let b = 1 + 4 * layer;
    [
        v[b].clone(),
        v[b + 1].clone(),
        v[b + 2].clone(),
        v[b + 3].clone(),
    ]
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gru_two_layers_with_dropout_and_padding() {
    let dev = gpu();
    let mut rep = Report::default();
    let mut rng = Rng::new(81);
    let (n, t, f, h) = (3, 7, 5, 9);
    let inputs = rnn_inputs(3, [n, t, f, h], 2, &mut rng);
    let mask = padded_ends(t, &[7, 4, 1]);
    let h0 = Tensor::randn([n, h], 0.5, DType::F32, &mut rng);
    check(&dev, &mut rep, "gru x2", &inputs, RNN_TOL, |tape, v, cx| {
        // The same seeded dropout masks on both sides.
        let mut drop_rng = Rng::new(3);
        let (y, _) = ops::gru(
            tape,
            &v[0],
            RnnWeights::from_vars(&weights(v, 0)),
            None,
            Some(&mask),
        )?;
        let y = ops::dropout(tape, &y, 0.3, true, &mut drop_rng)?;
        let w1 = weights(v, 1);
        let (y, last) = ops::gru(
            tape,
            &y,
            RnnWeights::from_vars(&w1),
            Some(&cx.put(&h0)),
            Some(&mask),
        )?;
        // The final state is a plain tensor: compare it through a constant.
        let last = tape.constant(last.reshape([n, 1, h])?);
        ops::concat(tape, &[&y, &last], 1)
    });
    rep.print("gru (2 layers, dropout, padding, initial state)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn lstm_with_initial_state_and_padding() {
    let dev = gpu();
    let mut rep = Report::default();
    let mut rng = Rng::new(82);
    let (n, t, f, h) = (3, 6, 5, 11);
    let inputs = rnn_inputs(4, [n, t, f, h], 1, &mut rng);
    let mask = padded_ends(t, &[6, 3, 5]);
    let s = [(); 2].map(|_| Tensor::randn([n, h], 0.5, DType::F32, &mut rng));
    check(&dev, &mut rep, "lstm", &inputs, RNN_TOL, |tape, v, cx| {
        let state = LstmState {
            h: cx.put(&s[0]),
            c: cx.put(&s[1]),
        };
        let w = weights(v, 0);
        let (y, last) = ops::lstm(
            tape,
            &v[0],
            RnnWeights::from_vars(&w),
            Some(&state),
            Some(&mask),
        )?;
        let end = |x: &Tensor| -> Result<Var> { Ok(tape.constant(x.reshape([n, 1, h])?)) };
        ops::concat(tape, &[&y, &end(&last.h)?, &end(&last.c)?], 1)
    });
    rep.print("lstm (initial state, padding, final state)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn attention_with_key_padding_mask() {
    let dev = gpu();
    let mut rep = Report::default();
    let mut rng = Rng::new(83);
    // Self-attention sizes, then more keys than queries and than a 32-row
    // tile, then several query and key tiles with tails and a head of 48
    // (four threads per row, 16 padded dims).
    for (n, t, s, heads, d) in [(3, 7, 7, 2, 5), (2, 4, 37, 3, 8), (2, 33, 70, 2, 48)] {
        let inputs = vec![
            randn(&[n, t, heads, d], &mut rng),
            randn(&[n, s, heads, d], &mut rng),
            randn(&[n, s, heads, d], &mut rng),
        ];
        // Sample 0 partly padded, the last one fully padded (zeros, no NaN).
        let mut mask = padded_ends(s, &vec![s; n]);
        (0..s).filter(|j| j % 3 == 1).for_each(|j| mask[j] = false);
        mask[(n - 1) * s..].iter_mut().for_each(|m| *m = false);
        check(
            &dev,
            &mut rep,
            "attention",
            &inputs,
            ATTENTION_TOL,
            |tape, v, _| ops::attention(tape, &v[0], &v[1], &v[2], Some(&mask)),
        );
    }
    rep.print("attention (key padding, fully padded sample, several tiles)");
}

/// A parameter registry holding `v`'s values under `names`, so the model's
/// ParamIds index them.
fn registry(names: &[String], v: &[Var]) -> Result<Params> {
    let mut q = Params::new();
    for (name, x) in names.iter().zip(v) {
        q.add(name.clone(), x.value().clone())?;
    }
    Ok(q)
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn transformer_encoder_layer_end_to_end() {
    let dev = gpu();
    let mut rep = Report::default();
    let (n, t, e) = (3, 6, 8);
    let mut p = Params::new();
    let x_id = p.add("x", Tensor::zeros([n, t, e], DType::F32)).unwrap();
    let layer = TransformerLayer::new(
        &mut p,
        &Scope::root().pp("layer"),
        e,
        2,
        7,
        0.2,
        &mut Rng::new(4),
    )
    .unwrap();
    let names: Vec<String> = p.ids().map(|id| p.name(id).to_string()).collect();
    let mut inputs: Vec<Tensor> = p.ids().map(|id| p.get(id).clone()).collect();
    inputs[x_id.index()] = randn(&[n, t, e], &mut Rng::new(5));
    let mask = padded_ends(t, &[6, 4, 5]);
    check(
        &dev,
        &mut rep,
        "transformer layer",
        &inputs,
        MODEL_TOL,
        |tape, v, _| {
            let q = registry(&names, v)?;
            let (mut buffers, mut rng) = (Buffers::new(), Rng::new(9));
            let mut cx = NnCtx {
                tape,
                params: &q,
                buffers: &mut buffers,
                training: true,
                rng: &mut rng,
                frozen: false,
            };
            let x = v[x_id.index()].clone();
            layer.forward(&mut cx, &x, &mask)
        },
    );
    rep.print("transformer encoder layer (attention, feed-forward, post-norm, dropout)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn temporal_networks_of_every_encoder_kind() {
    let dev = gpu();
    let mut rep = Report::default();
    let (n, t, f) = (2, 5, 7);
    let x = randn(&[n, t, f], &mut Rng::new(7));
    let mask = padded_ends(t, &[5, 3]);
    for kind in [
        EncoderKind::Gru,
        EncoderKind::Lstm,
        EncoderKind::Transformer,
    ] {
        let cfg = TemporalNetConfig {
            encoder: kind,
            d_model: 6,
            shared_layers: 2,
            heads: 2,
            d_ff: 5,
            dropout: 0.2,
            head_hidden: 4,
            n_aus: 3,
            n_expr: 4,
            ..TemporalNetConfig::default()
        };
        let mut p = Params::new();
        let net = TemporalNet::new(&cfg, f, &mut p, &mut Rng::new(6)).unwrap();
        let names: Vec<String> = p.ids().map(|id| p.name(id).to_string()).collect();
        let inputs: Vec<Tensor> = p.ids().map(|id| p.get(id).clone()).collect();
        let what = format!("temporal net {kind:?}");
        check(&dev, &mut rep, &what, &inputs, MODEL_TOL, |tape, v, cx| {
            let q = registry(&names, v)?;
            let (mut buffers, mut rng) = (Buffers::new(), Rng::new(17));
            let mut ncx = NnCtx {
                tape,
                params: &q,
                buffers: &mut buffers,
                training: true,
                rng: &mut rng,
                frozen: false,
            };
            let xv = tape.constant(cx.put(&x));
            let o = net.forward(&mut ncx, &xv, &mask, &mut Carry::default(), None)?;
            ops::concat(tape, &[&o.va, &o.au, &o.expr], -1)
        });
    }
    rep.print("temporal networks (GRU, LSTM, Transformer encoders with heads)");
}

/// The padding helper itself: a wrong mask would make every case above weaker.
#[test]
fn padded_ends_marks_the_tail_of_each_sequence() {
    assert_eq!(
        padded_ends(3, &[3, 1]),
        [true, true, true, true, false, false]
    );
}
