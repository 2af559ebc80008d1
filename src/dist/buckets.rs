//! The gradient bucket plan of the data-parallel all-reduce. Backward
//! produces gradients roughly in reverse registration order (the head's
//! first), so buckets are filled in that order: the first bucket is complete
//! early and its all-reduce can overlap the rest of backward. Each bucket is
//! one contiguous range of a single flat buffer, so one collective call per
//! bucket moves all its gradients.

use crate::{DType, ParamId, Params, Result};

/// PyTorch DDP's default bucket cap (`bucket_cap_mb = 25`).
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// Parameters whose gradients are reduced together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// In the order they are laid out (reverse registration order).
    pub params: Vec<ParamId>,
    /// Byte offset of each parameter's gradient in the flat buffer.
    pub offsets: Vec<usize>,
    /// Byte offset of the bucket in the flat buffer.
    pub start: usize,
    pub bytes: usize,
}

/// Every trainable parameter in exactly one bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketPlan {
    pub buckets: Vec<Bucket>,
    /// Size of the flat buffer.
    pub total_bytes: usize,
}

impl BucketPlan {
    /// Plans the trainable (not frozen) parameters of `params` into buckets
    /// of at most `cap_bytes`, except that a parameter larger than the cap
    /// gets a bucket of its own.
    pub fn new(params: &Params, cap_bytes: usize) -> Result<BucketPlan> {
        let sizes: Vec<(ParamId, usize)> = params
            .ids()
            .filter(|&id| !params.is_frozen(id))
            .map(|id| {
                let t = params.get(id);
                let elem = match t.dtype() {
                    DType::F32 => 4,
                    DType::F64 => 8,
                };
                (id, t.numel() * elem)
            })
            .collect();
        Self::from_sizes(&sizes, cap_bytes)
    }

    /// Plans `(parameter, gradient bytes)` given in registration order.
    pub fn from_sizes(sizes: &[(ParamId, usize)], cap_bytes: usize) -> Result<BucketPlan> {
        if cap_bytes == 0 {
            return Err(crate::Error::Config(
                "gradient bucket cap must be > 0 bytes".into(),
            ));
        }
        let mut buckets: Vec<Bucket> = Vec::new();
        let mut offset = 0;
        for &(id, bytes) in sizes.iter().rev() {
            let fits = buckets.last().is_some_and(|b| b.bytes + bytes <= cap_bytes);
            if !fits {
                buckets.push(Bucket {
                    params: Vec::new(),
                    offsets: Vec::new(),
                    start: offset,
                    bytes: 0,
                });
            }
            let b = buckets.last_mut().expect("pushed above");
            b.params.push(id);
            b.offsets.push(offset);
            b.bytes += bytes;
            offset += bytes;
        }
        Ok(BucketPlan {
            buckets,
            total_bytes: offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MtlNet, NetConfig};
    use crate::nn::Buffers;
    use crate::Rng;

    fn ids(sizes: &[usize]) -> Vec<(ParamId, usize)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| (ParamId(i), s))
            .collect()
    }

    fn bucket_ids(plan: &BucketPlan) -> Vec<Vec<usize>> {
        plan.buckets
            .iter()
            .map(|b| b.params.iter().map(|p| p.index()).collect())
            .collect()
    }

    /// Every parameter once, buckets back to back, offsets contiguous.
    fn check_layout(plan: &BucketPlan, sizes: &[(ParamId, usize)]) {
        let mut seen: Vec<usize> = plan
            .buckets
            .iter()
            .flat_map(|b| b.params.iter().map(|p| p.index()))
            .collect();
        seen.sort_unstable();
        let mut want: Vec<usize> = sizes.iter().map(|(p, _)| p.index()).collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        let mut at = 0;
        for b in &plan.buckets {
            assert_eq!(b.start, at);
            for (p, &o) in b.params.iter().zip(&b.offsets) {
                assert_eq!(o, at);
                at += sizes.iter().find(|(q, _)| q == p).unwrap().1;
            }
            assert_eq!(b.bytes, at - b.start);
        }
        assert_eq!(plan.total_bytes, at);
    }

    #[test]
    fn hand_made_sizes_group_in_reverse_and_big_ones_stand_alone() {
        let sizes = ids(&[10, 30, 100, 40, 50, 20]);
        let plan = BucketPlan::from_sizes(&sizes, 60).unwrap();
        check_layout(&plan, &sizes);
        // Reverse order 5 (20), 4 (50) > 60 -> new, 3 (40), 2 (100 > cap,
        // alone), 1 (30) + 0 (10).
        assert_eq!(
            bucket_ids(&plan),
            vec![vec![5], vec![4], vec![3], vec![2], vec![1, 0]]
        );
        let plan = BucketPlan::from_sizes(&sizes, 1000).unwrap();
        assert_eq!(bucket_ids(&plan), vec![vec![5, 4, 3, 2, 1, 0]]);
        assert!(BucketPlan::from_sizes(&sizes, 0).is_err());
        assert!(BucketPlan::from_sizes(&[], 10).unwrap().buckets.is_empty());
    }

    #[test]
    fn the_default_se_resnet_fills_25_mb_buckets() {
        let (mut p, mut b) = (Params::new(), Buffers::new());
        MtlNet::new(&NetConfig::default(), &mut p, &mut b, &mut Rng::new(0)).unwrap();
        let frozen = p.ids().next().unwrap();
        p.set_frozen(frozen, true);
        let plan = BucketPlan::new(&p, DEFAULT_BUCKET_BYTES).unwrap();
        let sizes: Vec<(ParamId, usize)> = p
            .ids()
            .filter(|&id| id != frozen)
            .map(|id| (id, p.get(id).numel() * 4))
            .collect();
        check_layout(&plan, &sizes);
        assert_eq!(plan.total_bytes, (p.numel() - p.get(frozen).numel()) * 4);
        assert!(plan.buckets.len() >= 2, "{} buckets", plan.buckets.len());
        for b in &plan.buckets {
            assert!(b.bytes <= DEFAULT_BUCKET_BYTES || b.params.len() == 1);
        }
        // The last registered parameter (a head's) leads the first bucket.
        assert_eq!(plan.buckets[0].params[0].index(), p.len() - 1);
    }
}
