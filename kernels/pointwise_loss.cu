// Losses that are a (masked) mean of per-element terms, with the gradient
// written in the same pass: BCE-with-logits with pos_weight (ops/loss/bce.rs),
// masked MSE (ops/loss/mse.rs) and the GAN terms (ops/loss/gan.rs).
//
// loss_partial writes the unnormalised gradient of each element and adds the
// term sum and the count into ws[0], ws[1] (zeroed by the host);
// loss_finalize turns them into the mean and writes the count (1 when it is
// 0: the gradient is all zero then) for backward, which scales by
// seed / count on the device (scale_by_device_scalar).

enum LossKind {
    L_BCE = 0,           // (1 - t) x + (1 + (pw - 1) t) softplus(-x)
    L_MSE = 1,           // (x - t)^2
    L_SOFTPLUS_NEG = 2,  // softplus(-x): BCE against 1
    L_SOFTPLUS_POS = 3,  // softplus(x): BCE against 0
    L_HINGE_REAL = 4,    // relu(1 - x)
    L_HINGE_FAKE = 5,    // relu(1 + x)
    L_NEG = 6            // -x
};

struct PointwiseLossParams {
    u64 n;
    u64 classes;      // pos_weight length (BCE)
    int kind;
    int has_target;
    float invalid;    // targets equal to this are skipped, when has_invalid
    int has_invalid;
    int count_all;    // divide by n instead of the valid count
    int has_grad;
};

__device__ __forceinline__ float pl_softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

__device__ __forceinline__ float pl_sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

extern "C" __global__ void loss_partial(PointwiseLossParams p, const float* __restrict__ x,
                                        const float* __restrict__ t, const float* __restrict__ pw,
                                        float* __restrict__ grad, float* ws) {
    __shared__ float scratch[32];
    float sum = 0.0f, count = 0.0f;
    MT_FOR_EACH(i, p.n) {
        const float xv = x[i], tv = p.has_target ? t[i] : 0.0f;
        const bool valid = !(p.has_invalid && tv == p.invalid);
        float f = 0.0f, d = 0.0f;
        if (valid) {
            switch (p.kind) {
                case L_BCE: {
                    const float k = 1.0f + (pw[i % p.classes] - 1.0f) * tv;
                    f = (1.0f - tv) * xv + k * pl_softplus(-xv);
                    d = (1.0f - tv) - k * pl_sigmoid(-xv);
                } break;
                case L_MSE: {
                    const float e = xv - tv;
                    f = e * e;
                    d = 2.0f * e;
                } break;
                case L_SOFTPLUS_NEG: f = pl_softplus(-xv); d = -pl_sigmoid(-xv); break;
                case L_SOFTPLUS_POS: f = pl_softplus(xv); d = pl_sigmoid(xv); break;
                case L_HINGE_REAL: f = fmaxf(1.0f - xv, 0.0f); d = xv < 1.0f ? -1.0f : 0.0f; break;
                case L_HINGE_FAKE: f = fmaxf(1.0f + xv, 0.0f); d = xv > -1.0f ? 1.0f : 0.0f; break;
                default: f = -xv; d = -1.0f; break;
            }
            sum += f;
        }
        if (valid || p.count_all) count += 1.0f;
        if (p.has_grad) grad[i] = d;
    }
    sum = mt_block_sum(sum, scratch);
    count = mt_block_sum(count, scratch);
    if (threadIdx.x == 0) {
        atomicAdd(&ws[0], sum);
        atomicAdd(&ws[1], count);  // exact: integers below 2^24 (the host checks n)
    }
}

extern "C" __global__ void loss_finalize(PointwiseLossParams p, const float* ws, float* loss, float* count_out) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        const float count = ws[1];
        loss[0] = count > 0.0f ? ws[0] / count : 0.0f;
        count_out[0] = count > 0.0f ? count : 1.0f;
    }
}
