// Masked concordance-correlation loss for [N, D] predictions in ONE launch
// (ops/loss/ccc.rs is the reference): per column j over the rows whose
// target is not `invalid`,
//   CCC_j = 2 cov / (var_p + var_t + (mean_p - mean_t)^2),
//   loss = sum over defined columns of (1 - CCC_j) / D,
// and, when `grad` is not null, dloss/dpred in the same launch.
//
// Bandwidth: the data (2 x N x D floats in, N x D out) is far larger than
// L2 at the sizes that matter, so the cost is the passes over it.
//  1. ONE statistics pass: per column, the count and the sums of dp, dt,
//     dp^2, dt^2, dp dt with dp = p - kp, dt = t - kt, shifted by row 0's
//     values (kt = 0 where row 0 is invalid). Moments from shifted sums lose
//     only (mean - shift)^2 / var to cancellation, and the shift lies within
//     the data, so this matches two-pass centred sums without their second
//     read. Per-thread sums in f32 (tens of
//     values each), block sums in f32, the grid's in double.
//  2. One grid barrier; every block adds all blocks' partials in double, so
//     all agree on the statistics.
//  3. The gradient pass reads the inputs again, last unit first, so it starts
//     on what L2 still holds from the end of pass 1.
// Traffic: 2 reads of pred and target + 1 write: 5 N D floats (a separate
// centring pass would make it 7).
// Two kernels (statistics, then gradient) would move the same bytes; the
// cooperative launch keeps loss and gradient one fused launch and the
// per-thread shifts and column constants in registers across the barrier.
// D | 4 (valence/arousal: D = 2) loads float4 units of 4/D rows; other D up
// to CCC_MAX_D load rows of D scalars.

#define CCC_MAX_D 8
#define CCC_SUMS 6  // count, dp, dt, dp^2, dt^2, dp dt

struct CccParams {
    u64 n;  // rows
    u64 d;  // columns, <= CCC_MAX_D
    float invalid;
    int has_grad;
};

template <int E>
__device__ __forceinline__ void ccc_load(const float* p, float (&v)[E]) {
    if (E == 4) {
        const float4 t = *reinterpret_cast<const float4*>(p);
        v[0] = t.x; v[1] = t.y; v[2 % E] = t.z; v[3 % E] = t.w;
    } else {
#pragma unroll
        for (int k = 0; k < E; ++k) v[k] = p[k];
    }
}

template <int E>
__device__ __forceinline__ void ccc_store(float* p, const float (&v)[E]) {
    if (E == 4) {
        float4 t;
        t.x = v[0]; t.y = v[1]; t.z = v[2 % E]; t.w = v[3 % E];
        *reinterpret_cast<float4*>(p) = t;
    } else {
#pragma unroll
        for (int k = 0; k < E; ++k) p[k] = v[k];
    }
}

template <int D>
__device__ __forceinline__ void ccc_add(float (&acc)[CCC_SUMS * D], int j, float pv, float tv, const float (&kp)[D],
                                        const float (&kt)[D], float invalid) {
    if (tv == invalid) return;
    const float dp = pv - kp[j], dt = tv - kt[j];
    acc[j] += 1.0f;
    acc[D + j] += dp;
    acc[2 * D + j] += dt;
    acc[3 * D + j] = fmaf(dp, dp, acc[3 * D + j]);
    acc[4 * D + j] = fmaf(dt, dt, acc[4 * D + j]);
    acc[5 * D + j] = fmaf(dp, dt, acc[5 * D + j]);
}

// Column constants of the gradient dloss/dp = a ((t - mt) - c (p - mt)).
struct CccGrad {
    float a, c, mt;
};

// Shared scratch: per-warp partials, the cross-block reduction, the totals.
struct CccShared {
    float warp[32][CCC_SUMS * CCC_MAX_D];
    double red[1024];
    double tot[CCC_SUMS * CCC_MAX_D];
};

template <int D>
__device__ void ccc_body(const CccParams& p, const float* __restrict__ pred, const float* __restrict__ target,
                         float* __restrict__ loss, float* __restrict__ grad, float* part, u32* counter,
                         CccShared& sh) {
    constexpr int E = (4 % D == 0) ? 4 : D;  // elements per unit (whole rows)
    constexpr int Q = CCC_SUMS * D;
    const u64 units = p.n * D / E, tail_row = units * E / D;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    const u64 first = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    float kp[D], kt[D], acc[Q];
#pragma unroll
    for (int j = 0; j < D; ++j) {
        kp[j] = p.n > 0 ? pred[j] : 0.0f;
        const float t0 = p.n > 0 ? target[j] : p.invalid;
        kt[j] = t0 != p.invalid ? t0 : 0.0f;
    }
#pragma unroll
    for (int q = 0; q < Q; ++q) acc[q] = 0.0f;

    // Pass 1: shifted sums.
#pragma unroll 2
    for (u64 u = first; u < units; u += stride) {
        float pv[E], tv[E];
        ccc_load<E>(pred + u * E, pv);
        ccc_load<E>(target + u * E, tv);
#pragma unroll
        for (int k = 0; k < E; ++k) ccc_add<D>(acc, k % D, pv[k], tv[k], kp, kt, p.invalid);
    }
    if (first == 0)  // rows that fill no whole unit (N odd with D = 2)
        for (u64 r = tail_row; r < p.n; ++r)
#pragma unroll
            for (int j = 0; j < D; ++j) ccc_add<D>(acc, j, pred[r * D + j], target[r * D + j], kp, kt, p.invalid);

    // Block sums: warp shuffles, then one thread per sum over the warps.
    const u32 lane = threadIdx.x % MT_WARP, warp = threadIdx.x / MT_WARP, warps = blockDim.x / MT_WARP;
#pragma unroll
    for (int q = 0; q < Q; ++q) {
        const float s = mt_warp_sum(acc[q]);
        if (lane == 0) sh.warp[warp][q] = s;
    }
    __syncthreads();
    if (threadIdx.x < (u32)Q) {
        float s = 0.0f;
        for (u32 w = 0; w < warps; ++w) s += sh.warp[w][threadIdx.x];
        part[(u64)blockIdx.x * CCC_SUMS * CCC_MAX_D + threadIdx.x] = s;
    }
    mt_grid_barrier(counter, 1);

    // Grid sums in double: thread t adds blocks t / Q, t / Q + groups, ...
    // of sum t % Q, then one thread per sum adds the groups.
    const u32 groups = blockDim.x / Q, q0 = threadIdx.x % Q, g0 = threadIdx.x / Q;
    double s = 0.0;
    if (g0 < groups)
        for (u32 b = g0; b < gridDim.x; b += groups)
            s += (double)((volatile float*)part)[(u64)b * CCC_SUMS * CCC_MAX_D + q0];
    sh.red[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x < (u32)Q) {
        double t = 0.0;
        for (u32 g = 0; g < groups; ++g) t += sh.red[g * Q + threadIdx.x];
        sh.tot[threadIdx.x] = t;
    }
    __syncthreads();

    // CCC per column; undefined (n < 2 or a zero denominator) adds 0 and no gradient.
    CccGrad cg[D];
    double sum = 0.0;
#pragma unroll
    for (int j = 0; j < D; ++j) {
        const double n = sh.tot[j];
        cg[j].a = 0.0f;
        cg[j].c = 0.0f;
        cg[j].mt = 0.0f;
        if (n < 2.0) continue;
        const double mdp = sh.tot[D + j] / n, mdt = sh.tot[2 * D + j] / n;
        const double vp = fmax(sh.tot[3 * D + j] / n - mdp * mdp, 0.0);
        const double vt = fmax(sh.tot[4 * D + j] / n - mdt * mdt, 0.0);
        const double cov = sh.tot[5 * D + j] / n - mdp * mdt;
        const double mp = kp[j] + mdp, mt = kt[j] + mdt, diff = mp - mt;
        const double den = vp + vt + diff * diff;
        if (!(den > 0.0)) continue;
        const double c = 2.0 * cov / den;
        cg[j].a = (float)(-2.0 / (n * den) / D);
        cg[j].c = (float)c;
        cg[j].mt = (float)mt;
        sum += 1.0 - c;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) loss[0] = (float)(sum / D);
    if (!p.has_grad) return;

    // Pass 3: the gradient, zero on invalid rows; units last to first.
#pragma unroll 2
    for (u64 i = first; i < units; i += stride) {
        const u64 u = units - 1 - i;
        float pv[E], tv[E];
        ccc_load<E>(pred + u * E, pv);
        ccc_load<E>(target + u * E, tv);
#pragma unroll
        for (int k = 0; k < E; ++k) {
            const CccGrad& q = cg[k % D];
            pv[k] = tv[k] != p.invalid ? q.a * ((tv[k] - q.mt) - q.c * (pv[k] - q.mt)) : 0.0f;
        }
        ccc_store<E>(grad + u * E, pv);
    }
    if (first == 0)
        for (u64 r = tail_row; r < p.n; ++r)
#pragma unroll
            for (int j = 0; j < D; ++j) {
                const float t = target[r * D + j];
                grad[r * D + j] = t != p.invalid ? cg[j].a * ((t - cg[j].mt) - cg[j].c * (pred[r * D + j] - cg[j].mt)) : 0.0f;
            }
}

// `part` holds gridDim.x * CCC_SUMS * CCC_MAX_D floats, `counter` is zeroed
// before the launch; blockDim.x is a multiple of 32, at most 1024, and at
// least CCC_SUMS * d. Any d up to CCC_MAX_D; its register count is that of
// the widest case (124 for d = 8: one 512-thread block per SM).
extern "C" __global__ void ccc_loss_fused(CccParams p, const float* __restrict__ pred,
                                          const float* __restrict__ target, float* __restrict__ loss,
                                          float* __restrict__ grad, float* part, u32* counter) {
    __shared__ CccShared sh;
    switch (p.d) {
        case 1: ccc_body<1>(p, pred, target, loss, grad, part, counter, sh); break;
        case 2: ccc_body<2>(p, pred, target, loss, grad, part, counter, sh); break;
        case 3: ccc_body<3>(p, pred, target, loss, grad, part, counter, sh); break;
        case 4: ccc_body<4>(p, pred, target, loss, grad, part, counter, sh); break;
        case 5: ccc_body<5>(p, pred, target, loss, grad, part, counter, sh); break;
        case 6: ccc_body<6>(p, pred, target, loss, grad, part, counter, sh); break;
        case 7: ccc_body<7>(p, pred, target, loss, grad, part, counter, sh); break;
        default: ccc_body<8>(p, pred, target, loss, grad, part, counter, sh); break;
    }
}

// The same for d = 2 (valence, arousal) only, compiled on its own so that it
// gets the registers of that case alone and more blocks per SM.
extern "C" __global__ void ccc_loss_fused_d2(CccParams p, const float* __restrict__ pred,
                                             const float* __restrict__ target, float* __restrict__ loss,
                                             float* __restrict__ grad, float* part, u32* counter) {
    __shared__ CccShared sh;
    ccc_body<2>(p, pred, target, loss, grad, part, counter, sh);
}
