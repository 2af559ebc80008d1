// Multi-head attention with a key-padding mask, forward and backward
// (ops/attention.rs is the reference). q and the output are [N, T, H, D],
// k and v [N, S, H, D], attention weights [N, H, T, S]; mask [N·S] (0: a
// padded key, which gets weight exactly 0 and is never read).
//
// Two kinds of kernel: a warp per (n, head, query) row for the row-wise work
// (scores and masked softmax; the softmax backward), and a thread per output
// element for the weighted sums over rows (output, dq, dk, dv), so no
// atomics are needed and every result is written once.

struct AttnParams {
    u64 n, t, s, h, d;
    float scale;     // 1/√D
    int transposed;  // attention_mix: 0 sums over keys, 1 over queries
};

#define ATT_WARPS 8

__device__ __forceinline__ float att_dot(const float* a, const float* b, u64 d) {
    float s = 0.0f;
    for (u64 e = 0; e < d; ++e) s = fmaf(a[e], b[e], s);
    return s;
}

// probs[r] = softmax over unmasked keys of q_i·k_j·scale, 0 at masked keys
// (all 0 when a sample has no key). Row r = (n·H + head)·T + i.
extern "C" __global__ void attention_probs(AttnParams p, const float* __restrict__ q,
                                           const float* __restrict__ k, const float* __restrict__ mask,
                                           float* __restrict__ probs) {
    const int lane = threadIdx.x % MT_WARP;
    const u64 rows = p.n * p.h * p.t;
    for (u64 r = (u64)blockIdx.x * ATT_WARPS + threadIdx.x / MT_WARP; r < rows; r += (u64)gridDim.x * ATT_WARPS) {
        const u64 n = r / (p.h * p.t), hh = (r / p.t) % p.h, i = r % p.t;
        const float* qi = q + ((n * p.t + i) * p.h + hh) * p.d;
        float* pr = probs + r * p.s;
        float m = -__int_as_float(0x7f800000);
        for (u64 j = lane; j < p.s; j += MT_WARP) {
            if (mask[n * p.s + j] == 0.0f) continue;
            pr[j] = att_dot(qi, k + ((n * p.s + j) * p.h + hh) * p.d, p.d) * p.scale;
            m = fmaxf(m, pr[j]);
        }
        m = mt_warp_max(m);
        float z = 0.0f;
        for (u64 j = lane; j < p.s; j += MT_WARP) {
            if (mask[n * p.s + j] == 0.0f) continue;
            pr[j] = expf(pr[j] - m);
            z += pr[j];
        }
        z = mt_warp_sum(z);
        const float inv = z > 0.0f ? 1.0f / z : 0.0f;
        for (u64 j = lane; j < p.s; j += MT_WARP) pr[j] = mask[n * p.s + j] == 0.0f ? 0.0f : pr[j] * inv;
    }
}

// Softmax backward per row: with dp_j = g_i·v_j, ds_j = p_j (dp_j − Σ_l p_l dp_l)·scale
// (the gradient of the scaled score), 0 at masked keys.
extern "C" __global__ void attention_grad_scores(AttnParams p, const float* __restrict__ g,
                                                 const float* __restrict__ v, const float* __restrict__ mask,
                                                 const float* __restrict__ probs, float* __restrict__ ds) {
    const int lane = threadIdx.x % MT_WARP;
    const u64 rows = p.n * p.h * p.t;
    for (u64 r = (u64)blockIdx.x * ATT_WARPS + threadIdx.x / MT_WARP; r < rows; r += (u64)gridDim.x * ATT_WARPS) {
        const u64 n = r / (p.h * p.t), hh = (r / p.t) % p.h, i = r % p.t;
        const float* gi = g + ((n * p.t + i) * p.h + hh) * p.d;
        const float* pr = probs + r * p.s;
        float* dr = ds + r * p.s;
        float mean = 0.0f;
        for (u64 j = lane; j < p.s; j += MT_WARP) {
            if (mask[n * p.s + j] == 0.0f) continue;
            dr[j] = att_dot(gi, v + ((n * p.s + j) * p.h + hh) * p.d, p.d);
            mean += pr[j] * dr[j];
        }
        mean = mt_warp_sum(mean);
        for (u64 j = lane; j < p.s; j += MT_WARP)
            dr[j] = mask[n * p.s + j] == 0.0f ? 0.0f : pr[j] * (dr[j] - mean) * p.scale;
    }
}

// Weighted sums with w [N, H, T, S]: not transposed, out [N, T, H, D] =
// Σ over unmasked keys j of w[.., i, j]·x[n, j, head] (x: [N, S, H, D]; the
// output from v, dq from k); transposed, out [N, S, H, D] = Σ over queries
// i of w[.., i, j]·x[n, i, head] (x: [N, T, H, D]; dk from q, dv from g),
// 0 at masked keys.
extern "C" __global__ void attention_mix(AttnParams p, const float* __restrict__ w, const float* __restrict__ x,
                                         const float* __restrict__ mask, float* __restrict__ out) {
    const u64 rows = p.transposed ? p.s : p.t, over = p.transposed ? p.t : p.s;
    MT_FOR_EACH(idx, p.n * rows * p.h * p.d) {
        const u64 e = idx % p.d, hh = (idx / p.d) % p.h, a = (idx / (p.d * p.h)) % rows;
        const u64 n = idx / (p.d * p.h * rows);
        const float* wn = w + n * p.h * p.t * p.s + hh * p.t * p.s;
        const float* xn = x + n * over * p.h * p.d + hh * p.d + e;
        float acc = 0.0f;
        if (p.transposed) {
            if (mask[n * p.s + a] != 0.0f)
                for (u64 i = 0; i < over; ++i) acc = fmaf(wn[i * p.s + a], xn[i * p.h * p.d], acc);
        } else {
            for (u64 j = 0; j < over; ++j)
                if (mask[n * p.s + j] != 0.0f) acc = fmaf(wn[a * p.s + j], xn[j * p.h * p.d], acc);
        }
        out[idx] = acc;
    }
}
