// Channel scale, the last step of squeeze-and-excitation (ops/channel_scale.rs
// is the reference), optionally fused with the residual add and ReLU that
// end an SE block: y[n, r, c] = x[n, r, c] g[n, c] over each sample's
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

// With a residual `res` (the end of an SE residual block, fused): y =
// relu(x g + res) in the same pass. Composed, the scale, the add and the
// ReLU moved the activation 7 times (read x, write, read twice, write, read,
// write); fused, 3 times.
// y16 (skipped when null): y's bf16 copy, for the bf16 convolutions that
// read the block's output next.
template <int V>
__device__ void cs_forward_body(const MtRowsParams& p, const float* __restrict__ x, const float* __restrict__ g,
                                const float* __restrict__ res, float* __restrict__ y,
                                unsigned short* __restrict__ y16) {
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
        if (res) {
            float a[4];
            mt_load<V>(res + off + r * p.c + l.ch, a);
#pragma unroll
            for (int j = 0; j < V; ++j) v[j] = fmaxf(v[j] + a[j], 0.0f);
        }
        mt_store<V>(y + off + r * p.c + l.ch, v);
        if (y16) mt_store_bf16<V>(y16 + off + r * p.c + l.ch, v);
    }
}

// res null: y = x g.
extern "C" __global__ void cs_forward(MtRowsParams p, const float* __restrict__ x, const float* __restrict__ g,
                                      const float* __restrict__ res, float* __restrict__ y,
                                      unsigned short* __restrict__ y16) {
    if (p.vec == 4)
        cs_forward_body<4>(p, x, g, res, y, y16);
    else
        cs_forward_body<1>(p, x, g, res, y, y16);
}

// dx (skipped when null) and dg (skipped when null). With y, the fused
// forward's output: the gradient reaching x g + res is dz = dy where y > 0
// and 0 elsewhere (ReLU's convention at 0), written to dres (skipped when
// null); dx = dz g and dg = sum over rows of dz x, as without it.
template <int V>
__device__ void cs_backward_body(const MtRowsParams& p, const float* __restrict__ dy, const float* __restrict__ x,
                                 const float* __restrict__ g, const float* __restrict__ y, float* __restrict__ dx,
                                 float* dg, float* __restrict__ dres, float* sh) {
    const MtRowsLane l = mt_rows_lane(p);
    const u64 n = blockIdx.z, off = n * p.rows * p.c;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (l.active) {
        float s[4];
        cs_gates<V>(p, l, g, s);
#pragma unroll 4
        for (u64 r = l.r0; r < l.r1; r += l.step) {
            const u64 i = off + r * p.c + l.ch;
            float d[4];
            mt_load<V>(dy + i, d);
            if (y) {
                float o[4];
                mt_load<V>(y + i, o);
#pragma unroll
                for (int j = 0; j < V; ++j) d[j] = o[j] > 0.0f ? d[j] : 0.0f;
                if (dres) mt_store<V>(dres + i, d);
            }
            if (dg) {
                float v[4];
                mt_load<V>(x + i, v);
#pragma unroll
                for (int j = 0; j < V; ++j) acc[j] = fmaf(d[j], v[j], acc[j]);
            }
            if (dx) {
#pragma unroll
                for (int j = 0; j < V; ++j) d[j] *= s[j];
                mt_store<V>(dx + i, d);
            }
        }
    }
    // dg null is uniform over the grid: no thread waits at a barrier alone.
    if (dg) mt_rows_atomic_sum<V>(l, acc, sh, dg + n * p.c + l.ch, 1.0f);
}

extern "C" __global__ void cs_backward(MtRowsParams p, const float* __restrict__ dy, const float* __restrict__ x,
                                       const float* __restrict__ g, const float* __restrict__ y,
                                       float* __restrict__ dx, float* dg, float* __restrict__ dres) {
    __shared__ float sh[MT_ROWS_THREADS * 4];
    if (p.vec == 4)
        cs_backward_body<4>(p, dy, x, g, y, dx, dg, dres, sh);
    else
        cs_backward_body<1>(p, dy, x, g, y, dx, dg, dres, sh);
}
