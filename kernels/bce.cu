// Masked binary cross-entropy on logits with per-class positive weights
// (ops/loss/bce.rs is the reference): over elements whose target is not -1,
// mean of (1 - t) x + (1 + (pw - 1) t) softplus(-x), gradient
// ((1 - t) - (1 + (pw - 1) t) sigmoid(-x)) / count.
//
// bce_partial writes the unnormalised gradient and adds the loss sum and
// the valid count into ws[0], ws[1] (zeroed by the host); bce_finalize turns
// them into the mean loss and writes the count (1 when nothing is valid) to
// `count` for backward, which scales by seed / count on the device.

struct BceParams {
    u64 n;
    u64 classes;
    int has_grad;
    int pad;
};

__device__ __forceinline__ float bce_softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

__device__ __forceinline__ float bce_sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

extern "C" __global__ void bce_partial(BceParams p, const float* __restrict__ x, const float* __restrict__ t,
                                       const float* __restrict__ pw, float* __restrict__ grad, float* ws) {
    __shared__ float scratch[32];
    float sum = 0.0f, count = 0.0f;
    MT_FOR_EACH(i, p.n) {
        const float tv = t[i], xv = x[i];
        float g = 0.0f;
        if (tv != -1.0f) {
            const float k = 1.0f + (pw[i % p.classes] - 1.0f) * tv;
            sum += (1.0f - tv) * xv + k * bce_softplus(-xv);
            count += 1.0f;
            g = (1.0f - tv) - k * bce_sigmoid(-xv);
        }
        if (p.has_grad) grad[i] = g;
    }
    sum = mt_block_sum(sum, scratch);
    count = mt_block_sum(count, scratch);
    if (threadIdx.x == 0) {
        atomicAdd(&ws[0], sum);
        atomicAdd(&ws[1], count);  // exact: each block adds an integer below 2^24
    }
}

extern "C" __global__ void bce_finalize(BceParams p, const float* ws, float* loss, float* count_out) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        const float count = ws[1];
        loss[0] = count > 0.0f ? ws[0] / count : 0.0f;
        count_out[0] = count > 0.0f ? count : 1.0f;  // all masked: the gradient is already 0
    }
}
