// Multi-head attention with an optional key-padding mask, forward and
// backward, flash style (ops/attention.rs is the reference): the [N, H, T, S]
// score and weight matrices are never stored. q and the output are
// [N, T, H, D], k and v [N, S, H, D]; mask [N·S] (0: a padded key, which gets
// weight exactly 0; null: every key is real); lse and delta [N, H, T].
//
// Forward keeps, per query row, the running maximum m and sum l of the
// exponentials (online softmax) and writes the output once, plus the row's
// log-sum-exp lse = m + ln l. Backward recomputes each weight from q, k and
// lse, p = exp(q·k·scale − lse), as FlashAttention-2 does: delta =
// rowsum(dO ∘ O) first, then one kernel per key tile (dK, dV, looping over
// query tiles) and one per query tile (dQ, looping over key tiles), so every
// gradient element is written once by one thread: no atomics, deterministic.
//
// Work split: a block owns ATT_TILE rows (queries, or keys for dK/dV) of one
// (sample, head); each row belongs to a group of G = AttnParams::group
// consecutive threads (a power of two, 16·G ≥ D, so D ≤ 128) and each thread
// of a group holds ATT_SLICE of the row's dims in registers: its chunks
// c = 0..3 of four dims start at dim (c·G + slot)·4, so a group reads one
// contiguous stretch of a shared row with float4 loads (no bank conflicts;
// the other groups read the same row, a broadcast). A dot product is the
// group's partial sums added by xor shuffles within the group. The other
// operand streams through shared memory in tiles of ATT_TILE rows × 16·G
// dims, zero past D, past the sequence and at padded keys, so garbage in a
// padded frame never meets a weight. Every thread runs every shuffle (rows
// past the end compute on zeros and write nothing), so a warp never
// diverges around one. Dynamic shared memory: 2·ATT_TILE·16·G + 2·ATT_TILE
// floats (attention_smem_bytes in ops/attention/cuda.rs).

#define ATT_TILE 32   // rows per block, and rows per streamed tile
#define ATT_SLICE 16  // dims per thread: four float4 chunks

struct AttnParams {
    u64 n, t, s, h, d;
    u32 group;    // threads per row G
    float scale;  // 1/√D
};

// The block's (sample, head) and the row this thread's group owns, for a
// grid of N·H·⌈len/ATT_TILE⌉ blocks over rows of length `len` (T or S).
struct AttRow {
    u64 n, hh, row;
    u32 slot;  // this thread's place in its group
};

__device__ __forceinline__ AttRow att_row(const AttnParams& p, u64 len) {
    const u64 tiles = (len + ATT_TILE - 1) / ATT_TILE, bh = blockIdx.x / tiles;
    AttRow r;
    r.n = bh / p.h;
    r.hh = bh % p.h;
    r.row = (blockIdx.x % tiles) * ATT_TILE + threadIdx.x / p.group;
    r.slot = threadIdx.x % p.group;
    return r;
}

// The dim of element u of chunk c of a group's slot.
__device__ __forceinline__ u64 att_dim(const AttnParams& p, u32 slot, int c, int u) {
    return ((u64)c * p.group + slot) * 4 + u;
}

// Whether key j of sample n is real (inside the sequence and not padded).
__device__ __forceinline__ bool att_key_ok(const AttnParams& p, const float* mask, u64 n, u64 j) {
    return j < p.s && (!mask || mask[n * p.s + j] != 0.0f);
}

// This thread's dims of row `row` of head hh of sample n of x [N, len, H, D]
// into registers, zero past D and where `ok` is false.
__device__ __forceinline__ void att_load_regs(const AttnParams& p, const float* x, u64 len, u64 n, u64 hh,
                                              u64 row, u32 slot, bool ok, float (&r)[ATT_SLICE]) {
    const float* src = x + ((n * len + row) * p.h + hh) * p.d;
#pragma unroll
    for (int c = 0; c < 4; ++c)
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const u64 e = att_dim(p, slot, c, u);
            r[c * 4 + u] = ok && e < p.d ? src[e] : 0.0f;
        }
}

// The same dims of a shared tile row (16·G floats, 16-byte aligned).
__device__ __forceinline__ void att_shared_regs(const AttnParams& p, const float* row, u32 slot,
                                                float (&r)[ATT_SLICE]) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        const float4 v = *reinterpret_cast<const float4*>(row + att_dim(p, slot, c, 0));
        r[c * 4] = v.x;
        r[c * 4 + 1] = v.y;
        r[c * 4 + 2] = v.z;
        r[c * 4 + 3] = v.w;
    }
}

// Rows r0 .. r0 + ATT_TILE of head hh of sample n of x [N, len, H, D] into
// tile [ATT_TILE][16·G], zero past D, past `len` and (keys, mask given) at
// padded keys. The whole block calls it between barriers.
__device__ __forceinline__ void att_load_tile(const AttnParams& p, const float* x, u64 len, u64 n, u64 hh,
                                              u64 r0, const float* mask, float* tile) {
    const u64 w = (u64)ATT_SLICE * p.group;
    for (u64 idx = threadIdx.x; idx < ATT_TILE * w; idx += blockDim.x) {
        const u64 r = r0 + idx / w, e = idx % w;
        const bool ok = r < len && e < p.d && (!mask || mask[n * len + r] != 0.0f);
        tile[idx] = ok ? x[((n * len + r) * p.h + hh) * p.d + e] : 0.0f;
    }
}

// The dot product of two rows held by a group, every thread of it getting the sum.
__device__ __forceinline__ float att_group_dot(const AttnParams& p, const float (&a)[ATT_SLICE],
                                               const float (&b)[ATT_SLICE]) {
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < ATT_SLICE; ++e) s = fmaf(a[e], b[e], s);
    for (u32 o = 1; o < p.group; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    return s;
}

__device__ __forceinline__ void att_axpy(float a, const float (&x)[ATT_SLICE], float (&y)[ATT_SLICE]) {
#pragma unroll
    for (int e = 0; e < ATT_SLICE; ++e) y[e] = fmaf(a, x[e], y[e]);
}

// This thread's dims of a row of out [N, len, H, D] = r·a (rows < len only).
__device__ __forceinline__ void att_store(const AttnParams& p, float* out, u64 len, const AttRow& w,
                                          const float (&r)[ATT_SLICE], float a) {
    if (w.row >= len) return;
    float* dst = out + ((w.n * len + w.row) * p.h + w.hh) * p.d;
#pragma unroll
    for (int c = 0; c < 4; ++c)
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const u64 e = att_dim(p, w.slot, c, u);
            if (e < p.d) dst[e] = r[c * 4 + u] * a;
        }
}

// Key tile j0 .. j0 + ATT_TILE of k and v into ks and vs, with ok = 1 at
// real keys; the barriers around it let no thread read a half-loaded tile
// or overwrite one still being read.
__device__ __forceinline__ void att_load_keys(const AttnParams& p, const AttRow& r, u64 j0, const float* k,
                                              const float* v, const float* mask, float* ks, float* vs, float* ok) {
    __syncthreads();
    att_load_tile(p, k, p.s, r.n, r.hh, j0, mask, ks);
    att_load_tile(p, v, p.s, r.n, r.hh, j0, mask, vs);
    if (threadIdx.x < ATT_TILE) ok[threadIdx.x] = att_key_ok(p, mask, r.n, j0 + threadIdx.x) ? 1.0f : 0.0f;
    __syncthreads();
}

// out = softmax over real keys of q·kᵀ·scale, times v; lse per query row
// (+∞ where the sample has no key: its output is 0 and every weight
// exp(s − lse) is 0). Blocks over (n, head, query tile).
extern "C" __global__ void attention_forward(AttnParams p, const float* __restrict__ q, const float* __restrict__ k,
                                             const float* __restrict__ v, const float* __restrict__ mask,
                                             float* __restrict__ out, float* __restrict__ lse) {
    MT_DYNAMIC_SMEM(att_smem);
    const u64 w = (u64)ATT_SLICE * p.group;
    float* ks = reinterpret_cast<float*>(att_smem);
    float* vs = ks + ATT_TILE * w;
    float* ok = vs + ATT_TILE * w;  // 1: key j0 + j is real
    const AttRow r = att_row(p, p.t);
    const float inf = __int_as_float(0x7f800000);
    float qi[ATT_SLICE], o[ATT_SLICE], vj[ATT_SLICE];
    att_load_regs(p, q, p.t, r.n, r.hh, r.row, r.slot, r.row < p.t, qi);
#pragma unroll
    for (int e = 0; e < ATT_SLICE; ++e) o[e] = 0.0f;
    float m = -inf, l = 0.0f;
    for (u64 j0 = 0; j0 < p.s; j0 += ATT_TILE) {
        att_load_keys(p, r, j0, k, v, mask, ks, vs, ok);
        float sc[ATT_TILE];
        float mt = -inf;
#pragma unroll
        for (int j = 0; j < ATT_TILE; ++j) {
            float kj[ATT_SLICE];
            att_shared_regs(p, ks + j * w, r.slot, kj);
            sc[j] = att_group_dot(p, qi, kj) * p.scale;
            if (ok[j] != 0.0f) mt = fmaxf(mt, sc[j]);
        }
        const float mn = fmaxf(m, mt);
        if (mn == -inf) continue;  // no real key yet: nothing to add
        const float a = expf(m - mn);  // 0 on the first real key (m = −∞)
        l *= a;
#pragma unroll
        for (int e = 0; e < ATT_SLICE; ++e) o[e] *= a;
#pragma unroll
        for (int j = 0; j < ATT_TILE; ++j) {
            const float pj = ok[j] != 0.0f ? expf(sc[j] - mn) : 0.0f;
            l += pj;
            att_shared_regs(p, vs + j * w, r.slot, vj);
            att_axpy(pj, vj, o);
        }
        m = mn;
    }
    att_store(p, out, p.t, r, o, l > 0.0f ? 1.0f / l : 0.0f);
    if (r.slot == 0 && r.row < p.t) lse[(r.n * p.h + r.hh) * p.t + r.row] = l > 0.0f ? m + logf(l) : inf;
}

// delta[(n·H + h)·T + i] = Σ_e dO·O over row i of head h of sample n: a
// warp per row, grid-stride.
extern "C" __global__ void attention_backward_delta(AttnParams p, const float* __restrict__ g,
                                                    const float* __restrict__ out, float* __restrict__ delta) {
    const int lane = threadIdx.x % MT_WARP, warps = blockDim.x / MT_WARP;
    const u64 rows = p.n * p.h * p.t;
    for (u64 r = (u64)blockIdx.x * warps + threadIdx.x / MT_WARP; r < rows; r += (u64)gridDim.x * warps) {
        const u64 n = r / (p.h * p.t), hh = (r / p.t) % p.h, i = r % p.t;
        const u64 base = ((n * p.t + i) * p.h + hh) * p.d;
        float s = 0.0f;
        for (u64 e = lane; e < p.d; e += MT_WARP) s = fmaf(g[base + e], out[base + e], s);
        s = mt_warp_sum(s);
        if (lane == 0) delta[r] = s;
    }
}

// Query tile i0 .. i0 + ATT_TILE of q and dO into qs and gs, with lse (+∞
// past T, so every weight there is 0) and delta (0 past T).
__device__ __forceinline__ void att_load_queries(const AttnParams& p, const AttRow& r, u64 i0, const float* q,
                                                 const float* g, const float* lse, const float* delta, float* qs,
                                                 float* gs, float* ls, float* ds) {
    att_load_tile(p, q, p.t, r.n, r.hh, i0, nullptr, qs);
    att_load_tile(p, g, p.t, r.n, r.hh, i0, nullptr, gs);
    if (threadIdx.x < ATT_TILE) {
        const u64 i = i0 + threadIdx.x, at = (r.n * p.h + r.hh) * p.t + i;
        ls[threadIdx.x] = i < p.t ? lse[at] : __int_as_float(0x7f800000);
        ds[threadIdx.x] = i < p.t ? delta[at] : 0.0f;
    }
}

// dK and dV of a key tile, over every query: with p = exp(s − lse),
// dv_j = Σ_i p·dO_i and dk_j = scale·Σ_i p·(dO_i·v_j − delta_i)·q_i; 0 at
// padded keys. Blocks over (n, head, key tile).
extern "C" __global__ void attention_backward_kv(AttnParams p, const float* __restrict__ q,
                                                 const float* __restrict__ k, const float* __restrict__ v,
                                                 const float* __restrict__ mask, const float* __restrict__ g,
                                                 const float* __restrict__ lse, const float* __restrict__ delta,
                                                 float* __restrict__ dk, float* __restrict__ dv) {
    MT_DYNAMIC_SMEM(att_smem);
    const u64 w = (u64)ATT_SLICE * p.group;
    float* qs = reinterpret_cast<float*>(att_smem);
    float* gs = qs + ATT_TILE * w;
    float* ls = gs + ATT_TILE * w;
    float* ds = ls + ATT_TILE;
    const AttRow r = att_row(p, p.s);
    const bool real = att_key_ok(p, mask, r.n, r.row);
    float kj[ATT_SLICE], vj[ATT_SLICE], dkj[ATT_SLICE], dvj[ATT_SLICE], x[ATT_SLICE];
    att_load_regs(p, k, p.s, r.n, r.hh, r.row, r.slot, real, kj);
    att_load_regs(p, v, p.s, r.n, r.hh, r.row, r.slot, real, vj);
#pragma unroll
    for (int e = 0; e < ATT_SLICE; ++e) dkj[e] = dvj[e] = 0.0f;
    for (u64 i0 = 0; i0 < p.t; i0 += ATT_TILE) {
        __syncthreads();  // the previous tile has been read
        att_load_queries(p, r, i0, q, g, lse, delta, qs, gs, ls, ds);
        __syncthreads();
#pragma unroll 4
        for (int i = 0; i < ATT_TILE; ++i) {
            att_shared_regs(p, qs + i * w, r.slot, x);
            const float s = att_group_dot(p, x, kj) * p.scale;
            const float pij = real ? expf(s - ls[i]) : 0.0f;
            float gi[ATT_SLICE];
            att_shared_regs(p, gs + i * w, r.slot, gi);
            const float dp = att_group_dot(p, gi, vj);
            att_axpy(pij, gi, dvj);
            att_axpy(pij * (dp - ds[i]), x, dkj);
        }
    }
    att_store(p, dk, p.s, r, dkj, p.scale);
    att_store(p, dv, p.s, r, dvj, 1.0f);
}

// dQ of a query tile, over every key: dq_i = scale·Σ_j p·(dO_i·v_j −
// delta_i)·k_j. Blocks over (n, head, query tile).
extern "C" __global__ void attention_backward_q(AttnParams p, const float* __restrict__ q,
                                                const float* __restrict__ k, const float* __restrict__ v,
                                                const float* __restrict__ mask, const float* __restrict__ g,
                                                const float* __restrict__ lse, const float* __restrict__ delta,
                                                float* __restrict__ dq) {
    MT_DYNAMIC_SMEM(att_smem);
    const u64 w = (u64)ATT_SLICE * p.group;
    float* ks = reinterpret_cast<float*>(att_smem);
    float* vs = ks + ATT_TILE * w;
    float* ok = vs + ATT_TILE * w;
    const AttRow r = att_row(p, p.t);
    const bool in = r.row < p.t;
    const u64 at = (r.n * p.h + r.hh) * p.t + r.row;
    const float li = in ? lse[at] : __int_as_float(0x7f800000), di = in ? delta[at] : 0.0f;
    float qi[ATT_SLICE], gi[ATT_SLICE], dqi[ATT_SLICE], x[ATT_SLICE];
    att_load_regs(p, q, p.t, r.n, r.hh, r.row, r.slot, in, qi);
    att_load_regs(p, g, p.t, r.n, r.hh, r.row, r.slot, in, gi);
#pragma unroll
    for (int e = 0; e < ATT_SLICE; ++e) dqi[e] = 0.0f;
    for (u64 j0 = 0; j0 < p.s; j0 += ATT_TILE) {
        att_load_keys(p, r, j0, k, v, mask, ks, vs, ok);
#pragma unroll 4
        for (int j = 0; j < ATT_TILE; ++j) {
            att_shared_regs(p, ks + j * w, r.slot, x);
            const float s = att_group_dot(p, qi, x) * p.scale;
            const float pij = ok[j] != 0.0f ? expf(s - li) : 0.0f;
            float vj[ATT_SLICE];
            att_shared_regs(p, vs + j * w, r.slot, vj);
            const float dp = att_group_dot(p, gi, vj);
            att_axpy(pij * (dp - di), x, dqi);
        }
    }
    att_store(p, dq, p.t, r, dqi, p.scale);
}
