//! The DenseNet backbone as ONNX nodes: stem (conv0, norm0, ReLU, 3x3/2 max
//! pool), dense blocks whose layers (BN - ReLU - 1x1 conv - BN - ReLU - 3x3
//! conv) each append their channels to the block's map with a Concat on
//! axis 1, transitions (BN - ReLU - 1x1 conv - 2x2/2 average pool), and
//! norm5 + ReLU, as `model::backbone::densenet` computes them in eval mode
//! (dropout is the identity).

use super::graph::int;
use super::layers::Emit;
use crate::model::DenseNet;
use crate::nn::BatchNorm2d;
use crate::ops::pool::Pool2dParams;
use crate::Result;

/// NCHW images [N, 3, S, S] -> the map after norm5 and ReLU [N, C, h, w].
pub fn densenet(e: &mut Emit, net: &DenseNet, x: &str) -> Result<String> {
    let h = e.conv(&net.conv0, x)?;
    let h = bn_relu(e, &net.norm0, &h)?;
    let mut h = e.pool(
        "MaxPool",
        "features.pool0",
        &h,
        Pool2dParams::new(3, 2).padding(1),
    );
    for (i, layers) in net.blocks.iter().enumerate() {
        for layer in layers {
            let y = bn_relu(e, &layer.norm1, &h)?;
            let y = e.conv(&layer.conv1, &y)?;
            let y = bn_relu(e, &layer.norm2, &y)?;
            let new = e.conv(&layer.conv2, &y)?;
            let name = format!("{new}.concat");
            h = e.g.node("Concat", &name, &[&h, &new], vec![int("axis", 1)]);
        }
        if let Some(t) = net.transitions.get(i) {
            let y = bn_relu(e, &t.norm, &h)?;
            let y = e.conv(&t.conv, &y)?;
            let name = format!("{y}.pool");
            h = e.pool("AveragePool", &name, &y, Pool2dParams::new(2, 2));
        }
    }
    bn_relu(e, &net.norm5, &h)
}

/// BN (running statistics) then ReLU, named for the BN.
fn bn_relu(e: &mut Emit, bn: &BatchNorm2d, x: &str) -> Result<String> {
    let y = e.batch_norm(bn, x)?;
    let name = format!("{y}.relu");
    Ok(e.unary("Relu", &name, &y))
}
