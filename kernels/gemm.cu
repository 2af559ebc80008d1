// C[b] = op(A[b]) · op(B[b]) (+ bias over columns) (+ beta · C[b]) for f32:
// matmul, linear and bmm (ops/matmul.rs and ops/bmm.rs are the reference).
// Operands are addressed by element strides, so a transpose is only a swap
// of strides; C is contiguous [batch, m, n].
//
// Tiling (Boehm's SGEMM worklog, steps 4-6): the 128x128x8 block tile of
// common.cuh; this file only loads the tiles.
//
// Split-K: a product with few output tiles and a long K (the SE blocks'
// fully connected layers: [N, C] x [C, C/16] is one or two tiles with K up
// to 2048) would run on a handful of SMs. With splits > 1, blockIdx.z runs
// over (batch entry, K slice) and each block adds its partial product to C
// atomically: C is zeroed by the host first (beta 0) or accumulated onto
// (beta 1), and the first slice adds the bias.

#define G_BM MT_TILE
#define G_BN MT_TILE
#define G_BK MT_TK

struct GemmParams {
    u64 m, n, k;
    u64 rsa, csa, bsa;  // A: row, column, batch strides (in elements)
    u64 rsb, csb, bsb;
    u64 bsc;
    float beta;  // 0: C is written without being read
    int has_bias;
    u64 splits;   // K slices per batch entry (1: no split)
    u64 k_chunk;  // K per slice, a multiple of G_BK
};

extern "C" __global__ void __launch_bounds__(256, 2) gemm_f32(GemmParams p, const float* __restrict__ A,
                                                           const float* __restrict__ B,
                                                           const float* __restrict__ bias,
                                                           float* __restrict__ C) {
    __shared__ __align__(16) float As[G_BK][G_BM];
    __shared__ __align__(16) float Bs[G_BK][G_BN];
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const u64 m0 = (u64)blockIdx.y * G_BM, n0 = (u64)blockIdx.x * G_BN;
    const u64 entry = blockIdx.z / p.splits, slice = blockIdx.z % p.splits;
    const u64 k_begin = slice * p.k_chunk;
    const u64 k_len = min(p.k, k_begin + p.k_chunk) - k_begin;
    A += entry * p.bsa + k_begin * p.csa;
    B += entry * p.bsb + k_begin * p.rsb;
    C += entry * p.bsc;
    // Which index runs fastest across threads when loading a tile: the one
    // with unit stride in memory, so that the loads coalesce.
    const bool a_k_fast = p.csa == 1;
    const bool b_n_fast = p.csb == 1 || p.rsb != 1;

    // Each thread loads 4 elements of each tile per K step, always at the same
    // tile positions: their source pointers advance by G_BK columns of A
    // (rows of B) per step, and only the K bound changes.
    const float* a_src[4];
    const float* b_src[4];
    int a_kk[4], b_kk[4], a_dst[4], b_dst[4];
    bool a_ok[4], b_ok[4];
#pragma unroll
    for (int l = 0; l < 4; ++l) {
        const int idx = t + l * 256;
        const int r = a_k_fast ? idx / G_BK : idx % G_BM;
        a_kk[l] = a_k_fast ? idx % G_BK : idx / G_BM;
        a_dst[l] = a_kk[l] * G_BM + r;
        a_ok[l] = m0 + r < p.m;
        a_src[l] = A + (a_ok[l] ? (m0 + r) * p.rsa + a_kk[l] * p.csa : 0);
        const int c = b_n_fast ? idx % G_BN : idx / G_BK;
        b_kk[l] = b_n_fast ? idx / G_BN : idx % G_BK;
        b_dst[l] = b_kk[l] * G_BN + c;
        b_ok[l] = n0 + c < p.n;
        b_src[l] = B + (b_ok[l] ? (n0 + c) * p.csb + b_kk[l] * p.rsb : 0);
    }
    const u64 a_step = G_BK * p.csa, b_step = G_BK * p.rsb;

    float acc[8][8];
    mt_tile_zero(acc);

    for (u64 k0 = 0; k0 < k_len; k0 += G_BK) {
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            (&As[0][0])[a_dst[l]] = (a_ok[l] && k0 + a_kk[l] < k_len) ? *a_src[l] : 0.0f;
            (&Bs[0][0])[b_dst[l]] = (b_ok[l] && k0 + b_kk[l] < k_len) ? *b_src[l] : 0.0f;
            a_src[l] += a_step;
            b_src[l] += b_step;
        }
        __syncthreads();
        mt_tile_fma(As, Bs, acc, tx, ty);
        __syncthreads();
    }

    const bool split = p.splits > 1;
    if (split && slice == 0 && p.has_bias) {
        // The atomic store takes no bias: the first slice adds it here.
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const u64 gn = n0 + mt_tile_pos(j, tx, G_BN / 2);
            const float b = gn < p.n ? bias[gn] : 0.0f;
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[i][j] += b;
        }
    }
    mt_tile_store(acc, tx, ty, m0, n0, p.m, p.n, C, p.n, p.has_bias ? bias : nullptr, p.beta, split);
}
