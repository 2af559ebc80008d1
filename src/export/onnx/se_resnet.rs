//! The SE-ResNet backbone as ONNX nodes: stem (conv, BN, ReLU, and with the
//! ImageNet stem the 3x3/2 max pool), then every residual block with its
//! squeeze-and-excitation gate (none in a plain ResNet), as `model::backbone::se_resnet` and
//! `blocks` compute them in eval mode.

use super::layers::Emit;
use crate::model::backbone::blocks::Downsample;
use crate::model::backbone::se_resnet::Block;
use crate::model::{SeResNet, Stem};
use crate::nn::{BatchNorm2d, Conv2d, SeBlock};
use crate::ops::pool::Pool2dParams;
use crate::Result;

/// NCHW images -> the last stage's map [N, C, h, w].
pub fn se_resnet(e: &mut Emit, net: &SeResNet, x: &str) -> Result<String> {
    let h = e.conv(&net.stem_conv, x)?;
    let h = e.batch_norm(&net.stem_bn, &h)?;
    let mut h = e.unary("Relu", "stem.relu", &h);
    if net.stem == Stem::Imagenet {
        h = e.pool(
            "MaxPool",
            "stem.pool",
            &h,
            Pool2dParams::new(3, 2).padding(1),
        );
    }
    for blk in &net.blocks {
        h = match blk {
            Block::Basic(b) => {
                let s = shortcut(e, &b.downsample, &h)?;
                let y = conv_bn(e, &b.conv1, &b.bn1, &h, true)?;
                let y = conv_bn(e, &b.conv2, &b.bn2, &y, false)?;
                se_add_relu(e, &b.se, &y, &s)?
            }
            Block::Bottleneck(b) => {
                let s = shortcut(e, &b.downsample, &h)?;
                let y = conv_bn(e, &b.conv1, &b.bn1, &h, true)?;
                let y = conv_bn(e, &b.conv2, &b.bn2, &y, true)?;
                let y = conv_bn(e, &b.conv3, &b.bn3, &y, false)?;
                se_add_relu(e, &b.se, &y, &s)?
            }
        };
    }
    Ok(h)
}

/// conv -> BN, then ReLU when `relu`; named for the conv.
fn conv_bn(e: &mut Emit, conv: &Conv2d, bn: &BatchNorm2d, x: &str, relu: bool) -> Result<String> {
    let y = e.conv(conv, x)?;
    let y = e.batch_norm(bn, &y)?;
    Ok(if relu {
        let name = format!("{y}.relu");
        e.unary("Relu", &name, &y)
    } else {
        y
    })
}

fn shortcut(e: &mut Emit, ds: &Option<Downsample>, x: &str) -> Result<String> {
    match ds {
        Some(d) => conv_bn(e, &d.conv, &d.bn, x, false),
        None => Ok(x.to_string()),
    }
}

/// `relu(x · gate(x) + res)`: the gate is global average pool -> FC -> ReLU
/// -> FC -> sigmoid, the FCs as 1x1 convolutions on the [N, C, 1, 1] pool;
/// `relu(x + res)` in a plain ResNet (no gate).
fn se_add_relu(e: &mut Emit, se: &Option<SeBlock>, x: &str, res: &str) -> Result<String> {
    let Some(se) = se else {
        let y = e.binary("Add", &format!("{x}.add"), x, res);
        return Ok(e.unary("Relu", &format!("{x}.out"), &y));
    };
    let name = se_name(e, se);
    let s = e.unary("GlobalAveragePool", &format!("{name}.pool"), x);
    let h = e.linear_as_conv1x1(&se.fc1, &s)?;
    let h = e.unary("Relu", &format!("{name}.relu"), &h);
    let h = e.linear_as_conv1x1(&se.fc2, &h)?;
    let gate = e.unary("Sigmoid", &format!("{name}.gate"), &h);
    let y = e.binary("Mul", &format!("{name}.scale"), x, &gate);
    let y = e.binary("Add", &format!("{name}.add"), &y, res);
    Ok(e.unary("Relu", &format!("{name}.out"), &y))
}

/// The SE block's scope (`layer1.0.se`), from its first FC's weight name.
fn se_name(e: &Emit, se: &SeBlock) -> String {
    let w = e.param_name(se.fc1.weight);
    w.strip_suffix(".fc1.weight").unwrap_or(w).to_string()
}
