//! The sum of squares of many tensors together, summed in f64: the global
//! gradient norm behind clipping and the training step's finiteness check.

use crate::tensor::same_device;
use crate::{Result, Tensor};

/// Sum over every element of `tensors` of its square: one launch and a
/// read-back when they live on a GPU, f64 arithmetic on the host.
pub fn sum_of_squares(op: &'static str, tensors: &[&Tensor]) -> Result<f64> {
    if let Some(dev) = same_device(op, tensors)? {
        return super::chunks::sum_of_squares(&dev, op, tensors);
    }
    Ok(tensors
        .iter()
        .map(|g| g.to_f64_vec().iter().map(|v| v * v).sum::<f64>())
        .sum::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn sums_every_element_of_every_tensor_squared() {
        let a = Tensor::from_f64s(&[1.0, -2.0, 3.0, 0.5], [2, 2], DType::F32).unwrap();
        let b = Tensor::from_f64s(&[-4.0], [1], DType::F64).unwrap();
        assert_eq!(sum_of_squares("t", &[&a, &b]).unwrap(), 30.25);
        assert_eq!(sum_of_squares("t", &[]).unwrap(), 0.0);
    }
}
