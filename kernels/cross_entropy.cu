// Softmax cross-entropy with ignored rows, class weights and label smoothing,
// loss and gradient in one launch (ops/loss/cross_entropy.rs is the reference).
//
// Row i (label y_i >= 0) contributes sum_c a_c (lse_i - z_ic) with
// a_c = (1 - eps) w[y] [c = y] + (eps / C) w[c]; the host passes the total
// weight's inverse 1/W (W = sum of w[y_i] over valid rows; labels live on
// the host). One warp per row; rows' losses meet by atomicAdd in `loss`,
// which the host zeroed.

struct CrossEntropyParams {
    u64 rows;
    u64 cols;
    float eps;
    float inv_w;
    float sum_w;  // sum over classes of w[c]
    int has_grad;
};

#define CE_WARPS 8

extern "C" __global__ void cross_entropy_fused(CrossEntropyParams p, const float* __restrict__ z,
                                               const float* __restrict__ labels, const float* __restrict__ w,
                                               float* __restrict__ loss, float* __restrict__ grad) {
    const int lane = threadIdx.x % MT_WARP;
    const float smooth = p.eps / (float)p.cols;
    float block_loss = 0.0f;  // lane 0 of each warp accumulates its rows
    for (u64 r = (u64)blockIdx.x * CE_WARPS + threadIdx.x / MT_WARP; r < p.rows; r += (u64)gridDim.x * CE_WARPS) {
        const float* zr = z + r * p.cols;
        const float lf = labels[r];
        if (lf < 0.0f) {  // ignored row: no loss, zero gradient
            if (p.has_grad)
                for (u64 c = lane; c < p.cols; c += MT_WARP) grad[r * p.cols + c] = 0.0f;
            continue;
        }
        const u64 y = (u64)lf;
        float m = -__int_as_float(0x7f800000);
        for (u64 c = lane; c < p.cols; c += MT_WARP) m = fmaxf(m, zr[c]);
        m = mt_warp_max(m);
        float s = 0.0f;
        for (u64 c = lane; c < p.cols; c += MT_WARP) s += expf(zr[c] - m);
        const float lse = m + logf(mt_warp_sum(s));
        const float wy = (1.0f - p.eps) * w[y];
        const float a_sum = wy + smooth * p.sum_w;
        // sum_c a_c (lse - z_c) = a_sum * lse - sum_c a_c z_c
        float az = 0.0f;
        for (u64 c = lane; c < p.cols; c += MT_WARP) {
            const float a = smooth * w[c] + (c == y ? wy : 0.0f);
            az += a * zr[c];
            if (p.has_grad) grad[r * p.cols + c] = (a_sum * expf(zr[c] - lse) - a) * p.inv_w;
        }
        az = mt_warp_sum(az);
        if (lane == 0) block_loss += (a_sum * lse - az) * p.inv_w;
    }
    if (lane == 0 && block_loss != 0.0f) atomicAdd(loss, block_loss);
}
