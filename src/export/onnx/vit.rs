//! The Vision Transformer backbone as ONNX nodes, as `model::backbone::vit`
//! and `nn::vit_block` compute it in eval mode (drop path is the identity):
//! patch embedding (a strided Conv, then tokens [N, T, D] in the grid's
//! row-major order), the fixed sin-cos position embedding for the exported
//! image size (a constant), the class token broadcast over the batch,
//! pre-norm blocks with multi-head attention written out as MatMul,
//! Softmax, Reshape and Transpose, the erf form of GELU, then class-token
//! or mean pooling.

use super::graph::{int, ints};
use super::layers::Emit;
use crate::model::backbone::vit::grid_side;
use crate::model::{Pooling, Vit};
use crate::nn::{sincos_pos_embed_2d, Linear, VitBlock};
use crate::{DType, Result};

/// Scalars every block reads, written once.
struct Consts {
    half: String,
    one: String,
    inv_sqrt2: String,
    /// 1/√(head width): the attention scores' scale.
    scale: String,
    /// [0, 0, heads, D/heads] and [0, 0, D]: Reshape targets (0 keeps N and T).
    split_heads: String,
    merge_heads: String,
}

/// NCHW images [N, 3, S, S] -> [N, D].
pub fn vit(e: &mut Emit, net: &Vit, image_size: usize, x: &str) -> Result<String> {
    let spec = net.blocks.spec;
    let (d, heads) = (spec.width, spec.heads);
    let g = grid_side(net.patch, image_size)?;
    let t = g * g;

    let p = e.conv(&net.patch_embed, x)?;
    let shape =
        e.g.i64s("patch_embed.tokens_shape", &[0, d as i64, t as i64]);
    let p = e.binary("Reshape", "patch_embed.flatten", &p, &shape);
    let p = e.g.node(
        "Transpose",
        "patch_embed.tokens",
        &[&p],
        vec![ints("perm", &[0, 2, 1])],
    );
    let pe = sincos_pos_embed_2d(g, g, d, false, DType::F32)?.to_vec::<f32>()?;
    let pe = e.g.f32s("pos_embed", &[t, d], &pe)?;
    let tokens = e.binary("Add", "patch_embed.pos", &p, &pe);

    // The class token [1, 1, D] expanded to [N, 1, D] (N from the input).
    let cls = e.param(net.cls_token)?;
    let cls = e.init(&cls)?;
    let n = e.g.node(
        "Shape",
        "batch",
        &[&tokens],
        vec![int("start", 0), int("end", 1)],
    );
    let rest = e.g.i64s("cls_token.rest_shape", &[1, d as i64]);
    let cls_shape = e.g.node(
        "Concat",
        "cls_token.shape",
        &[&n, &rest],
        vec![int("axis", 0)],
    );
    let cls = e.binary("Expand", "cls_token.expand", &cls, &cls_shape);
    let mut h =
        e.g.node("Concat", "tokens", &[&cls, &tokens], vec![int("axis", 1)]);

    let dh = d / heads;
    let c = Consts {
        half: e.g.f32_scalar("const.half", 0.5)?,
        one: e.g.f32_scalar("const.one", 1.0)?,
        inv_sqrt2: e
            .g
            .f32_scalar("const.inv_sqrt2", std::f32::consts::FRAC_1_SQRT_2)?,
        scale: e
            .g
            .f32_scalar("const.attn_scale", (1.0 / (dh as f64).sqrt()) as f32)?,
        split_heads: e
            .g
            .i64s("const.split_heads", &[0, 0, heads as i64, dh as i64]),
        merge_heads: e.g.i64s("const.merge_heads", &[0, 0, d as i64]),
    };
    for (i, b) in net.blocks.blocks.iter().enumerate() {
        h = block(e, b, &format!("blocks.{i}"), d, &c, &h)?;
    }

    match net.pooling {
        Pooling::Cls => {
            let h = e.layer_norm(&net.norm, &h)?;
            let zero = e.g.i64_scalar("const.cls_index", 0);
            Ok(e.g.node("Gather", "pool.cls", &[&h, &zero], vec![int("axis", 1)]))
        }
        Pooling::Mean => {
            let starts = e.g.i64s("pool.starts", &[1]);
            let ends = e.g.i64s("pool.ends", &[i64::MAX]);
            let axes = e.g.i64s("pool.axes", &[1]);
            let patches = e.g.node(
                "Slice",
                "pool.patches",
                &[&h, &starts, &ends, &axes],
                vec![],
            );
            let m = reduce_mean_tokens(e, &patches);
            e.layer_norm(&net.norm, &m)
        }
    }
}

/// ReduceMean over axis 1 without keeping it; its axes moved from an
/// attribute to an input in opset 18.
fn reduce_mean_tokens(e: &mut Emit, x: &str) -> String {
    if e.g.opset < 18 {
        let attrs = vec![ints("axes", &[1]), int("keepdims", 0)];
        e.g.node("ReduceMean", "pool.mean", &[x], attrs)
    } else {
        let axes = e.g.i64s("pool.mean_axes", &[1]);
        e.g.node(
            "ReduceMean",
            "pool.mean",
            &[x, &axes],
            vec![int("keepdims", 0)],
        )
    }
}

/// `x + Attn(LN(x))`, then `+ MLP(LN(x))`.
fn block(e: &mut Emit, b: &VitBlock, name: &str, d: usize, c: &Consts, x: &str) -> Result<String> {
    let h = e.layer_norm(&b.norm1, x)?;
    let a = attention(
        e,
        &b.attn.qkv,
        &b.attn.proj,
        &format!("{name}.attn"),
        d,
        c,
        &h,
    )?;
    let x = e.binary("Add", &format!("{name}.residual1"), x, &a);
    let h = e.layer_norm(&b.norm2, &x)?;
    let h = e.linear_tokens(&b.fc1, &h)?;
    let h = gelu(e, &format!("{name}.mlp.gelu"), c, &h);
    let h = e.linear_tokens(&b.fc2, &h)?;
    Ok(e.binary("Add", &format!("{name}.residual2"), &x, &h))
}

/// `0.5 · x · (1 + erf(x / √2))`.
fn gelu(e: &mut Emit, name: &str, c: &Consts, x: &str) -> String {
    let s = e.binary("Mul", &format!("{name}.scaled"), x, &c.inv_sqrt2);
    let s = e.unary("Erf", &format!("{name}.erf"), &s);
    let s = e.binary("Add", &format!("{name}.plus1"), &s, &c.one);
    let s = e.binary("Mul", &format!("{name}.times_x"), x, &s);
    e.binary("Mul", name, &s, &c.half)
}

/// Multi-head self-attention on x [N, T, D]: q, k and v from the row thirds
/// of the fused qkv weight (as ours slices it), heads split off the width,
/// `softmax(q·kᵀ · scale) · v`, heads merged, the output projection.
fn attention(
    e: &mut Emit,
    qkv: &Linear,
    proj: &Linear,
    name: &str,
    d: usize,
    c: &Consts,
    x: &str,
) -> Result<String> {
    let w = e.param(qkv.weight)?;
    let b = match qkv.bias {
        Some(b) => Some(e.param(b)?.data),
        None => None,
    };
    let mut parts = Vec::with_capacity(3);
    for (i, part) in ["q", "k", "v"].into_iter().enumerate() {
        let rows = &w.data[i * d * d..(i + 1) * d * d];
        let bias = b.as_ref().map(|b| &b[i * d..(i + 1) * d]);
        let y = e.token_linear(&format!("{name}.{part}"), (rows, d, d), bias, x)?;
        let y = e.binary(
            "Reshape",
            &format!("{name}.{part}.heads"),
            &y,
            &c.split_heads,
        );
        // q and v [N, H, T, dh]; k [N, H, dh, T], ready for q·kᵀ.
        let perm: &[i64] = if part == "k" {
            &[0, 2, 3, 1]
        } else {
            &[0, 2, 1, 3]
        };
        let y = e.g.node(
            "Transpose",
            &format!("{name}.{part}.t"),
            &[&y],
            vec![ints("perm", perm)],
        );
        parts.push(y);
    }
    let s = e.binary("MatMul", &format!("{name}.scores"), &parts[0], &parts[1]);
    let s = e.binary("Mul", &format!("{name}.scaled"), &s, &c.scale);
    let p = e.g.node(
        "Softmax",
        &format!("{name}.softmax"),
        &[&s],
        vec![int("axis", -1)],
    );
    let o = e.binary("MatMul", &format!("{name}.context"), &p, &parts[2]);
    let o = e.g.node(
        "Transpose",
        &format!("{name}.merge"),
        &[&o],
        vec![ints("perm", &[0, 2, 1, 3])],
    );
    let o = e.binary("Reshape", &format!("{name}.merged"), &o, &c.merge_heads);
    e.linear_tokens(proj, &o)
}
