// Masked concordance-correlation loss for [N, D] predictions in ONE launch
// (ops/loss/ccc.rs is the reference): per column j over the rows whose
// target is not `invalid`,
//   CCC_j = 2 cov / (var_p + var_t + (mean_p - mean_t)^2),
//   loss = sum over defined columns of (1 - CCC_j) / D,
// and, when `grad` is not null, dloss/dpred in the same launch.
//
// Cooperative launch, three phases over the data separated by grid
// barriers: (1) count and sums -> means, (2) centred sums (two-pass, like
// the reference, for accuracy) -> variances, covariance, CCC, (3) gradient.
// Each block publishes its partial sums; after a barrier every block adds
// all partials in double, so all blocks agree on the statistics.

#define CCC_MAX_D 8

struct CccParams {
    u64 n;  // rows
    u64 d;  // columns, <= CCC_MAX_D
    float invalid;
    int has_grad;
};

// Sums v[0..k) over the block, then over all blocks' published partials:
// `part` has room for gridDim.x * 3 * CCC_MAX_D floats per phase.
__device__ void ccc_grid_sums(float* v, int k, float* part, u32* counter, u32 phase,
                              double* total, float* scratch) {
    for (int q = 0; q < k; ++q) {
        const float s = mt_block_sum(v[q], scratch);
        if (threadIdx.x == 0) part[(u64)blockIdx.x * 3 * CCC_MAX_D + q] = s;
    }
    mt_grid_barrier(counter, phase);
    if (threadIdx.x < (unsigned)k) {
        double acc = 0.0;
        for (u32 b = 0; b < gridDim.x; ++b) acc += (double)((volatile float*)part)[(u64)b * 3 * CCC_MAX_D + threadIdx.x];
        total[threadIdx.x] = acc;
    }
    __syncthreads();
}

extern "C" __global__ void ccc_loss_fused(CccParams p, const float* __restrict__ pred,
                                          const float* __restrict__ target, float* __restrict__ loss,
                                          float* __restrict__ grad, float* part, u32* counter) {
    __shared__ float scratch[32];
    __shared__ double tot[3 * CCC_MAX_D];
    const int d = (int)p.d;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    const u64 first = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    float v[3 * CCC_MAX_D];

    // Phase 1: valid count, sum of predictions, sum of targets per column.
    for (int q = 0; q < 3 * d; ++q) v[q] = 0.0f;
    for (u64 i = first; i < p.n; i += stride)
        for (int j = 0; j < d; ++j) {
            const float t = target[i * d + j];
            if (t != p.invalid) {
                v[j] += 1.0f;
                v[d + j] += pred[i * d + j];
                v[2 * d + j] += t;
            }
        }
    ccc_grid_sums(v, 3 * d, part, counter, 1, tot, scratch);
    float cnt[CCC_MAX_D], mp[CCC_MAX_D], mt[CCC_MAX_D];
    for (int j = 0; j < d; ++j) {
        cnt[j] = (float)tot[j];
        mp[j] = cnt[j] > 0.0f ? (float)(tot[d + j] / tot[j]) : 0.0f;
        mt[j] = cnt[j] > 0.0f ? (float)(tot[2 * d + j] / tot[j]) : 0.0f;
    }
    __syncthreads();  // tot is rewritten below

    // Phase 2: centred sums of squares and cross products.
    for (int q = 0; q < 3 * d; ++q) v[q] = 0.0f;
    for (u64 i = first; i < p.n; i += stride)
        for (int j = 0; j < d; ++j) {
            const float t = target[i * d + j];
            if (t != p.invalid) {
                const float dp = pred[i * d + j] - mp[j], dt = t - mt[j];
                v[j] += dp * dp;
                v[d + j] += dt * dt;
                v[2 * d + j] += dp * dt;
            }
        }
    ccc_grid_sums(v, 3 * d, part + (u64)gridDim.x * 3 * CCC_MAX_D, counter, 2, tot, scratch);

    // CCC per column; undefined (n < 2 or a zero denominator) adds 0 and no gradient.
    float ccc[CCC_MAX_D], gscale[CCC_MAX_D];
    double sum = 0.0;
    for (int j = 0; j < d; ++j) {
        const double n = cnt[j], diff = (double)mp[j] - mt[j];
        const double den = n >= 2.0 ? (tot[j] + tot[d + j]) / n + diff * diff : 0.0;
        if (den > 0.0) {
            const double c = 2.0 * tot[2 * d + j] / n / den;
            ccc[j] = (float)c;
            gscale[j] = (float)(-2.0 / (n * den) / p.d);
            sum += 1.0 - c;
        } else {
            ccc[j] = 0.0f;
            gscale[j] = 0.0f;
        }
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) loss[0] = (float)(sum / p.d);
    if (!p.has_grad) return;

    // Phase 3: dloss/dp_i = -2/(n den D) ((t_i - mean_t) - CCC (p_i - mean_t)) on valid rows.
    for (u64 i = first; i < p.n; i += stride)
        for (int j = 0; j < d; ++j) {
            const float t = target[i * d + j];
            grad[i * d + j] = t != p.invalid
                ? gscale[j] * ((t - mt[j]) - ccc[j] * (pred[i * d + j] - mt[j]))
                : 0.0f;
        }
}
