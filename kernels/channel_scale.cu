// Channel scale, the last step of squeeze-and-excitation (ops/channel_scale.rs
// is the reference): y[n, r, c] = x[n, r, c] g[n, c] over each sample's
// H*W rows, in the row-parallel layout (common.cuh) with blockIdx.z the
// sample, so every thread loads its gates once and streams float4 rows.
//
// The backward is ONE pass over dy and x: dx = dy g, and dg[n, c] =
// sum over rows of dy x accumulated in registers, merged in the block and
// added to dg (zeroed by the host) with one atomic per channel and block.
// Composed from a broadcasting multiply and a reduction it read dy and x
// twice and wrote dy x in between.

// This thread's gates g[n, ch .. ch + V).
template <int V>
__device__ __forceinline__ void cs_gates(const MtRowsParams& p, const MtRowsLane& l, const float* __restrict__ g,
                                         float (&s)[4]) {
#pragma unroll
    for (int j = 0; j < V; ++j) s[j] = g[blockIdx.z * p.c + l.ch + j];
}

template <int V>
__device__ void cs_forward_body(const MtRowsParams& p, const float* __restrict__ x, const float* __restrict__ g,
                                float* __restrict__ y) {
    const MtRowsLane l = mt_rows_lane(p);
    if (!l.active) return;
    const u64 off = (u64)blockIdx.z * p.rows * p.c;
    float s[4];
    cs_gates<V>(p, l, g, s);
#pragma unroll 4
    for (u64 r = l.r0; r < l.r1; r += l.step) {
        float v[4];
        mt_load<V>(x + off + r * p.c + l.ch, v);
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] *= s[j];
        mt_store<V>(y + off + r * p.c + l.ch, v);
    }
}

extern "C" __global__ void cs_forward(MtRowsParams p, const float* __restrict__ x, const float* __restrict__ g,
                                      float* __restrict__ y) {
    if (p.vec == 4)
        cs_forward_body<4>(p, x, g, y);
    else
        cs_forward_body<1>(p, x, g, y);
}

// dx (skipped when null) and dg (skipped when null).
template <int V>
__device__ void cs_backward_body(const MtRowsParams& p, const float* __restrict__ dy, const float* __restrict__ x,
                                 const float* __restrict__ g, float* __restrict__ dx, float* dg, float* sh) {
    const MtRowsLane l = mt_rows_lane(p);
    const u64 n = blockIdx.z, off = n * p.rows * p.c;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (l.active) {
        float s[4];
        cs_gates<V>(p, l, g, s);
#pragma unroll 4
        for (u64 r = l.r0; r < l.r1; r += l.step) {
            float d[4];
            mt_load<V>(dy + off + r * p.c + l.ch, d);
            if (dg) {
                float v[4];
                mt_load<V>(x + off + r * p.c + l.ch, v);
#pragma unroll
                for (int j = 0; j < V; ++j) acc[j] = fmaf(d[j], v[j], acc[j]);
            }
            if (dx) {
#pragma unroll
                for (int j = 0; j < V; ++j) d[j] *= s[j];
                mt_store<V>(dx + off + r * p.c + l.ch, d);
            }
        }
    }
    // dg null is uniform over the grid: no thread waits at a barrier alone.
    if (dg) mt_rows_atomic_sum<V>(l, acc, sh, dg + n * p.c + l.ch, 1.0f);
}

extern "C" __global__ void cs_backward(MtRowsParams p, const float* __restrict__ dy, const float* __restrict__ x,
                                       const float* __restrict__ g, float* __restrict__ dx, float* dg) {
    __shared__ float sh[MT_ROWS_THREADS * 4];
    if (p.vec == 4)
        cs_backward_body<4>(p, dy, x, g, dx, dg, sh);
    else
        cs_backward_body<1>(p, dy, x, g, dx, dg, sh);
}
