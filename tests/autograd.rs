//! The tape's contract: gradients keyed by parameter, accumulation, eval mode,
//! freeing of saved tensors, rules that add onto an earlier gradient, and
//! clear errors on misuse.

use mtaffect::gradcheck::check_gradients;
use mtaffect::{ops, DType, Params, Rng, Tape, Tensor};
use std::cell::Cell;
use std::rc::Rc;

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64s(v, s, DType::F64).unwrap()
}

#[test]
fn gradients_are_keyed_by_parameter_and_skip_activations() {
    let mut params = Params::new();
    let w = params.add("w", t(&[2.0, -1.0], &[2])).unwrap();
    let unused = params.add("unused", t(&[1.0], &[1])).unwrap();
    let tape = Tape::new();
    let x = tape.constant(t(&[3.0, 4.0], &[2]));
    let wv = tape.param(&params, w);
    let y = ops::sum(&tape, &ops::mul(&tape, &x, &wv).unwrap(), &[], false).unwrap();
    let grads = tape.backward(&y).unwrap();
    assert_eq!(grads.get(w).unwrap().to_f64_vec(), [3.0, 4.0]);
    assert!(grads.get(unused).is_none());
    assert_eq!(grads.len(), 1);
}

#[test]
fn a_parameter_used_twice_gets_the_sum_of_both_paths() {
    let mut params = Params::new();
    let w = params.add("w", t(&[3.0], &[1])).unwrap();
    let tape = Tape::new();
    let a = tape.param(&params, w);
    let b = tape.param(&params, w);
    // d(w*w)/dw = 2w = 6, reached through two leaves of the same parameter.
    let y = ops::sum(&tape, &ops::mul(&tape, &a, &b).unwrap(), &[], false).unwrap();
    assert_eq!(
        tape.backward(&y).unwrap().get(w).unwrap().to_f64_vec(),
        [6.0]
    );
}

#[test]
fn accumulating_micro_batches_equals_the_full_batch() {
    let mut rng = Rng::new(1);
    let mut params = Params::new();
    let w = params
        .add("w", Tensor::randn([4, 3], 1.0, DType::F64, &mut rng))
        .unwrap();
    let b = params
        .add("b", Tensor::randn([4], 1.0, DType::F64, &mut rng))
        .unwrap();
    let x = Tensor::randn([6, 3], 1.0, DType::F64, &mut rng);
    let grads_for = |xs: &Tensor| {
        let tape = Tape::new();
        let h = ops::linear(
            &tape,
            &tape.constant(xs.clone()),
            &tape.param(&params, w),
            Some(&tape.param(&params, b)),
        )
        .unwrap();
        let loss = ops::sum(&tape, &ops::tanh(&tape, &h).unwrap(), &[], false).unwrap();
        tape.backward(&loss).unwrap()
    };
    let full = grads_for(&x);
    let mut acc = grads_for(&x.narrow(0, 0, 2).unwrap());
    acc.merge(grads_for(&x.narrow(0, 2, 4).unwrap())).unwrap();
    for id in [w, b] {
        let (f, a) = (
            full.get(id).unwrap().to_f64_vec(),
            acc.get(id).unwrap().to_f64_vec(),
        );
        for (p, q) in f.iter().zip(&a) {
            assert!((p - q).abs() < 1e-12, "{p} vs {q}");
        }
    }
}

#[test]
fn no_grad_records_nothing_and_refuses_backward() {
    let mut params = Params::new();
    let w = params.add("w", t(&[1.0, 2.0], &[2])).unwrap();
    let tape = Tape::no_grad();
    let wv = tape.param(&params, w);
    let y = ops::sum(&tape, &ops::relu(&tape, &wv).unwrap(), &[], false).unwrap();
    assert_eq!(y.value().item().unwrap(), 3.0);
    assert!(tape.is_empty());
    assert!(!y.requires_grad());
    assert!(tape
        .backward(&y)
        .unwrap_err()
        .to_string()
        .contains("no_grad"));
}

#[test]
fn backward_twice_and_non_scalar_loss_are_clear_errors() {
    let mut params = Params::new();
    let w = params.add("w", t(&[1.0, 2.0], &[2])).unwrap();
    let tape = Tape::new();
    let y = ops::exp(&tape, &tape.param(&params, w)).unwrap();
    let e = tape.backward(&y).unwrap_err().to_string();
    assert!(
        e.contains("scalar") && e.contains("[2]") && e.contains("backward_with_seed"),
        "{e}"
    );
    let s = ops::sum(&tape, &y, &[], false).unwrap();
    tape.backward(&s).unwrap();
    let e = tape.backward(&s).unwrap_err().to_string();
    assert!(e.contains("already"), "{e}");
}

#[test]
fn a_loss_without_parameters_or_from_another_tape_is_an_error() {
    let tape = Tape::new();
    let c = tape.constant(t(&[1.0], &[1]));
    assert!(tape
        .backward(&c)
        .unwrap_err()
        .to_string()
        .contains("does not depend"));

    let mut params = Params::new();
    let w = params.add("w", t(&[1.0], &[1])).unwrap();
    let other = Tape::new();
    let wv = other.param(&params, w);
    assert!(ops::relu(&tape, &wv)
        .unwrap_err()
        .to_string()
        .contains("different tape"));
}

/// Sets a flag when dropped: stands for a tensor saved by a backward rule.
struct DropFlag(Rc<Cell<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn saved_tensors_are_freed_once_backward_used_them() {
    let mut params = Params::new();
    let w = params.add("w", t(&[2.0], &[1])).unwrap();
    let tape = Tape::new();
    let wv = tape.param(&params, w);
    let freed = Rc::new(Cell::new(false));
    let guard = DropFlag(freed.clone());
    let y = tape
        .record("identity", &[&wv], wv.value().clone(), move |g, _| {
            let _keep = &guard;
            Ok(vec![Some(g.clone())])
        })
        .unwrap();
    assert!(!freed.get());
    tape.backward(&y).unwrap();
    assert!(
        freed.get(),
        "the backward rule (and what it saved) must be dropped after use"
    );

    // Ops on constants record nothing and drop their saved state at once.
    let freed2 = Rc::new(Cell::new(false));
    let guard2 = DropFlag(freed2.clone());
    let c = tape.constant(t(&[1.0], &[1]));
    tape.record("identity", &[&c], c.value().clone(), move |g, _| {
        let _keep = &guard2;
        Ok(vec![Some(g.clone())])
    })
    .unwrap();
    assert!(freed2.get());
}

#[test]
fn gradcheck_catches_a_planted_wrong_backward_rule() {
    // Sigmoid whose backward forgets the (1 - y) factor: plausible-looking, wrong.
    let wrong_sigmoid = |tape: &Tape, x: &mtaffect::Var| {
        let y = ops::sigmoid(&Tape::no_grad(), x).unwrap().into_value();
        let saved = y.clone();
        tape.record("bad_sigmoid", &[x], y, move |g, _| {
            let v: Vec<f64> = g
                .to_f64_vec()
                .iter()
                .zip(saved.to_f64_vec())
                .map(|(a, s)| a * s)
                .collect();
            Ok(vec![Some(Tensor::from_f64s(
                &v,
                g.shape().clone(),
                DType::F64,
            )?)])
        })
    };
    let x = Tensor::randn([5, 3], 1.0, DType::F64, &mut Rng::new(4));
    let err = check_gradients(&[x.clone()], 1e-6, |t, v| wrong_sigmoid(t, &v[0])).unwrap_err();
    assert!(err.to_string().contains("gradient check failed"), "{err}");
    // And the real rule passes on the same input.
    check_gradients(&[x], 1e-6, |t, v| ops::sigmoid(t, &v[0])).unwrap();
}

#[test]
fn gradcheck_of_a_composite_mlp_block() {
    let mut rng = Rng::new(9);
    let mut r = |s: &[usize]| Tensor::randn(s, 0.7, DType::F64, &mut rng);
    let inputs = [r(&[4, 5]), r(&[6, 5]), r(&[6]), r(&[3, 6]), r(&[3])];
    check_gradients(&inputs, 1e-6, |t, v| {
        let h = ops::tanh(t, &ops::linear(t, &v[0], &v[1], Some(&v[2]))?)?;
        let z = ops::linear(t, &h, &v[3], Some(&v[4]))?;
        let p = ops::log_softmax(t, &z)?;
        ops::mean(t, &ops::mul(t, &p, &ops::sigmoid(t, &z)?)?, &[0], false)
    })
    .unwrap();
}

/// A parameter w = 2 and a fresh tape.
fn one_param() -> (Params, mtaffect::ParamId, Tape) {
    let mut params = Params::new();
    let w = params.add("w", t(&[2.0], &[1])).unwrap();
    (params, w, Tape::new())
}

/// 5 w on `tape`.
fn five_times(tape: &Tape, params: &Params, w: mtaffect::ParamId) -> mtaffect::Var {
    ops::mul(
        tape,
        &tape.param(params, w),
        &tape.constant(t(&[5.0], &[1])),
    )
    .unwrap()
}

/// `y = x * 3` through a hand-made op recorded with `record_accumulating`,
/// whose rule adds its gradient onto x's earlier one when `take` says so.
fn triple(
    tape: &Tape,
    x: &mtaffect::Var,
    take: bool,
    seen: Rc<Cell<Option<f64>>>,
) -> mtaffect::Var {
    let y = ops::mul(tape, x, &tape.constant(t(&[3.0], &[1]))).unwrap();
    tape.record_accumulating("triple", &[x], y.value().clone(), move |g, _, pending| {
        let mine = g.to_f64_vec().iter().map(|v| 3.0 * v).collect::<Vec<_>>();
        let earlier = if take { pending.take(0) } else { None };
        seen.set(earlier.as_ref().map(|e| e.to_f64_vec()[0]));
        let sum: Vec<f64> = match &earlier {
            Some(e) => e
                .to_f64_vec()
                .iter()
                .zip(&mine)
                .map(|(a, b)| a + b)
                .collect(),
            None => mine,
        };
        Ok(vec![Some(t(&sum, &[1]))])
    })
    .unwrap()
}

#[test]
fn a_rule_may_add_onto_the_gradient_its_input_already_has() {
    for take in [false, true] {
        let (params, w, tape) = one_param();
        // h = 5w is consumed twice: by a sum recorded later (gradient 1,
        // reaching h first in backward) and by triple (gradient 3).
        let h = five_times(&tape, &params, w);
        let seen = Rc::new(Cell::new(None));
        let y = triple(&tape, &h, take, seen.clone());
        let total = ops::add(&tape, &y, &h).unwrap();
        let loss = ops::sum(&tape, &total, &[], false).unwrap();
        let grads = tape.backward(&loss).unwrap();
        // dloss/dh = 3 + 1 either way: taken and summed by the rule, or
        // left to the tape to add.
        assert_eq!(grads.get(w).unwrap().to_f64_vec(), [20.0], "take {take}");
        assert_eq!(seen.get(), take.then_some(1.0), "take {take}");
    }
}

#[test]
fn a_rule_that_takes_an_earlier_gradient_must_return_the_sum() {
    let (params, w, tape) = one_param();
    let h = five_times(&tape, &params, w);
    let y = tape
        .record_accumulating("drops", &[&h], h.value().clone(), |_, _, pending| {
            pending.take(0);
            Ok(vec![None])
        })
        .unwrap();
    let loss = ops::sum(&tape, &ops::add(&tape, &y, &h).unwrap(), &[], false).unwrap();
    let e = tape.backward(&loss).unwrap_err().to_string();
    assert!(e.contains("drops") && e.contains("no sum"), "{e}");
}
