//! Learning proof: a small tanh MLP trained with the tape and Adam fits a
//! non-linear function far better than the best possible linear model.

use mtaffect::optim::{Adam, AdamConfig, Optimizer};
use mtaffect::{ops, DType, Params, Rng, Tape, Tensor};

fn target(x1: f64, x2: f64) -> f64 {
    (1.5 * x1).sin() * x2.cos()
}

/// Mean squared error of the least-squares fit y ≈ a x1 + b x2 + c
/// (normal equations, solved by Cramer's rule).
fn best_linear_mse(xs: &[[f64; 2]], ys: &[f64]) -> f64 {
    let mut ata = [[0.0f64; 3]; 3];
    let mut aty = [0.0f64; 3];
    for (x, &y) in xs.iter().zip(ys) {
        let r = [x[0], x[1], 1.0];
        for i in 0..3 {
            aty[i] += r[i] * y;
            for j in 0..3 {
                ata[i][j] += r[i] * r[j];
            }
        }
    }
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(ata);
    let coef: Vec<f64> = (0..3)
        .map(|k| {
            let mut m = ata;
            for i in 0..3 {
                m[i][k] = aty[i];
            }
            det(m) / d
        })
        .collect();
    xs.iter()
        .zip(ys)
        .map(|(x, y)| (coef[0] * x[0] + coef[1] * x[1] + coef[2] - y).powi(2))
        .sum::<f64>()
        / ys.len() as f64
}

#[test]
fn mlp_learns_a_nonlinear_regression_beyond_any_linear_fit() {
    let mut rng = Rng::new(42);
    let n = 256;
    let xs: Vec<[f64; 2]> = (0..n)
        .map(|_| [rng.uniform(-2.0, 2.0), rng.uniform(-2.0, 2.0)])
        .collect();
    let ys: Vec<f64> = xs.iter().map(|x| target(x[0], x[1])).collect();
    let linear_mse = best_linear_mse(&xs, &ys);

    let x = Tensor::from_f64s(&xs.concat(), [n, 2], DType::F32).unwrap();
    let y = Tensor::from_f64s(&ys, [n, 1], DType::F32).unwrap();
    let mut params = Params::new();
    let mut layer = |name: &str, i: usize, o: usize, rng: &mut Rng| {
        let w = params
            .add(
                format!("{name}.weight"),
                Tensor::randn([o, i], (1.0 / i as f64).sqrt(), DType::F32, rng),
            )
            .unwrap();
        let b = params
            .add(format!("{name}.bias"), Tensor::zeros([o], DType::F32))
            .unwrap();
        (w, b)
    };
    let l1 = layer("l1", 2, 32, &mut rng);
    let l2 = layer("l2", 32, 32, &mut rng);
    let l3 = layer("l3", 32, 1, &mut rng);
    let mut opt = Adam::new(AdamConfig::default());

    let mut mse = f64::INFINITY;
    let mut first = None;
    for _ in 0..600 {
        let tape = Tape::new();
        let p = |id| tape.param(&params, id);
        let h = ops::tanh(
            &tape,
            &ops::linear(&tape, &tape.constant(x.clone()), &p(l1.0), Some(&p(l1.1))).unwrap(),
        )
        .unwrap();
        let h = ops::tanh(
            &tape,
            &ops::linear(&tape, &h, &p(l2.0), Some(&p(l2.1))).unwrap(),
        )
        .unwrap();
        let out = ops::linear(&tape, &h, &p(l3.0), Some(&p(l3.1))).unwrap();
        let d = ops::sub(&tape, &out, &tape.constant(y.clone())).unwrap();
        let loss = ops::mean(&tape, &ops::mul(&tape, &d, &d).unwrap(), &[], false).unwrap();
        mse = loss.value().item().unwrap();
        first.get_or_insert(mse);
        let grads = tape.backward(&loss).unwrap();
        opt.step(&mut params, &grads, 1e-2).unwrap();
    }
    println!(
        "initial mse {:.4}, final mse {mse:.5}, best linear mse {linear_mse:.4}",
        first.unwrap()
    );
    assert!(
        linear_mse > 0.1,
        "the target must be far from linear ({linear_mse})"
    );
    assert!(
        mse < 0.05 * linear_mse,
        "MLP mse {mse} vs best linear {linear_mse}"
    );
}
