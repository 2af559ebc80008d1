// conv2d over NHWC as implicit GEMM: fprop, dgrad and wgrad gather their
// GEMM operands straight from the activations (no im2col buffer) into the
// 128x128x8 shared-memory tiles of common.cuh (ops/conv.rs is the reference).
// Weights are [K, R, S, C/groups]; blockIdx.z is the group.
//
//   fprop  y[n,p,q,k]  M = N*P*Q   cols = K/g       sum over (r, s, c)
//   dgrad  dx[n,h,w,c] M = N*H*W   cols = C/g       sum over (r, s, k)
//   wgrad  dw[k,r,s,c] M = K/g     cols = R*S*C/g   sum over (n, p, q), split-K
//
// Every thread loads 4 elements of each tile per K step at fixed tile
// positions; what is fixed per thread (its output pixel, or its (r, s, c)
// column) is decoded once, the rest per step. Indices are 32-bit: the host
// refuses tensors of 2^31 elements or more.

extern "C" __global__ void __launch_bounds__(256, 2) conv_fprop(ConvParams p, const float* __restrict__ x,
                                                             const float* __restrict__ wt,
                                                             const float* __restrict__ bias, float* __restrict__ y) {
    __shared__ __align__(16) float As[MT_TK][MT_TILE];
    __shared__ __align__(16) float Bs[MT_TK][MT_TILE];
    const int t = threadIdx.x, tx = t % 16, ty = t / 16, grp = blockIdx.z;
    const int cg = p.c / p.groups, kg = p.k / p.groups;
    const int M = p.n * p.p * p.q, N = kg, K = p.r * p.s * cg;
    const int m0 = blockIdx.y * MT_TILE, n0 = blockIdx.x * MT_TILE;
    const int kk = t % MT_TK;  // both tiles: this thread's k offset, rows/cols t/8 + 32 l
    int a_base[4], a_h0[4], a_w0[4];
    const float* b_src[4];
#pragma unroll
    for (int l = 0; l < 4; ++l) {
        const int row = m0 + t / MT_TK + 32 * l;
        if (row < M) {
            const int qq = row % p.q, rest = row / p.q;
            a_base[l] = (rest / p.p) * p.h * p.w * p.c + grp * cg;
            a_h0[l] = (rest % p.p) * p.sh - p.ph;
            a_w0[l] = qq * p.sw - p.pw;
        } else {
            a_base[l] = -1;
        }
        const int col = n0 + t / MT_TK + 32 * l;
        b_src[l] = col < N ? wt + (grp * kg + col) * K + kk : nullptr;
    }
    float acc[8][8];
    mt_tile_zero(acc);
    for (int k0 = 0; k0 < K; k0 += MT_TK) {
        const int gk = k0 + kk;
        const bool kin = gk < K;
        const int c = gk % cg, rs = gk / cg;
        const int hoff = (rs / p.s) * p.dh, woff = (rs % p.s) * p.dw;
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            float v = 0.0f;
            const int hh = a_h0[l] + hoff, ww = a_w0[l] + woff;
            if (kin && a_base[l] >= 0 && hh >= 0 && hh < p.h && ww >= 0 && ww < p.w)
                v = x[a_base[l] + (hh * p.w + ww) * p.c + c];
            As[kk][t / MT_TK + 32 * l] = v;
            Bs[kk][t / MT_TK + 32 * l] = (kin && b_src[l]) ? b_src[l][k0] : 0.0f;
        }
        __syncthreads();
        mt_tile_fma(As, Bs, acc, tx, ty);
        __syncthreads();
    }
    mt_tile_store(acc, tx, ty, m0, n0, M, N, y + grp * kg, p.k, p.has_bias ? bias + grp * kg : nullptr, 0.0f,
                  false);
}

// dx[n,h,w,c] = sum over (r, s, k) of dy[n, (h + ph - r dh)/sh, (w + pw - s dw)/sw, k] w[k, r, s, c]
// where the divisions are exact and in range. Also conv_transpose2d's forward (with its bias).
extern "C" __global__ void __launch_bounds__(256, 2) conv_dgrad(ConvParams p, const float* __restrict__ dy,
                                                             const float* __restrict__ wt,
                                                             const float* __restrict__ bias, float* __restrict__ dx) {
    __shared__ __align__(16) float As[MT_TK][MT_TILE];
    __shared__ __align__(16) float Bs[MT_TK][MT_TILE];
    const int t = threadIdx.x, tx = t % 16, ty = t / 16, grp = blockIdx.z;
    const int cg = p.c / p.groups, kg = p.k / p.groups, rsn = p.r * p.s;
    const int M = p.n * p.h * p.w, N = cg, K = rsn * kg;
    const int m0 = blockIdx.y * MT_TILE, n0 = blockIdx.x * MT_TILE;
    // A: k offset t % 8, rows t/8 + 32 l (input pixels). B: column t % 128, k offsets t/128 + 2 l.
    const int a_kk = t % MT_TK;
    int a_base[4], a_hh[4], a_ww[4];
#pragma unroll
    for (int l = 0; l < 4; ++l) {
        const int row = m0 + t / MT_TK + 32 * l;
        if (row < M) {
            const int wi = row % p.w, rest = row / p.w;
            a_base[l] = (rest / p.h) * p.p * p.q * p.k + grp * kg;
            a_hh[l] = rest % p.h + p.ph;
            a_ww[l] = wi + p.pw;
        } else {
            a_base[l] = -1;
        }
    }
    const int col = n0 + t % MT_TILE;
    float acc[8][8];
    mt_tile_zero(acc);
    for (int k0 = 0; k0 < K; k0 += MT_TK) {
        {
            const int gk = k0 + a_kk;
            const int kk = gk % kg, rs = gk / kg;
            const int hoff = (rs / p.s) * p.dh, woff = (rs % p.s) * p.dw;
#pragma unroll
            for (int l = 0; l < 4; ++l) {
                float v = 0.0f;
                const int hp = a_hh[l] - hoff, wp = a_ww[l] - woff;
                if (gk < K && a_base[l] >= 0 && hp >= 0 && wp >= 0 && hp % p.sh == 0 && wp % p.sw == 0) {
                    const int pp = hp / p.sh, qq = wp / p.sw;
                    if (pp < p.p && qq < p.q) v = dy[a_base[l] + (pp * p.q + qq) * p.k + kk];
                }
                As[a_kk][t / MT_TK + 32 * l] = v;
            }
        }
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            const int bk = t / MT_TILE + 2 * l, gk = k0 + bk;
            float v = 0.0f;
            if (gk < K && col < N) {
                const int kk = gk % kg, rs = gk / kg;
                v = wt[((grp * kg + kk) * rsn + rs) * cg + col];
            }
            Bs[bk][t % MT_TILE] = v;
        }
        __syncthreads();
        mt_tile_fma(As, Bs, acc, tx, ty);
        __syncthreads();
    }
    mt_tile_store(acc, tx, ty, m0, n0, M, N, dx + grp * cg, p.c, p.has_bias ? bias + grp * cg : nullptr, 0.0f,
                  false);
}

// dw[k, r, s, c] = sum over (n, p, q) of dy[n, p, q, k] x[n, p sh - ph + r dh, q sw - pw + s dw, c].
// The (n, p, q) sum is split over gridDim.y / ceil(M / 128) slices whose
// partial tiles meet by atomicAdd in dw, which the host zeroed.
extern "C" __global__ void __launch_bounds__(256, 2) conv_wgrad(ConvParams p, const float* __restrict__ x,
                                                             const float* __restrict__ dy, float* dw) {
    __shared__ __align__(16) float As[MT_TK][MT_TILE];
    __shared__ __align__(16) float Bs[MT_TK][MT_TILE];
    const int t = threadIdx.x, tx = t % 16, ty = t / 16, grp = blockIdx.z;
    const int cg = p.c / p.groups, kg = p.k / p.groups;
    const int M = kg, N = p.r * p.s * cg, K = p.n * p.p * p.q;
    const int mtiles = (M + MT_TILE - 1) / MT_TILE;
    const int m0 = (blockIdx.y % mtiles) * MT_TILE, n0 = blockIdx.x * MT_TILE;
    const int split = blockIdx.y / mtiles;
    const int per = ((K + p.splits - 1) / p.splits + MT_TK - 1) / MT_TK * MT_TK;
    const int k_begin = split * per, k_end = min(K, k_begin + per);
    // Both tiles: fixed column t % 128 (A: output channel, B: (r, s, c)), k offsets t/128 + 2 l.
    const int arow = m0 + t % MT_TILE;
    const bool a_ok = arow < M;
    const int bcol = n0 + t % MT_TILE;
    const bool b_ok = bcol < N;
    const int bc = bcol % cg, brs = bcol / cg;
    const int b_hoff = (brs / p.s) * p.dh - p.ph, b_woff = (brs % p.s) * p.dw - p.pw;
    float acc[8][8];
    mt_tile_zero(acc);
    for (int k0 = k_begin; k0 < k_end; k0 += MT_TK) {
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            const int kk = t / MT_TILE + 2 * l, m = k0 + kk;
            As[kk][t % MT_TILE] = (a_ok && m < k_end) ? dy[m * p.k + grp * kg + arow] : 0.0f;
            float v = 0.0f;
            if (b_ok && m < k_end) {
                const int qq = m % p.q, rest = m / p.q;
                const int hh = (rest % p.p) * p.sh + b_hoff, ww = qq * p.sw + b_woff;
                if (hh >= 0 && hh < p.h && ww >= 0 && ww < p.w)
                    v = x[(((rest / p.p) * p.h + hh) * p.w + ww) * p.c + grp * cg + bc];
            }
            Bs[kk][t % MT_TILE] = v;
        }
        __syncthreads();
        mt_tile_fma(As, Bs, acc, tx, ty);
        __syncthreads();
    }
    mt_tile_store(acc, tx, ty, m0, n0, M, N, dw + (u64)grp * kg * N, N, nullptr, 0.0f, p.splits > 1);
}
