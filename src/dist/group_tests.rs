//! Host collectives with ranks as threads on 127.0.0.1.

use super::*;
use crate::dist::{host, join};
use crate::ParamId;
use std::net::TcpListener;
use std::thread;

const T: Duration = Duration::from_secs(10);

/// A group of `world` ranks; `body(rank's group)` runs on a thread per rank
/// and the results come back by rank.
fn run_ranks<R: Send + 'static>(
    world: usize,
    body: impl Fn(ProcessGroup) -> R + Send + Sync + 'static,
) -> Vec<R> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let body = std::sync::Arc::new(body);
    let mut handles: Vec<_> = (1..world)
        .map(|r| {
            let (addr, body) = (addr.clone(), body.clone());
            thread::spawn(move || body(ProcessGroup::new(join(&addr, r, world, T).unwrap().1)))
        })
        .collect();
    let zero = {
        let body = body.clone();
        thread::spawn(move || body(ProcessGroup::new(host(l, world, b"", T).unwrap())))
    };
    handles.insert(0, zero);
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn all_reduce_sums_in_rank_order_and_every_rank_gets_the_same_bits() {
    let values = |r: usize| [[1e8, 1.0, -1e8][r], 1.0 + r as f32, 0.1 * r as f32];
    let out = run_ranks(3, move |mut g| {
        let mut v = values(g.rank()).to_vec();
        g.all_reduce_sum(&mut v).unwrap();
        v
    });
    // In rank order (1e8 + 1) rounds to 1e8 and the first sum is 0; summed
    // in another order it would be 1.
    let mut acc = [0f32; 3];
    for r in 0..3 {
        for (a, x) in acc.iter_mut().zip(values(r)) {
            *a += x;
        }
    }
    assert_eq!(acc[0], 0.0);
    for v in &out {
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, acc.map(f32::to_bits));
    }
}

#[test]
fn all_gather_returns_every_ranks_bytes_by_rank() {
    let out = run_ranks(3, |mut g| {
        let mine = vec![g.rank() as u8; g.rank() * 2];
        g.all_gather(&mine).unwrap()
    });
    for parts in out {
        assert_eq!(parts, vec![vec![], vec![1, 1], vec![2, 2, 2, 2]]);
    }
}

#[test]
fn gradients_are_averaged_bucket_by_bucket() {
    // Three parameters of 2, 3 and 1 values, 8-byte buckets: three buckets
    // in reverse order, the middle parameter alone in a bucket of its own.
    let plan =
        BucketPlan::from_sizes(&[(ParamId(0), 8), (ParamId(1), 12), (ParamId(2), 4)], 8).unwrap();
    assert_eq!(plan.buckets.len(), 3);
    let out = run_ranks(2, move |mut g| {
        let r = g.rank() as f32;
        let mut grads = Gradients::new();
        grads
            .accumulate(ParamId(0), Tensor::from_vec(vec![r, 2.0 * r], [2]).unwrap())
            .unwrap();
        grads
            .accumulate(ParamId(2), Tensor::from_vec(vec![4.0 + r], [1]).unwrap())
            .unwrap();
        g.average_host_gradients(&mut grads, &plan).unwrap();
        let get = |i| grads.get(ParamId(i)).map(|t| t.to_vec::<f32>().unwrap());
        (get(0), get(1), get(2))
    });
    for (a, b, c) in out {
        assert_eq!(a, Some(vec![0.5, 1.0]));
        assert_eq!(b, None, "no gradient stays none");
        assert_eq!(c, Some(vec![4.5]));
    }
}

#[test]
fn a_failing_rank_stops_every_rank_in_a_collective_with_its_message() {
    let out = run_ranks(3, |mut g| {
        if g.rank() == 2 {
            g.fail("CUDA out of memory");
            return None;
        }
        let mut v = vec![1.0];
        Some(g.all_reduce_sum(&mut v).unwrap_err().to_string())
    });
    for e in out.into_iter().flatten() {
        assert!(e.contains("rank 2 failed: CUDA out of memory"), "{e}");
    }
}

#[test]
fn a_rank_that_exits_silently_is_named() {
    let out = run_ranks(2, |mut g| {
        if g.rank() == 1 {
            return None; // dropped: the connection closes
        }
        Some(g.all_gather(b"x").unwrap_err().to_string())
    });
    let e = out[0].as_ref().unwrap();
    assert!(e.contains("rank 1") && e.contains("exited"), "{e}");
}
