//! The IResNet backbone as ONNX nodes: stem (conv, BN, PReLU), the
//! improved residual units (BN - conv - BN - PReLU - conv - BN, plus the
//! shortcut, no activation after the add), then BN - flatten - FC -
//! BatchNorm1d to the embedding, as `model::backbone::iresnet` computes
//! them in eval mode (dropout is the identity).
//!
//! The one weight that is more than a transpose: our FC reads the NHWC map
//! flattened in (h, w, c) order, ONNX's Flatten of the NCHW map gives
//! (c, h, w), so the FC's columns are permuted.

use super::graph::int;
use super::layers::Emit;
use super::layout::hwc_columns_to_chw;
use crate::model::IResNet;
use crate::Result;

/// NCHW images [N, 3, S, S] -> embeddings [N, E].
pub fn iresnet(e: &mut Emit, net: &IResNet, x: &str) -> Result<String> {
    let h = e.conv(&net.conv1, x)?;
    let h = e.batch_norm(&net.bn1, &h)?;
    let mut h = e.prelu(net.prelu, &h)?;
    for u in &net.units {
        let short = match &u.downsample {
            Some((conv, bn)) => {
                let s = e.conv(conv, &h)?;
                e.batch_norm(bn, &s)?
            }
            None => h.clone(),
        };
        let y = e.batch_norm(&u.bn1, &h)?;
        let y = e.conv(&u.conv1, &y)?;
        let y = e.batch_norm(&u.bn2, &y)?;
        let y = e.prelu(u.prelu, &y)?;
        let y = e.conv(&u.conv2, &y)?;
        let y = e.batch_norm(&u.bn3, &y)?;
        let name = format!("{}.add", unit_name(e.param_name(u.prelu)));
        h = e.binary("Add", &name, &y, &short);
    }
    let h = e.batch_norm(&net.bn2, &h)?;
    let flat = e.g.node("Flatten", "flatten", &[&h], vec![int("axis", 1)]);
    let w = e.param(net.fc.weight)?;
    let side = net.image_size / 16;
    let channels = w.dims[1] / (side * side);
    let chw = hwc_columns_to_chw(&w.data, w.dims[0], [side, side, channels]);
    let wn = e.g.f32s(&w.name, &w.dims, &chw)?;
    let h = e.gemm(&wn, net.fc.bias, &flat, w.layer())?;
    e.batch_norm(&net.features, &h)
}

/// `layer1.0` from the unit's `layer1.0.prelu.weight`.
fn unit_name(prelu: &str) -> &str {
    prelu.strip_suffix(".prelu.weight").unwrap_or(prelu)
}
