//! CUDA parity: every op with a CUDA kernel, forward and backward, on fresh
//! random inputs (odd sizes, broadcasting, masks with invalid labels),
//! against the CPU reference computed in f64 from the same f32 values.
//!
//! Every buffer the GPU hands out is poisoned with NaN first, so an output
//! element a kernel forgets to write fails the check. A GPU value passes
//! when `|gpu - ref| <= atol + rtol * |ref|`, with per-op tolerances below.
//! Each test prints one line: op, number of checked values, worst error.
//!
//! Each test that needs a GPU is `#[ignore = "needs a CUDA GPU"]`: `cargo test`
//! counts it as ignored; `--include-ignored` runs it (scripts/gpu_checks.sh).

mod common;

use common::{check, gpu, randn, Ctx, Report, Tol};
use mtaffect::backend::cuda::CudaDevice;
use mtaffect::{DType, Device, Params, Result, Rng, Tape, Tensor, Var};

#[test]
fn no_driver_is_a_clean_error_not_a_panic() {
    if mtaffect::backend::cuda::driver_available() {
        println!("cuda_parity: skipped no_driver_is_a_clean_error_not_a_panic, this machine has a CUDA driver");
        return;
    }
    for e in [
        CudaDevice::get(0).unwrap_err(),
        Device::parse("cuda:1").unwrap_err(),
        Device::parse("cuda").unwrap_err(),
    ] {
        assert!(
            e.to_string()
                .contains("no CUDA driver found; use --device cpu"),
            "{e}"
        );
    }
    let e = Device::parse("gpu0").unwrap_err().to_string();
    assert!(e.contains("cuda:N") && e.contains("gpu0"), "{e}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn host_access_to_a_device_tensor_names_the_backend() {
    let dev = gpu();
    let t = Tensor::ones([3, 5], DType::F32)
        .to_device(&Device::Cuda(dev.clone()))
        .unwrap();
    let e = t.data::<f32>().unwrap_err().to_string();
    assert!(
        e.contains("data") && e.contains("cpu") && e.contains("cuda:0"),
        "{e}"
    );
    let host = Tensor::ones([3, 5], DType::F32);
    let tape = Tape::no_grad();
    let e = mtaffect::ops::add(&tape, &tape.constant(t.clone()), &tape.constant(host))
        .unwrap_err()
        .to_string();
    assert!(e.contains("add") && e.contains("device"), "{e}");
    assert_eq!(t.to_cpu().unwrap().to_f64_vec(), vec![1.0; 15]);
    let before = dev.pool_stats();
    drop(t);
    let again = Tensor::ones([3, 5], DType::F32)
        .to_device(&Device::Cuda(dev.clone()))
        .unwrap();
    let after = dev.pool_stats();
    assert!(
        after.reuses > before.reuses,
        "a freed buffer of the same class is reused"
    );
    drop(again);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn unary_ops() {
    let dev = gpu();
    use mtaffect::ops::{exp, gelu, gelu_tanh, leaky_relu, log, relu, scale, sigmoid, tanh};
    let tol = Tol {
        atol: 1e-5,
        rtol: 1e-5,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(1);
    for shape in [&[7][..], &[3, 5, 7, 9], &[1, 1001]] {
        let x = randn(shape, &mut rng);
        let pos = Tensor::uniform(shape, 0.1, 4.0, DType::F32, &mut rng);
        check(&dev, &mut rep, "scale", &[x.clone()], tol, |t, v, _| {
            scale(t, &v[0], -1.7)
        });
        check(&dev, &mut rep, "relu", &[x.clone()], tol, |t, v, _| {
            relu(t, &v[0])
        });
        check(
            &dev,
            &mut rep,
            "leaky_relu",
            &[x.clone()],
            tol,
            |t, v, _| leaky_relu(t, &v[0], 0.2),
        );
        check(&dev, &mut rep, "sigmoid", &[x.clone()], tol, |t, v, _| {
            sigmoid(t, &v[0])
        });
        check(&dev, &mut rep, "tanh", &[x.clone()], tol, |t, v, _| {
            tanh(t, &v[0])
        });
        check(&dev, &mut rep, "exp", &[x.clone()], tol, |t, v, _| {
            exp(t, &v[0])
        });
        check(&dev, &mut rep, "gelu", &[x.clone()], tol, |t, v, _| {
            gelu(t, &v[0])
        });
        check(&dev, &mut rep, "gelu_tanh", &[x.clone()], tol, |t, v, _| {
            gelu_tanh(t, &v[0])
        });
        check(&dev, &mut rep, "log", &[pos], tol, |t, v, _| log(t, &v[0]));
    }
    rep.print("unary (scale relu leaky_relu sigmoid tanh exp log gelu gelu_tanh)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn prelu_per_channel_and_shared() {
    let dev = gpu();
    let tol = Tol {
        atol: 1e-5,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(24);
    // y and dx are exact; rtol 1e-4 covers the slope sums in f32 partials.
    // Odd channel counts (scalar lanes), multiples of 4 (float4 lanes), a
    // vector input, and enough rows for several block-rows of slope partials.
    for shape in [
        &[3, 5, 7, 9][..],
        &[2, 17, 19, 12],
        &[5, 33],
        &[4, 56, 56, 64],
    ] {
        let x = randn(shape, &mut rng);
        let c = *shape.last().unwrap();
        for slopes in [c, 1] {
            let a = randn(&[slopes], &mut rng);
            check(&dev, &mut rep, "prelu", &[x.clone(), a], tol, |t, v, _| {
                mtaffect::ops::prelu(t, &v[0], &v[1])
            });
        }
    }
    rep.print("prelu (per-channel and shared slope)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn elementwise_with_broadcasting() {
    let dev = gpu();
    use mtaffect::ops::{add, div, mul, sub};
    let tol = Tol {
        atol: 1e-5,
        rtol: 1e-5,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(2);
    // Same shape, per-channel vector, per-sample factor, scalar, both sides broadcast.
    let cases: [(&[usize], &[usize]); 5] = [
        (&[3, 5, 7, 9], &[3, 5, 7, 9]),
        (&[3, 5, 7, 9], &[9]),
        (&[3, 5, 7, 9], &[3, 1, 1, 1]),
        (&[5, 3], &[]),
        (&[1, 7], &[5, 1]),
    ];
    for (sa, sb) in cases {
        let a = randn(sa, &mut rng);
        let b = Tensor::uniform(sb, 0.5, 2.0, DType::F32, &mut rng);
        for (name, f) in [
            ("add", add as fn(&Tape, &Var, &Var) -> Result<Var>),
            ("sub", sub),
            ("mul", mul),
            ("div", div),
        ] {
            check(
                &dev,
                &mut rep,
                name,
                &[a.clone(), b.clone()],
                tol,
                |t, v, _| f(t, &v[0], &v[1]),
            );
        }
    }
    rep.print("elementwise (add sub mul div, broadcasting)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn sum_and_mean_over_axes() {
    let dev = gpu();
    use mtaffect::ops::{mean, sum};
    // Sums of up to ~4k f32 terms of unit size.
    let tol = Tol {
        atol: 1e-4,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(3);
    let x = randn(&[5, 13, 11, 7], &mut rng);
    for axes in [&[][..], &[0], &[1, 2], &[0, 1, 2], &[-1], &[0, 3]] {
        for keep in [false, true] {
            check(&dev, &mut rep, "sum", &[x.clone()], tol, |t, v, _| {
                sum(t, &v[0], axes, keep)
            });
            check(&dev, &mut rep, "mean", &[x.clone()], tol, |t, v, _| {
                mean(t, &v[0], axes, keep)
            });
        }
    }
    // A long reduction that splits over many blocks (atomic partial sums):
    // sums of ~4000 unit terms reach ~60, so the absolute bound is looser.
    let long = randn(&[4001, 33], &mut rng);
    let loose = Tol {
        atol: 2e-3,
        rtol: 1e-4,
    };
    check(&dev, &mut rep, "sum", &[long], loose, |t, v, _| {
        sum(t, &v[0], &[0], false)
    });
    rep.print("reduce (sum mean)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn softmax_and_log_softmax() {
    let dev = gpu();
    use mtaffect::ops::{log_softmax, softmax};
    let tol = Tol {
        atol: 1e-5,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(4);
    // Few classes (expressions), more than a warp, and many rows.
    for shape in [&[9, 8][..], &[3, 5, 77], &[1000, 12], &[2, 1]] {
        let x = Tensor::randn(shape, 3.0, DType::F32, &mut rng);
        check(&dev, &mut rep, "softmax", &[x.clone()], tol, |t, v, _| {
            softmax(t, &v[0])
        });
        check(&dev, &mut rep, "log_softmax", &[x], tol, |t, v, _| {
            log_softmax(t, &v[0])
        });
    }
    rep.print("softmax, log_softmax");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn matmul_linear_bmm() {
    let dev = gpu();
    use mtaffect::ops::{bmm, linear, matmul, Transposes};
    // Dot products of up to ~300 unit terms accumulated in f32.
    let tol = Tol {
        atol: 1e-4,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(5);
    // Odd sizes straddle the 128x128x8 tiles; one exceeds a tile in every
    // dim; one tile with K = 1000 is split along K (atomic slices).
    for (m, k, n) in [
        (1, 1, 1),
        (7, 13, 5),
        (129, 9, 131),
        (200, 300, 150),
        (64, 1000, 96),
    ] {
        let a = randn(&[m, k], &mut rng);
        let b = randn(&[k, n], &mut rng);
        check(&dev, &mut rep, "matmul", &[a, b], tol, |t, v, _| {
            matmul(t, &v[0], &v[1])
        });
    }
    // The last, a SE block's squeeze layer at batch 64, splits K = 1024.
    for (x_shape, out_f) in [
        (&[4, 3, 17][..], 10),
        (&[130, 64][..], 129),
        (&[64, 1024][..], 64),
    ] {
        let in_f = *x_shape.last().unwrap();
        let x = randn(x_shape, &mut rng);
        let w = randn(&[out_f, in_f], &mut rng);
        let b = randn(&[out_f], &mut rng);
        check(
            &dev,
            &mut rep,
            "linear",
            &[x.clone(), w.clone(), b],
            tol,
            |t, v, _| linear(t, &v[0], &v[1], Some(&v[2])),
        );
        check(
            &dev,
            &mut rep,
            "linear (no bias)",
            &[x, w],
            tol,
            |t, v, _| linear(t, &v[0], &v[1], None),
        );
    }
    for shape in [[1, 1], [7, 13], [130, 3]] {
        let x = randn(&shape, &mut rng);
        check(&dev, &mut rep, "transpose", &[x], tol, |t, v, _| {
            mtaffect::ops::transpose(t, &v[0])
        });
    }
    let (batch, m, k, n) = (3, 17, 33, 9);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = randn(&if ta { [batch, k, m] } else { [batch, m, k] }, &mut rng);
        let b = randn(&if tb { [batch, n, k] } else { [batch, k, n] }, &mut rng);
        let tr = Transposes { a: ta, b: tb };
        check(&dev, &mut rep, "bmm", &[a, b], tol, |t, v, _| {
            bmm(t, &v[0], &v[1], tr)
        });
    }
    rep.print("matmul, linear, bmm (gemm_f32), transpose");
}

/// Targets in [-1, 1] with a fraction `invalid_frac` replaced by `marker`.
fn masked_targets(shape: &[usize], invalid_frac: f64, marker: f64, rng: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| {
            if rng.uniform(0.0, 1.0) < invalid_frac {
                marker
            } else {
                rng.uniform(-1.0, 1.0)
            }
        })
        .collect();
    Tensor::from_f64s(&v, shape, DType::F32).unwrap()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn ccc_loss_fused() {
    let dev = gpu();
    use mtaffect::ops::loss::{ccc_loss, INVALID_VA};
    // Statistics over up to 40k rows: f32 partial sums, combined in double.
    let tol = Tol {
        atol: 2e-5,
        rtol: 1e-3,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(6);
    for (n, frac) in [(1, 0.0), (3, 0.5), (37, 0.3), (5001, 0.2), (40_000, 0.1)] {
        let pred = Tensor::uniform([n, 2], -1.0, 1.0, DType::F32, &mut rng);
        let target = masked_targets(&[n, 2], frac, INVALID_VA, &mut rng);
        check(&dev, &mut rep, "ccc_loss", &[pred], tol, |t, v, ctx| {
            ccc_loss(t, &v[0], &ctx.put(&target), INVALID_VA)
        });
    }
    // One column entirely invalid, the other defined: loss and gradient only from the second.
    let pred = Tensor::uniform([50, 2], -1.0, 1.0, DType::F32, &mut rng);
    let mut tv = masked_targets(&[50, 2], 0.0, INVALID_VA, &mut rng).to_f64_vec();
    tv.iter_mut().step_by(2).for_each(|x| *x = INVALID_VA);
    let target = Tensor::from_f64s(&tv, [50, 2], DType::F32).unwrap();
    check(
        &dev,
        &mut rep,
        "ccc_loss (one column invalid)",
        &[pred],
        tol,
        |t, v, ctx| ccc_loss(t, &v[0], &ctx.put(&target), INVALID_VA),
    );
    // Three columns (scalar rows, not float4 units) and predictions far from
    // zero with a small spread: the shifted one-pass sums must stay accurate.
    let pred = Tensor::from_f64s(
        &Tensor::uniform([777, 3], -0.1, 0.1, DType::F32, &mut rng)
            .to_f64_vec()
            .iter()
            .map(|v| v + 5.0)
            .collect::<Vec<_>>(),
        [777, 3],
        DType::F32,
    )
    .unwrap();
    let target = masked_targets(&[777, 3], 0.2, INVALID_VA, &mut rng);
    check(
        &dev,
        &mut rep,
        "ccc_loss (3 columns, offset predictions)",
        &[pred],
        tol,
        |t, v, ctx| ccc_loss(t, &v[0], &ctx.put(&target), INVALID_VA),
    );
    rep.print("ccc_loss (fused, masked)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cross_entropy_with_ignore_weights_smoothing() {
    let dev = gpu();
    use mtaffect::ops::loss::{cross_entropy, CrossEntropyParams};
    let tol = Tol {
        atol: 1e-5,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(7);
    for (n, c) in [(1, 8), (37, 8), (3000, 8), (33, 40)] {
        let z = Tensor::randn([n, c], 2.0, DType::F32, &mut rng);
        // About a quarter of the rows carry the ignore label.
        let y: Vec<i64> = (0..n)
            .map(|_| {
                if rng.uniform(0.0, 1.0) < 0.25 {
                    -1
                } else {
                    (rng.uniform(0.0, c as f64) as i64).min(c as i64 - 1)
                }
            })
            .collect();
        let weights: Vec<f64> = (0..c).map(|_| rng.uniform(0.2, 2.0)).collect();
        for prm in [
            CrossEntropyParams::default(),
            CrossEntropyParams {
                class_weights: Some(weights.clone()),
                label_smoothing: 0.1,
                ..Default::default()
            },
        ] {
            check(
                &dev,
                &mut rep,
                "cross_entropy",
                &[z.clone()],
                tol,
                |t, v, _| cross_entropy(t, &v[0], &y, &prm),
            );
        }
    }
    // Every row ignored: loss 0, zero gradient.
    let z = Tensor::randn([5, 8], 1.0, DType::F32, &mut rng);
    check(
        &dev,
        &mut rep,
        "cross_entropy (all ignored)",
        &[z],
        tol,
        |t, v, _| cross_entropy(t, &v[0], &[-1; 5], &CrossEntropyParams::default()),
    );
    rep.print("cross_entropy (fused, ignore_index, weights, smoothing)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn bce_with_logits_masked() {
    let dev = gpu();
    use mtaffect::ops::loss::bce_with_logits;
    let tol = Tol {
        atol: 1e-6,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(8);
    for (n, frac) in [(1, 0.0), (37, 0.3), (4001, 0.1), (6, 1.0)] {
        let x = Tensor::randn([n, 12], 3.0, DType::F32, &mut rng);
        // 0/1 labels with a fraction masked by -1.
        let t: Vec<f64> = (0..n * 12)
            .map(|_| {
                if rng.uniform(0.0, 1.0) < frac {
                    -1.0
                } else {
                    (rng.uniform(0.0, 1.0) < 0.3) as u8 as f64
                }
            })
            .collect();
        let t = Tensor::from_f64s(&t, [n, 12], DType::F32).unwrap();
        let pw: Vec<f64> = (0..12).map(|_| rng.uniform(0.5, 4.0)).collect();
        check(
            &dev,
            &mut rep,
            "bce_with_logits",
            &[x.clone()],
            tol,
            |tp, v, ctx| bce_with_logits(tp, &v[0], &ctx.put(&t), None),
        );
        check(
            &dev,
            &mut rep,
            "bce_with_logits (pos_weight)",
            &[x],
            tol,
            |tp, v, ctx| bce_with_logits(tp, &v[0], &ctx.put(&t), Some(&pw)),
        );
    }
    rep.print("bce_with_logits (masked, pos_weight)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn fused_optimizers_and_grad_norm() {
    let dev = gpu();
    use mtaffect::optim::{clip_grad_norm, Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
    use mtaffect::Gradients;
    let tol = Tol {
        atol: 1e-5,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(9);
    // A small vector, an odd conv weight, and one tensor spanning two 64k chunks.
    let shapes: [&[usize]; 3] = [&[7], &[13, 3, 3, 5], &[70_001]];
    let init: Vec<Tensor> = shapes.iter().map(|s| randn(s, &mut rng)).collect();
    let steps: Vec<Vec<Tensor>> = (0..3)
        .map(|_| shapes.iter().map(|s| randn(s, &mut rng)).collect())
        .collect();
    let gpu = Device::Cuda(dev.clone());
    let build = |device: &Device| -> (Params, Vec<mtaffect::ParamId>) {
        let mut p = Params::new();
        let ids = init
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = match device {
                    Device::Cpu => t.to_dtype(DType::F64),
                    d => t.to_device(d).unwrap(),
                };
                p.add(format!("p{i}"), t).unwrap()
            })
            .collect();
        (p, ids)
    };
    let grads_on = |device: &Device, ids: &[mtaffect::ParamId], gs: &[Tensor]| -> Gradients {
        let mut out = Gradients::new();
        for (&id, g) in ids.iter().zip(gs) {
            let g = match device {
                Device::Cpu => g.to_dtype(DType::F64),
                d => g.to_device(d).unwrap(),
            };
            out.accumulate(id, g).unwrap();
        }
        out
    };
    type MakeOpt = Box<dyn Fn() -> Box<dyn Optimizer>>;
    let optimizers: Vec<(&str, MakeOpt)> = vec![
        (
            "adam (L2)",
            Box::new(|| {
                Box::new(Adam::new(AdamConfig {
                    weight_decay: 0.01,
                    ..Default::default()
                }))
            }),
        ),
        (
            "adamw",
            Box::new(|| {
                Box::new(Adam::new(AdamConfig {
                    weight_decay: 0.05,
                    decoupled: true,
                    ..Default::default()
                }))
            }),
        ),
        (
            "sgd (nesterov)",
            Box::new(|| {
                Box::new(Sgd::new(SgdConfig {
                    nesterov: true,
                    weight_decay: 1e-3,
                    ..Default::default()
                }))
            }),
        ),
        (
            "sgd (no momentum)",
            Box::new(|| {
                Box::new(Sgd::new(SgdConfig {
                    momentum: 0.0,
                    ..Default::default()
                }))
            }),
        ),
    ];
    for (name, make) in &optimizers {
        let (mut pc, ids) = build(&Device::Cpu);
        let (mut pg, _) = build(&gpu);
        let (mut oc, mut og) = (make(), make());
        for gs in &steps {
            oc.step(&mut pc, &grads_on(&Device::Cpu, &ids, gs), 1e-2)
                .unwrap();
            og.step(&mut pg, &grads_on(&gpu, &ids, gs), 1e-2).unwrap();
            for &id in &ids {
                rep.compare(&format!("{name} parameter"), pg.get(id), pc.get(id), tol);
            }
        }
    }
    // Global norm and clipping (the scale runs on the device).
    let (_, ids) = build(&Device::Cpu);
    let (mut gc, mut gg) = (
        grads_on(&Device::Cpu, &ids, &steps[0]),
        grads_on(&gpu, &ids, &steps[0]),
    );
    let (nc, ng) = (gc.global_norm(), gg.global_norm());
    assert!(
        (nc - ng).abs() <= 1e-5 * nc,
        "global norm: gpu {ng} vs reference {nc}"
    );
    rep.checks += 1;
    rep.worst_abs = rep.worst_abs.max((nc - ng).abs());
    clip_grad_norm(&mut gc, 1.0).unwrap();
    clip_grad_norm(&mut gg, 1.0).unwrap();
    for &id in &ids {
        rep.compare(
            "clipped gradient",
            gg.get(id).unwrap(),
            gc.get(id).unwrap(),
            tol,
        );
    }
    rep.print("adam, adamw, sgd (fused multi-tensor), global grad norm, clip");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn batch_norm_train_and_eval() {
    let dev = gpu();
    use mtaffect::ops::{batch_norm2d, batch_norm_relu, BatchNormParams};
    // Per-channel sums over up to ~60k rows.
    let tol = Tol {
        atol: 1e-4,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(10);
    let gpu = Device::Cuda(dev.clone());
    for shape in [
        &[2, 3, 5, 7][..],
        &[3, 17, 19, 40],
        &[33, 9],
        &[8, 32, 40, 3],
        &[4, 30, 30, 64],
    ] {
        let c = *shape.last().unwrap();
        // Offset data: a mean far from zero tests the variance's accuracy.
        let x = Tensor::randn(shape, 2.0, DType::F32, &mut rng);
        let x = Tensor::from_f64s(
            &x.to_f64_vec().iter().map(|v| v + 3.0).collect::<Vec<_>>(),
            shape,
            DType::F32,
        )
        .unwrap();
        let w = Tensor::uniform([c], 0.5, 1.5, DType::F32, &mut rng);
        let b = randn(&[c], &mut rng);
        let rm0 = randn(&[c], &mut rng);
        let rv0 = Tensor::uniform([c], 0.5, 2.0, DType::F32, &mut rng);
        let x_relu = away_from_relu_kink(&x, &w, &b, &rm0, &rv0);
        for prm in [BatchNormParams::default(), BatchNormParams::eval()] {
            check(
                &dev,
                &mut rep,
                "batch_norm2d",
                &[x.clone(), w.clone(), b.clone()],
                tol,
                |t, v, ctx| {
                    let (mut rm, mut rv) = (ctx.put(&rm0), ctx.put(&rv0));
                    batch_norm2d(t, &v[0], &v[1], &v[2], &mut rm, &mut rv, prm)
                },
            );
            check(
                &dev,
                &mut rep,
                "batch_norm_relu",
                &[x_relu.clone(), w.clone(), b.clone()],
                tol,
                |t, v, ctx| {
                    let (mut rm, mut rv) = (ctx.put(&rm0), ctx.put(&rv0));
                    batch_norm_relu(t, &v[0], &v[1], &v[2], &mut rm, &mut rv, prm)
                },
            );
        }
        // The running estimates after one training step.
        let run = |device: &Device| -> (Tensor, Tensor) {
            let put = |t: &Tensor| match device {
                Device::Cpu => t.to_dtype(DType::F64),
                d => t.to_device(d).unwrap(),
            };
            let tape = Tape::no_grad();
            let (mut rm, mut rv) = (put(&rm0), put(&rv0));
            let v = |t: &Tensor| tape.constant(put(t));
            batch_norm2d(
                &tape,
                &v(&x),
                &v(&w),
                &v(&b),
                &mut rm,
                &mut rv,
                BatchNormParams::default(),
            )
            .unwrap();
            (rm, rv)
        };
        let ((gm, gv), (cm, cv)) = (run(&gpu), run(&Device::Cpu));
        rep.compare("batch_norm2d running_mean", &gm, &cm, tol);
        rep.compare("batch_norm2d running_var", &gv, &cv, tol);
    }
    rep.print("batch_norm2d, batch_norm_relu (Welford stats, train and eval, running update)");
}

/// x nudged until no pre-activation of batch norm (training or eval) lies
/// within 1e-3 of zero: there the GPU's f32 and the reference's f64 may
/// disagree on the ReLU's side, and one flipped mask bit moves a whole
/// gradient value, which would make the parity check fail on luck alone.
fn away_from_relu_kink(x: &Tensor, w: &Tensor, b: &Tensor, rm: &Tensor, rv: &Tensor) -> Tensor {
    use mtaffect::ops::{batch_norm2d, BatchNormParams};
    let mut xv = x.to_dtype(DType::F32).to_f64_vec();
    for _ in 0..20 {
        let mut moved = false;
        for prm in [BatchNormParams::default(), BatchNormParams::eval()] {
            let tape = Tape::no_grad();
            let v = |t: &Tensor| tape.constant(t.to_dtype(DType::F64));
            let xt = Tensor::from_f64s(&xv, x.dims(), DType::F32).unwrap();
            let (mut m, mut s) = (rm.to_dtype(DType::F64), rv.to_dtype(DType::F64));
            let y = batch_norm2d(&tape, &v(&xt), &v(w), &v(b), &mut m, &mut s, prm).unwrap();
            for (xi, yi) in xv.iter_mut().zip(y.value().to_f64_vec()) {
                if yi.abs() < 1e-3 {
                    *xi += 0.05;
                    moved = true;
                }
            }
        }
        if !moved {
            return Tensor::from_f64s(&xv, x.dims(), DType::F32).unwrap();
        }
    }
    panic!("could not move the batch-norm inputs away from the ReLU kink");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn conv2d_and_conv_transpose2d() {
    let dev = gpu();
    use mtaffect::ops::{conv2d, conv_transpose2d, Conv2dParams};
    // Dot products over up to R*S*C = 3*3*96 = 864 terms (wgrad: ~2000 pixels).
    let tol = Tol {
        atol: 2e-4,
        rtol: 2e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(11);
    // (input NHWC, weight [K, R, S, C/g], params): odd sizes, stride 2,
    // asymmetric padding, dilation, groups, depthwise, 1x1, and tiles > 128.
    let cases: Vec<([usize; 4], [usize; 4], Conv2dParams)> = vec![
        ([2, 9, 11, 5], [7, 3, 3, 5], Conv2dParams::new().padding(1)),
        (
            [2, 9, 11, 6],
            [4, 3, 3, 6],
            Conv2dParams::new().stride(2).padding(1),
        ),
        (
            [1, 10, 9, 8],
            [6, 3, 2, 4],
            Conv2dParams::new().groups(2).padding_tblr(1, 0, 2, 1),
        ),
        (
            [2, 12, 12, 4],
            [5, 3, 3, 4],
            Conv2dParams::new().dilation(2).padding(2),
        ),
        (
            [2, 7, 7, 12],
            [12, 3, 3, 1],
            Conv2dParams::new().groups(12).padding(1),
        ),
        ([3, 6, 5, 40], [130, 1, 1, 40], Conv2dParams::new()),
        (
            [4, 15, 13, 3],
            [9, 5, 5, 3],
            Conv2dParams::new().stride_hw(2, 3).padding(2),
        ),
        // More than 64 channels on both sides: the 128x128 fprop and wgrad
        // tiles, and the stride-1 dgrad (an fprop over flipped weights) on
        // 128x128 tiles; every other stride-1 case above takes the 64-wide
        // tiles.
        (
            [2, 5, 7, 72],
            [66, 3, 3, 72],
            Conv2dParams::new().padding(1),
        ),
        // Strided with more than 64 input channels: the stride-phase dgrad
        // on 128x128 tiles.
        (
            [1, 7, 6, 70],
            [9, 3, 3, 70],
            Conv2dParams::new().stride(2).padding(1),
        ),
        // Padding beyond the kernel: the flipped fprop's padding is negative.
        ([1, 4, 5, 3], [5, 1, 1, 3], Conv2dParams::new().padding(1)),
        // Every case above with at most 16 input channels per group takes
        // the scatter dgrad; the stride-phase dgrad (C/groups > 16) on
        // 256x64 tiles: stride 2, stride 3, dilation with stride (half the
        // phases without taps), groups with asymmetric padding and
        // stride (2, 3), and a 1x1 at stride 3 (8 of 9 phases without taps).
        (
            [2, 9, 11, 20],
            [6, 3, 3, 20],
            Conv2dParams::new().stride(2).padding(1),
        ),
        (
            [2, 10, 11, 24],
            [6, 3, 3, 24],
            Conv2dParams::new().stride(3).padding(1),
        ),
        (
            [2, 11, 10, 18],
            [5, 3, 3, 18],
            Conv2dParams::new().stride(2).dilation(2).padding(2),
        ),
        (
            [1, 9, 10, 40],
            [6, 3, 2, 20],
            Conv2dParams::new()
                .groups(2)
                .stride_hw(2, 3)
                .padding_tblr(1, 0, 2, 1),
        ),
        ([1, 9, 8, 20], [4, 1, 1, 20], Conv2dParams::new().stride(3)),
        // The stem (7x7/2, 3 channels) at a small size: scatter dgrad.
        (
            [1, 22, 23, 3],
            [16, 7, 7, 3],
            Conv2dParams::new().stride(2).padding(3),
        ),
        // Many channels on a 4x4 image: one tile, so fprop and the stride-1
        // dgrad split K (128x128 tiles here, 256x64 in the next case).
        (
            [2, 4, 4, 96],
            [80, 3, 3, 96],
            Conv2dParams::new().padding(1),
        ),
        (
            [2, 4, 4, 64],
            [48, 3, 3, 64],
            Conv2dParams::new().padding(1),
        ),
    ];
    for (xs, ws, prm) in &cases {
        let x = randn(xs, &mut rng);
        let w = Tensor::randn(&ws[..], 0.3, DType::F32, &mut rng);
        let b = randn(&[ws[0]], &mut rng);
        check(
            &dev,
            &mut rep,
            "conv2d",
            &[x.clone(), w.clone(), b],
            tol,
            |t, v, _| conv2d(t, &v[0], &v[1], Some(&v[2]), *prm),
        );
        check(
            &dev,
            &mut rep,
            "conv2d (no bias)",
            &[x, w],
            tol,
            |t, v, _| conv2d(t, &v[0], &v[1], None, *prm),
        );
    }
    // Transposed: the generator's 4x4 stride-2 upsampling, and a grouped odd case.
    // (input, weight, params, output_padding)
    type TransposedCase = ([usize; 4], [usize; 4], Conv2dParams, [usize; 2]);
    let tcases: Vec<TransposedCase> = vec![
        (
            [2, 5, 6, 8],
            [8, 4, 4, 3],
            Conv2dParams::new().stride(2).padding(1),
            [0, 0],
        ),
        (
            [1, 4, 5, 6],
            [6, 3, 3, 2],
            Conv2dParams::new().stride(2).padding(1).groups(2),
            [1, 1],
        ),
        // More than 16 output channels: the stride-phase dgrad with a bias,
        // 4x4/2 and 3x3/2 with output padding.
        (
            [2, 5, 6, 24],
            [24, 4, 4, 20],
            Conv2dParams::new().stride(2).padding(1),
            [0, 0],
        ),
        (
            [1, 5, 4, 16],
            [16, 3, 3, 24],
            Conv2dParams::new().stride(2).padding(1),
            [1, 1],
        ),
    ];
    for (xs, ws, prm, op) in &tcases {
        let x = randn(xs, &mut rng);
        let w = Tensor::randn(&ws[..], 0.3, DType::F32, &mut rng);
        let b = randn(&[ws[3] * prm.groups], &mut rng);
        check(
            &dev,
            &mut rep,
            "conv_transpose2d",
            &[x, w, b],
            tol,
            |t, v, _| conv_transpose2d(t, &v[0], &v[1], Some(&v[2]), *prm, *op),
        );
    }
    rep.print("conv2d fprop/dgrad/wgrad, conv_transpose2d (implicit GEMM)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn pooling_upsample_channel_scale() {
    let dev = gpu();
    use mtaffect::ops::{
        avg_pool2d, channel_scale, channel_scale_add_relu, global_avg_pool, global_max_pool,
        max_pool2d, upsample_nearest2d, Pool2dParams,
    };
    let tol = Tol {
        atol: 1e-5,
        rtol: 1e-5,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(12);
    // Continuous random values: ties in a max window have probability zero.
    let x = randn(&[2, 11, 9, 5], &mut rng);
    for prm in [
        Pool2dParams::new(2, 2),
        Pool2dParams::new(3, 2).padding(1),
        Pool2dParams::new(3, 2).padding(1).ceil_mode(true),
        Pool2dParams::new(3, 2)
            .padding(1)
            .ceil_mode(true)
            .count_include_pad(false),
        Pool2dParams::new(3, 1),
    ] {
        check(
            &dev,
            &mut rep,
            "max_pool2d",
            &[x.clone()],
            tol,
            |t, v, _| max_pool2d(t, &v[0], prm),
        );
        check(
            &dev,
            &mut rep,
            "avg_pool2d",
            &[x.clone()],
            tol,
            |t, v, _| avg_pool2d(t, &v[0], prm),
        );
    }
    check(
        &dev,
        &mut rep,
        "global_avg_pool",
        &[x.clone()],
        tol,
        |t, v, _| global_avg_pool(t, &v[0]),
    );
    check(
        &dev,
        &mut rep,
        "global_max_pool",
        &[x.clone()],
        tol,
        |t, v, _| global_max_pool(t, &v[0]),
    );
    for f in [1, 2, 3] {
        check(
            &dev,
            &mut rep,
            "upsample_nearest2d",
            &[x.clone()],
            tol,
            |t, v, _| upsample_nearest2d(t, &v[0], f),
        );
    }
    // channel_scale and the fused SE block end on x [N, H, W, C] with
    // gates [N, C] and a residual like x.
    let scale_checks = |rep: &mut Report, label: &str, x: &Tensor, rng: &mut Rng| {
        let (n, c) = (x.dims()[0], x.dims()[3]);
        let g = Tensor::uniform([n, c], 0.0, 1.0, DType::F32, rng);
        let r = randn(x.dims(), rng);
        check(
            &dev,
            rep,
            &format!("channel_scale{label}"),
            &[x.clone(), g.clone()],
            tol,
            |t, v, _| channel_scale(t, &v[0], &v[1]),
        );
        check(
            &dev,
            rep,
            &format!("channel_scale_add_relu{label}"),
            &[x.clone(), g, r],
            tol,
            |t, v, _| channel_scale_add_relu(t, &v[0], &v[1], &v[2]),
        );
    };
    scale_checks(&mut rep, "", &x, &mut rng);
    // C % 4 == 0: the float4 lanes of the SE squeeze and channel scale kernels,
    // several block-rows per sample.
    let x = randn(&[3, 20, 21, 64], &mut rng);
    check(
        &dev,
        &mut rep,
        "global_avg_pool (float4)",
        &[x.clone()],
        tol,
        |t, v, _| global_avg_pool(t, &v[0]),
    );
    scale_checks(&mut rep, " (float4)", &x, &mut rng);
    rep.print("max/avg/global pooling, upsample_nearest2d, channel_scale(_add_relu)");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn layer_norm_rows() {
    let dev = gpu();
    use mtaffect::ops::layer_norm;
    let tol = Tol {
        atol: 1e-4,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(13);
    for shape in [&[3, 7][..], &[2, 5, 33], &[300, 256], &[1, 1]] {
        let d = *shape.last().unwrap();
        let x = Tensor::randn(shape, 2.0, DType::F32, &mut rng);
        let w = Tensor::uniform([d], 0.5, 1.5, DType::F32, &mut rng);
        let b = randn(&[d], &mut rng);
        check(&dev, &mut rep, "layer_norm", &[x, w, b], tol, |t, v, _| {
            layer_norm(t, &v[0], &v[1], &v[2], 1e-5)
        });
    }
    rep.print("layer_norm");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn concat_narrow_reshape_dropout() {
    let dev = gpu();
    use mtaffect::ops::{concat, dropout, narrow, reshape};
    // Copies and exact scalings: the GPU must match to rounding of one multiply.
    let tol = Tol {
        atol: 1e-6,
        rtol: 1e-6,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(14);
    let a = randn(&[2, 3, 5, 4], &mut rng);
    let b = randn(&[2, 3, 5, 7], &mut rng);
    let c = randn(&[1, 3, 5, 4], &mut rng);
    check(
        &dev,
        &mut rep,
        "concat (channels)",
        &[a.clone(), b],
        tol,
        |t, v, _| concat(t, &[&v[0], &v[1]], -1),
    );
    check(
        &dev,
        &mut rep,
        "concat (batch, repeated)",
        &[a.clone(), c],
        tol,
        |t, v, _| concat(t, &[&v[0], &v[1], &v[0]], 0),
    );
    for (axis, start, len) in [(0, 1, 1), (1, 1, 2), (-1, 1, 3), (2, 0, 5)] {
        check(&dev, &mut rep, "narrow", &[a.clone()], tol, |t, v, _| {
            narrow(t, &v[0], axis, start, len)
        });
    }
    check(&dev, &mut rep, "reshape", &[a.clone()], tol, |t, v, _| {
        reshape(t, &v[0], [6, 20])
    });
    // The same seed drops the same elements on both sides.
    check(&dev, &mut rep, "dropout", &[a], tol, |t, v, _| {
        dropout(t, &v[0], 0.3, true, &mut Rng::new(7))
    });
    rep.print("concat, narrow, reshape, dropout");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn mse_and_gan_losses() {
    let dev = gpu();
    use mtaffect::ops::loss::{
        gan_discriminator_loss, gan_generator_loss, mse_loss, GanLoss, MseDenominator,
    };
    let tol = Tol {
        atol: 1e-6,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(15);
    for (n, frac) in [(1, 0.0), (37, 0.3), (3001, 0.2), (4, 1.0)] {
        let pred = Tensor::uniform([n, 2], -1.0, 1.0, DType::F32, &mut rng);
        let target = masked_targets(&[n, 2], frac, -5.0, &mut rng);
        for denom in [MseDenominator::Valid, MseDenominator::All] {
            check(
                &dev,
                &mut rep,
                "mse_loss",
                &[pred.clone()],
                tol,
                |t, v, ctx| mse_loss(t, &v[0], &ctx.put(&target), Some(-5.0), denom),
            );
        }
    }
    // Logits around the hinge kinks' neighbourhood but never on them (continuous draws).
    let real = Tensor::randn([5, 3, 3, 1], 2.0, DType::F32, &mut rng);
    let fake = Tensor::randn([7, 1], 2.0, DType::F32, &mut rng);
    for kind in [GanLoss::NonSaturating, GanLoss::Hinge] {
        check(
            &dev,
            &mut rep,
            "gan_discriminator_loss",
            &[real.clone(), fake.clone()],
            tol,
            |t, v, _| gan_discriminator_loss(t, kind, &v[0], &v[1]),
        );
        check(
            &dev,
            &mut rep,
            "gan_generator_loss",
            &[fake.clone()],
            tol,
            |t, v, _| gan_generator_loss(t, kind, &v[0]),
        );
    }
    rep.print("mse_loss (masked, both denominators), gan losses (non-saturating, hinge)");
}

/// An SE-ResNet basic block (conv-BN-ReLU-conv-BN-SE + identity, ReLU) as in
/// tests/gradcheck_block.rs, with the BN buffers on the side's device.
fn se_block(tape: &Tape, v: &[Var], ctx: &Ctx) -> Result<Var> {
    use mtaffect::ops::{self, BatchNormParams, Conv2dParams};
    let x = &v[0];
    let c = x.dims()[3];
    let bn = |h: &Var, g: &Var, b: &Var| {
        let (mut rm, mut rv) = (
            ctx.put(&Tensor::zeros([c], DType::F32)),
            ctx.put(&Tensor::ones([c], DType::F32)),
        );
        ops::batch_norm2d(tape, h, g, b, &mut rm, &mut rv, BatchNormParams::default())
    };
    let conv = Conv2dParams::new().padding(1);
    let h = ops::conv2d(tape, x, &v[1], None, conv)?;
    let h = ops::relu(tape, &bn(&h, &v[2], &v[3])?)?;
    let h = ops::conv2d(tape, &h, &v[4], None, conv)?;
    let h = bn(&h, &v[5], &v[6])?;
    let s = ops::global_avg_pool(tape, &h)?;
    let s = ops::relu(tape, &ops::linear(tape, &s, &v[7], Some(&v[8]))?)?;
    let s = ops::sigmoid(tape, &ops::linear(tape, &s, &v[9], Some(&v[10]))?)?;
    ops::channel_scale_add_relu(tape, &h, &s, x)
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn se_resnet_block_end_to_end() {
    let dev = gpu();
    // Two convolutions and two batch norms deep: looser than any single op.
    let tol = Tol {
        atol: 5e-4,
        rtol: 5e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(16);
    let (n, hw, c, r) = (3, 7, 8, 4);
    let mut rnd = |s: &[usize], std: f64| Tensor::randn(s, std, DType::F32, &mut rng);
    let inputs = vec![
        rnd(&[n, hw, hw, c], 1.0),
        rnd(&[c, 3, 3, c], 0.2),
        Tensor::ones([c], DType::F32),
        rnd(&[c], 0.2),
        rnd(&[c, 3, 3, c], 0.2),
        Tensor::ones([c], DType::F32),
        rnd(&[c], 0.2),
        rnd(&[r, c], 0.5),
        rnd(&[r], 0.2),
        rnd(&[c, r], 0.5),
        rnd(&[c], 0.2),
    ];
    check(&dev, &mut rep, "se_block", &inputs, tol, se_block);
    rep.print("SE-ResNet basic block (composition, gradients meeting at the shortcut)");
}
