// C[b] = op(A[b]) · op(B[b]) (+ bias over columns) (+ beta · C[b]) for f32:
// matmul, linear and bmm (ops/matmul.rs and ops/bmm.rs are the reference).
// Operands are addressed by element strides, so a transpose is only a swap
// of strides; C is contiguous [batch, m, n].
//
// Tiling (Boehm's SGEMM worklog, steps 4-6): a 128x128 block tile of C,
// K in steps of 8 through shared memory, 256 threads each holding an 8x8
// register tile split 4+4 in both directions (rows ty*4 and 64+ty*4, columns
// likewise) so that the float4 reads of shared memory are conflict-free.

#define G_BM 128
#define G_BN 128
#define G_BK 8

struct GemmParams {
    u64 m, n, k;
    u64 rsa, csa, bsa;  // A: row, column, batch strides (in elements)
    u64 rsb, csb, bsb;
    u64 bsc;
    float beta;  // 0: C is written without being read
    int has_bias;
};

extern "C" __global__ void __launch_bounds__(256, 2) gemm_f32(GemmParams p, const float* __restrict__ A,
                                                           const float* __restrict__ B,
                                                           const float* __restrict__ bias,
                                                           float* __restrict__ C) {
    __shared__ __align__(16) float As[G_BK][G_BM];
    __shared__ __align__(16) float Bs[G_BK][G_BN];
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const u64 m0 = (u64)blockIdx.y * G_BM, n0 = (u64)blockIdx.x * G_BN;
    A += blockIdx.z * p.bsa;
    B += blockIdx.z * p.bsb;
    C += blockIdx.z * p.bsc;
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
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

    for (u64 k0 = 0; k0 < p.k; k0 += G_BK) {
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            (&As[0][0])[a_dst[l]] = (a_ok[l] && k0 + a_kk[l] < p.k) ? *a_src[l] : 0.0f;
            (&Bs[0][0])[b_dst[l]] = (b_ok[l] && k0 + b_kk[l] < p.k) ? *b_src[l] : 0.0f;
            a_src[l] += a_step;
            b_src[l] += b_step;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < G_BK; ++kk) {
            float a[8], b[8];
            const float4 a0 = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
            const float4 a1 = *reinterpret_cast<const float4*>(&As[kk][64 + ty * 4]);
            const float4 b0 = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
            const float4 b1 = *reinterpret_cast<const float4*>(&Bs[kk][64 + tx * 4]);
            a[0] = a0.x; a[1] = a0.y; a[2] = a0.z; a[3] = a0.w;
            a[4] = a1.x; a[5] = a1.y; a[6] = a1.z; a[7] = a1.w;
            b[0] = b0.x; b[1] = b0.y; b[2] = b0.z; b[3] = b0.w;
            b[4] = b1.x; b[5] = b1.y; b[6] = b1.z; b[7] = b1.w;
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const u64 gm = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
        if (gm >= p.m) continue;
        float* crow = C + gm * p.n;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const u64 gn = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
            if (gn >= p.n) continue;
            float v = acc[i][j];
            if (p.has_bias) v += bias[gn];
            crow[gn] = p.beta != 0.0f ? v + p.beta * crow[gn] : v;
        }
    }
}
