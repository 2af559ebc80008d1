// Batch norm over channels-last activations seen as [M, C] (ops/batch_norm.rs
// is the reference), forward and backward.
//
// Per-channel reductions use (32, 8) blocks: threadIdx.x walks 32
// consecutive channels (coalesced in NHWC), threadIdx.y and blockIdx.y split
// the M rows. Statistics are Welford states per thread, merged in the block,
// published per block-row and merged in double by bn_finalize (Chan et al.'s
// pairwise update), so no precision is lost to a sum of squares.

struct BnParams {
    u64 m;       // rows (N*H*W)
    u64 c;       // channels
    u64 splits;  // gridDim.y of the reduction kernels
    float eps;
    float momentum;
    int training;
    int pad;
};

__device__ __forceinline__ void bn_merge(float& n, float& mean, float& m2, float nb, float meanb, float m2b) {
    const float nn = n + nb;
    if (nb == 0.0f) return;
    const float delta = meanb - mean;
    mean += delta * (nb / nn);
    m2 += m2b + delta * delta * (n * nb / nn);
    n = nn;
}

// ws[(blockIdx.y * c + ch) * 3 + {0, 1, 2}] = (count, mean, M2) of this block-row's rows.
extern "C" __global__ void bn_stats(BnParams p, const float* __restrict__ x, float* __restrict__ ws) {
    __shared__ float sn[8][33], smean[8][33], sm2[8][33];
    const u64 ch = (u64)blockIdx.x * 32 + threadIdx.x;
    float n = 0.0f, mean = 0.0f, m2 = 0.0f;
    if (ch < p.c) {
        for (u64 r = (u64)blockIdx.y * 8 + threadIdx.y; r < p.m; r += p.splits * 8) {
            const float v = x[r * p.c + ch];
            n += 1.0f;
            const float d = v - mean;
            mean += d / n;
            m2 += d * (v - mean);
        }
    }
    sn[threadIdx.y][threadIdx.x] = n;
    smean[threadIdx.y][threadIdx.x] = mean;
    sm2[threadIdx.y][threadIdx.x] = m2;
    __syncthreads();
    if (threadIdx.y == 0 && ch < p.c) {
        for (int k = 1; k < 8; ++k) bn_merge(n, mean, m2, sn[k][threadIdx.x], smean[k][threadIdx.x], sm2[k][threadIdx.x]);
        float* o = ws + ((u64)blockIdx.y * p.c + ch) * 3;
        o[0] = n;
        o[1] = mean;
        o[2] = m2;
    }
}

// One thread per channel: stats[ch] = mean, stats[c + ch] = 1/sqrt(var + eps),
// from the batch (training; running estimates updated in place) or from the
// running estimates (eval; ws unused).
extern "C" __global__ void bn_finalize(BnParams p, const float* __restrict__ ws, float* running_mean,
                                       float* running_var, float* __restrict__ stats) {
    const u64 ch = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= p.c) return;
    double mean, var;
    if (p.training) {
        double n = 0.0, mu = 0.0, m2 = 0.0;
        for (u64 s = 0; s < p.splits; ++s) {
            const float* q = ws + (s * p.c + ch) * 3;
            const double nb = q[0];
            if (nb == 0.0) continue;
            const double nn = n + nb, delta = (double)q[1] - mu;
            mu += delta * nb / nn;
            m2 += (double)q[2] + delta * delta * n * nb / nn;
            n = nn;
        }
        mean = mu;
        var = m2 / (double)p.m;
        const double mo = p.momentum, unbias = (double)p.m / (double)(p.m - 1);
        running_mean[ch] = (float)((1.0 - mo) * running_mean[ch] + mo * mean);
        running_var[ch] = (float)((1.0 - mo) * running_var[ch] + mo * var * unbias);
    } else {
        mean = running_mean[ch];
        var = running_var[ch];
    }
    stats[ch] = (float)mean;
    stats[p.c + ch] = (float)(1.0 / sqrt(var + (double)p.eps));
}

extern "C" __global__ void bn_apply(BnParams p, const float* __restrict__ x, const float* __restrict__ stats,
                                    const float* __restrict__ gamma, const float* __restrict__ beta,
                                    float* __restrict__ y) {
    MT_FOR_EACH(i, p.m * p.c) {
        const u64 j = i % p.c;
        y[i] = gamma[j] * (x[i] - stats[j]) * stats[p.c + j] + beta[j];
    }
}

// db[ch] += sum dy, dw[ch] += sum dy * xhat over the rows (db, dw zeroed by the host).
extern "C" __global__ void bn_backward_reduce(BnParams p, const float* __restrict__ g, const float* __restrict__ x,
                                              const float* __restrict__ stats, float* dw, float* db) {
    __shared__ float sg[8][33], sgh[8][33];
    const u64 ch = (u64)blockIdx.x * 32 + threadIdx.x;
    float a = 0.0f, b = 0.0f;
    if (ch < p.c) {
        const float mean = stats[ch], inv = stats[p.c + ch];
        for (u64 r = (u64)blockIdx.y * 8 + threadIdx.y; r < p.m; r += p.splits * 8) {
            const float gv = g[r * p.c + ch];
            a += gv;
            b += gv * (x[r * p.c + ch] - mean) * inv;
        }
    }
    sg[threadIdx.y][threadIdx.x] = a;
    sgh[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && ch < p.c) {
        for (int k = 1; k < 8; ++k) {
            a += sg[k][threadIdx.x];
            b += sgh[k][threadIdx.x];
        }
        atomicAdd(&db[ch], a);
        atomicAdd(&dw[ch], b);
    }
}

// dx = gamma inv_std (dy - sum(dy)/m - xhat sum(dy xhat)/m) in training; gamma inv_std dy in eval.
extern "C" __global__ void bn_backward_dx(BnParams p, const float* __restrict__ g, const float* __restrict__ x,
                                          const float* __restrict__ stats, const float* __restrict__ gamma,
                                          const float* __restrict__ dw, const float* __restrict__ db,
                                          float* __restrict__ dx) {
    const float inv_m = 1.0f / (float)p.m;
    MT_FOR_EACH(i, p.m * p.c) {
        const u64 j = i % p.c;
        const float inv = stats[p.c + j], k = gamma[j] * inv;
        if (p.training) {
            const float xhat = (x[i] - stats[j]) * inv;
            dx[i] = k * (g[i] - db[j] * inv_m - xhat * dw[j] * inv_m);
        } else {
            dx[i] = k * g[i];
        }
    }
}
