//! The whole multi-task network as one ONNX graph body: the backbone (by
//! kind), the neck (MTANet's two pooled 1x1-conv branches, or a global
//! average pool) and the three heads, as `model::mtl_net` and
//! `model::neck` compute them in eval mode (dropout is the identity).

use super::graph::{float, int};
use super::layers::Emit;
use super::{densenet::densenet, iresnet::iresnet, se_resnet::se_resnet, vit::vit};
use super::{AU_OUTPUT, EXPR_OUTPUT, VA_OUTPUT};
use crate::model::neck::LEAKY_SLOPE;
use crate::model::{BuiltIn, Features, MtlNet, Neck};
use crate::nn::{Conv2d, Linear};
use crate::{Error, Result};

/// NCHW images `x` [N, 3, S, S] -> the names of (valence/arousal after
/// tanh [N, 2], AU logits [N, n_aus], expression logits [N, n_expr]).
pub fn mtl_net(e: &mut Emit, net: &MtlNet, image_size: usize, x: &str) -> Result<[String; 3]> {
    let f = match net.backbone.built_in() {
        Some(BuiltIn::SeResnet(b)) => se_resnet(e, b, x)?,
        Some(BuiltIn::Iresnet(b)) => iresnet(e, b, x)?,
        Some(BuiltIn::Vit(b)) => vit(e, b, image_size, x)?,
        Some(BuiltIn::Densenet(b)) => densenet(e, b, x)?,
        None => {
            return Err(Error::Config(format!(
                "ONNX export: model.backbone is not a built-in kind (se_resnet, iresnet, \
                 vit, densenet) but {:?}",
                net.backbone
            )))
        }
    };
    let f = neck(e, &net.neck, &f)?;
    let va = head(e, &net.va_head, &f, "head.va")?;
    Ok([
        e.unary("Tanh", VA_OUTPUT, &va),
        head(e, &net.au_head, &f, AU_OUTPUT)?,
        head(e, &net.expr_head, &f, EXPR_OUTPUT)?,
    ])
}

fn head(e: &mut Emit, l: &Linear, x: &str, name: &str) -> Result<String> {
    let w = e.param(l.weight)?;
    let wn = e.init(&w)?;
    e.gemm(&wn, l.bias, x, name)
}

/// The backbone's map [N, C, h, w] (or vector [N, C], taken as a 1x1 map)
/// -> features [N, F].
fn neck(e: &mut Emit, n: &Neck, x: &str) -> Result<String> {
    let map = match n.input {
        Features::Map => x.to_string(),
        Features::Vector if n.branches.is_none() => {
            // A global pool of a 1x1 map is the vector itself.
            return Ok(x.to_string());
        }
        Features::Vector => {
            let shape = e.g.i64s("neck.map_shape", &[0, -1, 1, 1]);
            e.binary("Reshape", "neck.map", x, &shape)
        }
    };
    match &n.branches {
        Some((avg, max)) => {
            let a = branch(e, avg, &map, "GlobalAveragePool")?;
            let m = branch(e, max, &map, "GlobalMaxPool")?;
            Ok(e.g.node("Concat", "neck", &[&a, &m], vec![int("axis", 1)]))
        }
        None => {
            let g = e.unary("GlobalAveragePool", "neck.pool", &map);
            Ok(e.g.node("Flatten", "neck", &[&g], vec![int("axis", 1)]))
        }
    }
}

/// 1x1 conv -> LeakyReLU -> `pool` -> [N, C].
fn branch(e: &mut Emit, conv: &Conv2d, x: &str, pool: &str) -> Result<String> {
    let y = e.conv(conv, x)?;
    let name = y.clone();
    let y = e.g.node(
        "LeakyRelu",
        &format!("{name}.act"),
        &[&y],
        vec![float("alpha", LEAKY_SLOPE as f32)],
    );
    let y = e.unary(pool, &format!("{name}.pool"), &y);
    Ok(e.g.node(
        "Flatten",
        &format!("{name}.flat"),
        &[&y],
        vec![int("axis", 1)],
    ))
}
