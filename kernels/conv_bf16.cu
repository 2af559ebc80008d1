// conv2d fprop in bf16 on tensor cores: implicit GEMM over NHWC with f32
// accumulation (issue 10, first lever; not wired into training yet).
//
//   y[n,p,q,k] = sum over (r, s, c) of x[n, p sh - ph + r dh, q sw - pw + s dw, c] w[k, r, s, c]
//   GEMM view: M = N*P*Q rows, N = K columns, K = R*S*C reduction
//
// Inputs are bf16 (unsigned short bits) with C % 8 == 0 (the launcher pads
// the 3-channel stem to 8 with zeros), so every aligned 8-element step of the
// reduction lies inside one (r, s) tap and is 16 contiguous bytes of both x
// and w: one cp.async each. Groups = 1 only (ops/conv/bf16.rs refuses others;
// ConvParams.groups and .splits are unused here).
//
// Block tile 128 (M) x 64 (N) x 32 (K), 4 warps of 64 x 32 each, 3-stage
// cp.async pipeline. Shared rows are padded from 32 to 40 bf16 (80 bytes) so
// the 8 row addresses of an ldmatrix fall into 8 different 16-byte bank
// groups (80 i mod 128 for i = 0..7 are all distinct): conflict-free without
// an XOR swizzle. Fragments: ldmatrix.x4 for A (16x16 row-major) and for
// B stored [n][k] (two n8 tiles per x4), mma.sync m16n8k16 row.col.
//
// Output: f32 (conv_bf16_fprop_f32: what the f32 training path and its batch
// norm consume today) or bf16 (conv_bf16_fprop_bf16: the bf16-activation
// dataflow issue 10 aims at, half the store bytes). Both add an optional f32
// bias. Indices are 32-bit: the host refuses larger tensors.

typedef unsigned short bf16;

#define CB_BM 128
#define CB_BN 64
#define CB_BK 32
#define CB_LD 40  // padded shared row, in bf16
#define CB_STAGES 3
#define CB_THREADS 128

// ---- sm_80 PTX: asynchronous copies, ldmatrix, bf16 mma ---------------
// scripts/cuda_emu/shim.h defines MT_CUDA_EMU and emulates these five
// functions (same signatures) with the PTX ISA's fragment layouts.
#ifndef MT_CUDA_EMU
__device__ __forceinline__ u32 mt_smem_addr(const void* p) {
    u32 a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// Copies `bytes` (0 or 16) from global `src` to shared `dst` and zero-fills
// the rest of the 16: bytes = 0 is how padding and tails become zeros.
__device__ __forceinline__ void mt_cp_async16(void* dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(mt_smem_addr(dst)), "l"(src), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mt_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void mt_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i,
// r[i] gets row lane/4, columns 2(lane%4) and 2(lane%4)+1 of matrix i.
__device__ __forceinline__ void mt_ldmatrix_x4(u32 (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(mt_smem_addr(p))
                 : "memory");
}

// d (16x8 f32) += a (16x16 bf16, row) * b (16x8 bf16, col).
__device__ __forceinline__ void mt_mma_bf16_16816(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

// Stores one output element as f32 or bf16.
__device__ __forceinline__ void cb_store(float* y, u32 i, float v) { y[i] = v; }
__device__ __forceinline__ void cb_store(bf16* y, u32 i, float v) { y[i] = mt_f32_to_bf16(v); }

template <class Out>
__device__ __forceinline__ void conv_bf16_fprop_body(const ConvParams& p, const bf16* __restrict__ x,
                                                     const bf16* __restrict__ wt, const float* __restrict__ bias,
                                                     Out* __restrict__ y) {
    __shared__ __align__(16) bf16 As[CB_STAGES][CB_BM][CB_LD];
    __shared__ __align__(16) bf16 Bs[CB_STAGES][CB_BN][CB_LD];
    const int t = threadIdx.x, lane = t % 32, warp = t / 32;
    const int M = p.n * p.p * p.q, N = p.k, K = p.r * p.s * p.c;
    const int m0 = blockIdx.x * CB_BM, n0 = blockIdx.y * CB_BN;

    // Loaders: this thread copies 16-byte chunk kc of the 32-wide K slice for
    // tile rows t/4 + 32 l (4 rows of A, 2 of B). Its output pixels are
    // decoded once; a_img < 0 marks a row past M (zero-filled).
    const int kc = t % 4, lrow = t / 4;
    int a_img[4], a_h0[4], a_w0[4];
#pragma unroll
    for (int l = 0; l < 4; ++l) {
        const int row = m0 + lrow + 32 * l;
        a_img[l] = -1;
        a_h0[l] = a_w0[l] = 0;
        if (row < M) {
            const int qq = row % p.q, rest = row / p.q;
            a_img[l] = (rest / p.p) * p.h * p.w * p.c;
            a_h0[l] = (rest % p.p) * p.sh - p.ph;
            a_w0[l] = qq * p.sw - p.pw;
        }
    }
    auto load_tile = [&](int stage, int kt) {
        const int gk = kt * CB_BK + kc * 8;
        const bool kin = gk < K;
        const int c = gk % p.c, rs = gk / p.c;
        const int hoff = (rs / p.s) * p.dh, woff = (rs % p.s) * p.dw;
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            const int hh = a_h0[l] + hoff, ww = a_w0[l] + woff;
            const bool ok = kin && a_img[l] >= 0 && hh >= 0 && hh < p.h && ww >= 0 && ww < p.w;
            const bf16* src = ok ? x + a_img[l] + (hh * p.w + ww) * p.c + c : x;
            mt_cp_async16(&As[stage][lrow + 32 * l][kc * 8], src, ok ? 16 : 0);
        }
#pragma unroll
        for (int l = 0; l < 2; ++l) {
            const int col = n0 + lrow + 32 * l;
            const bool ok = kin && col < N;
            mt_cp_async16(&Bs[stage][lrow + 32 * l][kc * 8], ok ? wt + col * K + gk : wt, ok ? 16 : 0);
        }
    };

    // Warp (wm, wn) owns rows wm*64.. and columns wn*32.. of the block tile:
    // 4 m16 by 4 n8 mma tiles.
    const int wm = warp % 2, wn = warp / 2;
    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    const int KT = (K + CB_BK - 1) / CB_BK;
    // Prologue: stages 0..S-2 in flight. Every iteration commits exactly one
    // group (empty past the end), so wait<S-2> always means "tile kt landed".
#pragma unroll
    for (int s = 0; s < CB_STAGES - 1; ++s) {
        if (s < KT) load_tile(s, s);
        mt_cp_async_commit();
    }
    for (int kt = 0; kt < KT; ++kt) {
        mt_cp_async_wait<CB_STAGES - 2>();
        // Tile kt is visible to all, and every warp is done with tile kt-1,
        // whose stage the prefetch below overwrites.
        __syncthreads();
        const int next = kt + CB_STAGES - 1;
        if (next < KT) load_tile(next % CB_STAGES, next);
        mt_cp_async_commit();

        const int st = kt % CB_STAGES;
#pragma unroll
        for (int kk = 0; kk < CB_BK; kk += 16) {
            u32 a[4][4], b[4][2];
            // A: lanes 0-15 address rows 0-15 at k, lanes 16-31 the same rows at k+8.
#pragma unroll
            for (int i = 0; i < 4; ++i)
                mt_ldmatrix_x4(a[i], &As[st][wm * 64 + i * 16 + lane % 16][kk + (lane / 16) * 8]);
            // B: matrices (n 0-7, k), (n 0-7, k+8), (n 8-15, k), (n 8-15, k+8).
#pragma unroll
            for (int j2 = 0; j2 < 2; ++j2) {
                u32 r[4];
                mt_ldmatrix_x4(r, &Bs[st][wn * 32 + j2 * 16 + lane % 8 + (lane / 16) * 8][kk + ((lane / 8) % 2) * 8]);
                b[2 * j2][0] = r[0];
                b[2 * j2][1] = r[1];
                b[2 * j2 + 1][0] = r[2];
                b[2 * j2 + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) mt_mma_bf16_16816(acc[i][j], a[i], b[j]);
        }
    }

    // Accumulator e of tile (i, j): row g + 8 (e / 2), column 2 (lane % 4) + e % 2, g = lane / 4.
    const int g = lane / 4, tg = lane % 4;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int row = m0 + wm * 64 + i * 16 + g + 8 * (e / 2);
                const int col = n0 + wn * 32 + j * 8 + 2 * tg + e % 2;
                if (row < M && col < N)
                    cb_store(y, (u32)row * N + col, acc[i][j][e] + (p.has_bias ? bias[col] : 0.0f));
            }
}

// One entry per output type: the launcher loads kernels by their extern "C"
// names, which cannot be templates.
extern "C" __global__ void __launch_bounds__(CB_THREADS) conv_bf16_fprop_f32(ConvParams p,
                                                                            const bf16* __restrict__ x,
                                                                            const bf16* __restrict__ wt,
                                                                            const float* __restrict__ bias,
                                                                            float* __restrict__ y) {
    conv_bf16_fprop_body(p, x, wt, bias, y);
}

extern "C" __global__ void __launch_bounds__(CB_THREADS) conv_bf16_fprop_bf16(ConvParams p,
                                                                             const bf16* __restrict__ x,
                                                                             const bf16* __restrict__ wt,
                                                                             const float* __restrict__ bias,
                                                                             bf16* __restrict__ y) {
    conv_bf16_fprop_body(p, x, wt, bias, y);
}

// ---- f32 <-> bf16 conversions for the launcher ------------------------
struct Bf16PadParams {
    u64 rows;
    int c;   // channels of the f32 rows
    int cp;  // channels of the bf16 rows (>= c; the extra ones are zero)
};

// dst[row, ch] = bf16(src[row, ch]) for ch < c, 0 for c <= ch < cp.
extern "C" __global__ void f32_to_bf16_pad(Bf16PadParams p, const float* __restrict__ src, bf16* __restrict__ dst) {
    MT_FOR_EACH(i, p.rows * p.cp) {
        const u64 row = i / p.cp;
        const int ch = (int)(i - row * p.cp);
        dst[i] = ch < p.c ? mt_f32_to_bf16(src[row * p.c + ch]) : (bf16)0;
    }
}

// dst[i] = f32(src[i]) over p.rows * p.cp elements (p.c unused): exact.
extern "C" __global__ void bf16_to_f32(Bf16PadParams p, const bf16* __restrict__ src, float* __restrict__ dst) {
    MT_FOR_EACH(i, p.rows * p.cp) dst[i] = mt_bf16_to_f32(src[i]);
}
