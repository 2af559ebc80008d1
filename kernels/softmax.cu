// softmax / log_softmax over the last axis, forward and backward
// (ops/softmax.rs is the reference). One warp per row, rows grid-strided:
// class counts here are small (8 expressions, 12 AUs), and a warp keeps a
// row's three passes in L1.

struct SoftmaxParams {
    u64 rows;
    u64 cols;
    int log;  // 1: log_softmax
    int pad;
};

#define SM_WARPS 8

extern "C" __global__ void softmax_forward(SoftmaxParams p, const float* __restrict__ x, float* __restrict__ y) {
    const int lane = threadIdx.x % MT_WARP;
    const u64 first = (u64)blockIdx.x * SM_WARPS + threadIdx.x / MT_WARP;
    for (u64 r = first; r < p.rows; r += (u64)gridDim.x * SM_WARPS) {
        const float* xr = x + r * p.cols;
        float* yr = y + r * p.cols;
        float m = -__int_as_float(0x7f800000);  // -inf without math headers
        for (u64 c = lane; c < p.cols; c += MT_WARP) m = fmaxf(m, xr[c]);
        m = mt_warp_max(m);
        float s = 0.0f;
        for (u64 c = lane; c < p.cols; c += MT_WARP) s += expf(xr[c] - m);
        const float ls = logf(mt_warp_sum(s));
        for (u64 c = lane; c < p.cols; c += MT_WARP) {
            const float v = xr[c] - m - ls;
            yr[c] = p.log ? v : expf(v);
        }
    }
}

// From the saved output y: softmax dx = y * (g - <g, y>); log_softmax dx = g - exp(y) * sum(g).
extern "C" __global__ void softmax_backward(SoftmaxParams p, const float* __restrict__ y,
                                            const float* __restrict__ g, float* __restrict__ dx) {
    const int lane = threadIdx.x % MT_WARP;
    const u64 first = (u64)blockIdx.x * SM_WARPS + threadIdx.x / MT_WARP;
    for (u64 r = first; r < p.rows; r += (u64)gridDim.x * SM_WARPS) {
        const float* yr = y + r * p.cols;
        const float* gr = g + r * p.cols;
        float* dr = dx + r * p.cols;
        float s = 0.0f;
        for (u64 c = lane; c < p.cols; c += MT_WARP) s += p.log ? gr[c] : gr[c] * yr[c];
        s = mt_warp_sum(s);
        for (u64 c = lane; c < p.cols; c += MT_WARP)
            dr[c] = p.log ? gr[c] - expf(yr[c]) * s : yr[c] * (gr[c] - s);
    }
}
