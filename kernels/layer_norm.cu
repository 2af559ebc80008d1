// Layer norm over the last axis, rows x d (ops/layer_norm.rs is the
// reference). One warp per row for the row statistics and dx (rows are
// token features: d in the hundreds); the weight and bias gradients are
// column sums over rows with the (32, 8)-block pattern of reduce.cu.

struct LayerNormParams {
    u64 rows;
    u64 d;
    u64 splits;  // gridDim.y of ln_backward_params
    float eps;
    int pad;
};

#define LN_WARPS 8

// stats[r] = mean, stats[rows + r] = 1/sqrt(var + eps), kept for backward.
extern "C" __global__ void ln_forward(LayerNormParams p, const float* __restrict__ x, const float* __restrict__ w,
                                      const float* __restrict__ b, float* __restrict__ y, float* __restrict__ stats) {
    const int lane = threadIdx.x % MT_WARP;
    for (u64 r = (u64)blockIdx.x * LN_WARPS + threadIdx.x / MT_WARP; r < p.rows; r += (u64)gridDim.x * LN_WARPS) {
        const float* xr = x + r * p.d;
        float s = 0.0f;
        for (u64 j = lane; j < p.d; j += MT_WARP) s += xr[j];
        const float mean = mt_warp_sum(s) / (float)p.d;
        float v = 0.0f;
        for (u64 j = lane; j < p.d; j += MT_WARP) {
            const float c = xr[j] - mean;
            v += c * c;
        }
        const float inv = rsqrtf(mt_warp_sum(v) / (float)p.d + p.eps);
        for (u64 j = lane; j < p.d; j += MT_WARP) y[r * p.d + j] = w[j] * (xr[j] - mean) * inv + b[j];
        if (lane == 0) {
            stats[r] = mean;
            stats[p.rows + r] = inv;
        }
    }
}

// With u = dy * w: dx = inv (u - mean(u) - xhat mean(u xhat)).
extern "C" __global__ void ln_backward_dx(LayerNormParams p, const float* __restrict__ g, const float* __restrict__ x,
                                          const float* __restrict__ w, const float* __restrict__ stats,
                                          float* __restrict__ dx) {
    const int lane = threadIdx.x % MT_WARP;
    for (u64 r = (u64)blockIdx.x * LN_WARPS + threadIdx.x / MT_WARP; r < p.rows; r += (u64)gridDim.x * LN_WARPS) {
        const float mean = stats[r], inv = stats[p.rows + r];
        const u64 o = r * p.d;
        float su = 0.0f, suh = 0.0f;
        for (u64 j = lane; j < p.d; j += MT_WARP) {
            const float u = g[o + j] * w[j];
            su += u;
            suh += u * (x[o + j] - mean) * inv;
        }
        su = mt_warp_sum(su) / (float)p.d;
        suh = mt_warp_sum(suh) / (float)p.d;
        for (u64 j = lane; j < p.d; j += MT_WARP)
            dx[o + j] = inv * (g[o + j] * w[j] - su - (x[o + j] - mean) * inv * suh);
    }
}

// dw[j] += sum_r dy xhat, db[j] += sum_r dy (dw, db zeroed by the host).
extern "C" __global__ void ln_backward_params(LayerNormParams p, const float* __restrict__ g,
                                              const float* __restrict__ x, const float* __restrict__ stats,
                                              float* dw, float* db) {
    __shared__ float sa[8][33], sb[8][33];
    const u64 j = (u64)blockIdx.x * 32 + threadIdx.x;
    float a = 0.0f, b = 0.0f;
    if (j < p.d) {
        for (u64 r = (u64)blockIdx.y * 8 + threadIdx.y; r < p.rows; r += p.splits * 8) {
            const float gv = g[r * p.d + j];
            a += gv * (x[r * p.d + j] - stats[r]) * stats[p.rows + r];
            b += gv;
        }
    }
    sa[threadIdx.y][threadIdx.x] = a;
    sb[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && j < p.d) {
        for (int k = 1; k < 8; ++k) {
            a += sa[k][threadIdx.x];
            b += sb[k][threadIdx.x];
        }
        atomicAdd(&dw[j], a);
        atomicAdd(&db[j], b);
    }
}
