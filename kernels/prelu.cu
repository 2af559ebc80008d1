// PReLU over channels-last data seen as [rows, C] (ops/prelu.rs is the
// reference; a shared slope is C = 1 over every element): y = x where
// x > 0, a[c] x elsewhere.
//
// Every kernel walks the rows in the mt_rows_lane layout (common.cuh):
// coalesced float4 accesses across C, slopes loaded once per thread, no
// per-element index division.
//
// Backward: prelu_backward writes dx = dy or a dy, and the sum of dy x over
// x <= 0 per block-row into ws[block_row * c + ch] (merged in the block in
// a fixed order, no atomics) -> prelu_backward_finalize adds a channel's
// block-row partials in double, one block per channel. The slope gradient
// is therefore deterministic: the same inputs and layout give the same bits.
// Indices are 64-bit throughout.

struct PreluParams {
    u64 rows;    // elements / c
    u64 c;       // channels (1: a shared slope)
    u64 chunk;   // rows per block-row
    u64 splits;  // block-rows (gridDim.y)
    int vec;     // 4 when c % 4 == 0, else 1
    int pad;
};

__device__ __forceinline__ MtRowsLane prelu_lane(const PreluParams& p) {
    return mt_rows_lane(p.rows, p.c, p.vec, p.chunk, p.splits, 0);
}

template <int V>
__device__ __forceinline__ void prelu_slopes(const MtRowsLane& l, const float* __restrict__ a, float (&s)[4]) {
#pragma unroll
    for (int j = 0; j < V; ++j) s[j] = a[l.ch + j];
}

template <int V>
__device__ void prelu_forward_body(const PreluParams& p, const float* __restrict__ x, const float* __restrict__ a,
                                   float* __restrict__ y) {
    const MtRowsLane l = prelu_lane(p);
    if (!l.active) return;
    float s[4];
    prelu_slopes<V>(l, a, s);
#pragma unroll 4
    for (u64 r = l.r0; r < l.r1; r += l.step) {
        float v[4];
        mt_load<V>(x + r * p.c + l.ch, v);
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] = v[j] > 0.0f ? v[j] : s[j] * v[j];
        mt_store<V>(y + r * p.c + l.ch, v);
    }
}

extern "C" __global__ void prelu_forward(PreluParams p, const float* __restrict__ x, const float* __restrict__ a,
                                         float* __restrict__ y) {
    if (p.vec == 4)
        prelu_forward_body<4>(p, x, a, y);
    else
        prelu_forward_body<1>(p, x, a, y);
}

// dx (skipped when null) and the block-row partials ws (skipped when null).
template <int V>
__device__ void prelu_backward_body(const PreluParams& p, const float* __restrict__ dy, const float* __restrict__ x,
                                    const float* __restrict__ a, float* __restrict__ dx, float* __restrict__ ws,
                                    float* sh) {
    const MtRowsLane l = prelu_lane(p);
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (l.active) {
        float s[4];
        prelu_slopes<V>(l, a, s);
#pragma unroll 4
        for (u64 r = l.r0; r < l.r1; r += l.step) {
            const u64 i = r * p.c + l.ch;
            float d[4], v[4];
            mt_load<V>(dy + i, d);
            mt_load<V>(x + i, v);
#pragma unroll
            for (int j = 0; j < V; ++j) {
                if (v[j] > 0.0f) continue;
                acc[j] = fmaf(d[j], v[j], acc[j]);
                d[j] *= s[j];
            }
            if (dx) mt_store<V>(dx + i, d);
        }
    }
    // ws null is uniform over the grid: no thread waits at a barrier alone.
    if (!ws || !mt_rows_block_sum<V>(l, acc, sh)) return;
#pragma unroll
    for (int j = 0; j < V; ++j) ws[l.block_row * p.c + l.ch + j] = acc[j];
}

extern "C" __global__ void prelu_backward(PreluParams p, const float* __restrict__ dy, const float* __restrict__ x,
                                          const float* __restrict__ a, float* __restrict__ dx,
                                          float* __restrict__ ws) {
    __shared__ float sh[MT_ROWS_THREADS * 4];
    if (p.vec == 4)
        prelu_backward_body<4>(p, dy, x, a, dx, ws, sh);
    else
        prelu_backward_body<1>(p, dy, x, a, dx, ws, sh);
}

// A block per channel: da[ch] = the sum of the channel's block-row partials, in double.
extern "C" __global__ void prelu_backward_finalize(PreluParams p, const float* __restrict__ ws,
                                                   float* __restrict__ da) {
    __shared__ double scratch[MT_WARP];
    const u64 ch = blockIdx.x;
    double s = 0.0;
    for (u64 k = threadIdx.x; k < p.splits; k += blockDim.x) s += ws[k * p.c + ch];
    s = mt_block_sum(s, scratch);
    if (threadIdx.x == 0) da[ch] = (float)s;
}
