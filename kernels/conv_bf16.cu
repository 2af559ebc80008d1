// conv2d in bf16 on tensor cores: implicit GEMM over NHWC with f32
// accumulation, the fprop (also the stride-1 dgrad over flipped weights, and
// the strided dgrad one stride phase at a time) and the wgrad (at the end of
// this file).
//
//   y[n,p,q,k] = sum over (r, s, c) of x[n, p sh - ph + r dh, q sw - pw + s dw, c] w[k, r, s, c]
//   GEMM view: M = N*P*Q rows, N = K columns, K = R*S*C reduction
//
// Inputs are bf16 (unsigned short bits) with C % 8 == 0 (the launcher pads
// the 3-channel stem to 8 with zeros), so every aligned 8-element step of the
// reduction lies inside one (r, s) tap and is 16 contiguous bytes of both x
// and w: one cp.async each. Groups = 1 only (ops/conv/bf16_layout.rs refuses others;
// ConvParams.groups and .splits are unused here).
//
// Block tile 128 (M) x 64 (N) x 32 (K), 4 warps of 64 x 32 each, 3-stage
// cp.async pipeline; the `_wide` entries take 128 (N) with 8 warps of the
// same shape, for 128 or more output columns: each A tile (the im2col
// gather) then serves twice the columns, a third fewer copies per mma, in
// 61440 bytes of dynamic shared memory (the narrow tile's 46080 fit the
// 48 KiB every kernel gets). Shared rows are padded from 32 to 40 bf16
// (80 bytes) so the 8 row addresses of an ldmatrix fall into 8 different 16-byte bank
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
#define CB_BK 32
#define CB_LD 40  // padded shared row, in bf16
#define CB_STAGES 3

// ---- sm_80 PTX: asynchronous copies, ldmatrix, bf16 mma ---------------
// scripts/cuda_emu/shim.h defines MT_CUDA_EMU and emulates these six
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

// The same four matrices read transposed: r[i] gets column lane/4, rows
// 2(lane%4) and 2(lane%4)+1 of matrix i (low half first).
__device__ __forceinline__ void mt_ldmatrix_x4_trans(u32 (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
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
// Stores two adjacent elements in one access (i even: 8- or 4-byte aligned).
__device__ __forceinline__ void cb_store2(float* y, u32 i, float v0, float v1) {
    *reinterpret_cast<float2*>(y + i) = make_float2(v0, v1);
}
__device__ __forceinline__ void cb_store2(bf16* y, u32 i, float v0, float v1) {
    *reinterpret_cast<u32*>(y + i) = (u32)mt_f32_to_bf16(v0) | ((u32)mt_f32_to_bf16(v1) << 16);
}

// A warp's share of a block tile: 4 x 4 mma tiles of 16 x 8 (64 x 32), f32.
typedef float CbAcc[4][4][4];

__device__ __forceinline__ void cb_zero(CbAcc& acc) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
}

// acc (64 x 32) += a (4 row fragments of 16 x 16) * b (4 column fragments of 16 x 8).
__device__ __forceinline__ void cb_mma_4x4(CbAcc& acc, const u32 (&a)[4][4], const u32 (&b)[4][2]) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mt_mma_bf16_16816(acc[i][j], a[i], b[j]);
}

// The two n8 column fragments of an ldmatrix.x4 r whose matrices are
// (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15): b[j], b[j + 1].
__device__ __forceinline__ void cb_split_b(u32 (&b)[4][2], int j, const u32 (&r)[4]) {
    b[j][0] = r[0];
    b[j][1] = r[1];
    b[j + 1][0] = r[2];
    b[j + 1][1] = r[3];
}

// The 3-stage cp.async pipeline of the tile kernels over KT tiles:
// load(stage, kt) issues tile kt's copies into `stage` (asked for in order
// kt = 0, 1, 2, ...), mma(stage) multiplies a landed stage. Every iteration
// commits exactly one group (empty past the end), so wait<S-2> always means
// "tile kt landed".
template <class Load, class Mma>
__device__ __forceinline__ void cb_pipeline(int KT, Load&& load, Mma&& mma) {
#pragma unroll
    for (int s = 0; s < CB_STAGES - 1; ++s) {
        if (s < KT) load(s, s);
        mt_cp_async_commit();
    }
    for (int kt = 0; kt < KT; ++kt) {
        mt_cp_async_wait<CB_STAGES - 2>();
        // Tile kt is visible to all, and every warp is done with tile kt-1,
        // whose stage the prefetch below overwrites.
        __syncthreads();
        const int next = kt + CB_STAGES - 1;
        if (next < KT) load(next % CB_STAGES, next);
        mt_cp_async_commit();
        mma(kt % CB_STAGES);
    }
}

// Output addressing policies of the fprop body: the offset in y of GEMM
// element (row, col). The fprop writes its rows in order, [N, P, Q, K].
struct CbRowMajor {
    __device__ __forceinline__ u32 operator()(const ConvParams& p, int row, int col) const {
        return (u32)row * p.k + col;
    }
    // What the output already holds and the result adds to: nothing.
    template <class Out>
    __device__ __forceinline__ float prior(const Out*, u32) const {
        return 0.0f;
    }
    template <class Out>
    __device__ __forceinline__ float2 prior2(const Out*, u32) const {
        return make_float2(0.0f, 0.0f);
    }
};

// WN warps along N (2: the 128 x 64 tile, 4: the wide 128 x 128), two along
// M, each 64 x 32; 64 WN threads; the shared memory is sized at launch.
template <int WN, class Out, class Addr>
__device__ __forceinline__ void conv_bf16_fprop_body(const ConvParams& p, const bf16* __restrict__ x,
                                                     const bf16* __restrict__ wt, const float* __restrict__ bias,
                                                     Out* __restrict__ y, const Addr& addr) {
    constexpr int BN = 32 * WN, PASS = 16 * WN;  // tile columns; tile rows one pass of the loaders covers
    MT_DYNAMIC_SMEM(cb_smem);
    auto As = reinterpret_cast<bf16 (*)[CB_BM][CB_LD]>(cb_smem);
    auto Bs = reinterpret_cast<bf16 (*)[BN][CB_LD]>(cb_smem + sizeof(bf16) * CB_STAGES * CB_BM * CB_LD);
    const int t = threadIdx.x, lane = t % 32, warp = t / 32;
    const int M = p.n * p.p * p.q, N = p.k, K = p.r * p.s * p.c;
    const int m0 = blockIdx.x * CB_BM, n0 = blockIdx.y * BN;

    // Loaders: this thread copies 16-byte chunk kc of the 32-wide K slice for
    // tile rows t/4 + PASS l (128 / PASS rows of A, BN / PASS of B). Its output
    // pixels are decoded once; a_img < 0 marks a row past M (zero-filled).
    const int kc = t % 4, lrow = t / 4;
    constexpr int AL = CB_BM / PASS;
    int a_img[AL], a_h0[AL], a_w0[AL];
#pragma unroll
    for (int l = 0; l < AL; ++l) {
        const int row = m0 + lrow + PASS * l;
        a_img[l] = -1;
        a_h0[l] = a_w0[l] = 0;
        if (row < M) {
            const int qq = row % p.q, rest = row / p.q;
            a_img[l] = (rest / p.p) * p.h * p.w * p.c;
            a_h0[l] = (rest % p.p) * p.sh - p.ph;
            a_w0[l] = qq * p.sw - p.pw;
        }
    }
    // This thread's reduction index gk = kt * 32 + 8 kc as (r, s, c), walked
    // by carries as the tiles are loaded in order (kt = 0, 1, 2, ...): no
    // integer divisions in the main loop.
    int gk = kc * 8, c = gk % p.c, s = (gk / p.c) % p.s, r = gk / p.c / p.s;
    auto load_tile = [&](int stage, int) {
        const bool kin = r < p.r;  // gk < K
        const int hoff = r * p.dh, woff = s * p.dw;
#pragma unroll
        for (int l = 0; l < AL; ++l) {
            const int hh = a_h0[l] + hoff, ww = a_w0[l] + woff;
            const bool ok = kin && a_img[l] >= 0 && hh >= 0 && hh < p.h && ww >= 0 && ww < p.w;
            const bf16* src = ok ? x + a_img[l] + (hh * p.w + ww) * p.c + c : x;
            mt_cp_async16(&As[stage][lrow + PASS * l][kc * 8], src, ok ? 16 : 0);
        }
#pragma unroll
        for (int l = 0; l < BN / PASS; ++l) {
            const int col = n0 + lrow + PASS * l;
            const bool ok = kin && col < N;
            mt_cp_async16(&Bs[stage][lrow + PASS * l][kc * 8], ok ? wt + col * K + gk : wt, ok ? 16 : 0);
        }
        gk += CB_BK;
        for (c += CB_BK; c >= p.c; c -= p.c)
            if (++s == p.s) {
                s = 0;
                ++r;
            }
    };

    // Warp (wm, wn) owns rows wm*64.. and columns wn*32.. of the block tile.
    const int wm = warp % 2, wn = warp / 2;
    CbAcc acc;
    cb_zero(acc);
    cb_pipeline((K + CB_BK - 1) / CB_BK, load_tile, [&](int st) {
#pragma unroll
        for (int kk = 0; kk < CB_BK; kk += 16) {
            u32 a[4][4], b[4][2];
            // A: lanes 0-15 address rows 0-15 at k, lanes 16-31 the same rows at k+8.
#pragma unroll
            for (int i = 0; i < 4; ++i)
                mt_ldmatrix_x4(a[i], &As[st][wm * 64 + i * 16 + lane % 16][kk + (lane / 16) * 8]);
            // B, stored [n][k]: lanes 8i.. address matrix i's rows.
#pragma unroll
            for (int j2 = 0; j2 < 2; ++j2) {
                u32 r[4];
                mt_ldmatrix_x4(r, &Bs[st][wn * 32 + j2 * 16 + lane % 8 + (lane / 16) * 8][kk + ((lane / 8) % 2) * 8]);
                cb_split_b(b, 2 * j2, r);
            }
            cb_mma_4x4(acc, a, b);
        }
    });

    // Accumulator e of tile (i, j): row g + 8 (e / 2), column 2 (lane % 4) + e % 2, g = lane / 4.
    // Each thread's pairs (e, e + 1) are adjacent columns of one row: one
    // 8-byte (bf16: 4-byte) access where the pair is whole and aligned,
    // which it is whenever the row stride is even.
    const int g = lane / 4, tg = lane % 4;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = m0 + wm * 64 + i * 16 + g + 8 * h;
                const int col = n0 + wn * 32 + j * 8 + 2 * tg;
                if (row >= M || col >= N) continue;
                const u32 at = addr(p, row, col);
                const float v0 = acc[i][j][2 * h] + (p.has_bias ? bias[col] : 0.0f);
                if (col + 1 < N && at % 2 == 0) {
                    const float v1 = acc[i][j][2 * h + 1] + (p.has_bias ? bias[col + 1] : 0.0f);
                    const float2 old = addr.prior2(y, at);
                    cb_store2(y, at, v0 + old.x, v1 + old.y);
                    continue;
                }
                cb_store(y, at, v0 + addr.prior(y, at));
                if (col + 1 < N) {
                    const u32 at1 = addr(p, row, col + 1);
                    const float v1 = acc[i][j][2 * h + 1] + (p.has_bias ? bias[col + 1] : 0.0f);
                    cb_store(y, at1, v1 + addr.prior(y, at1));
                }
            }
}

// One entry per output type and tile: the launcher loads kernels by their
// extern "C" names, which cannot be templates.
extern "C" __global__ void __launch_bounds__(128) conv_bf16_fprop_f32(ConvParams p, const bf16* __restrict__ x,
                                                                     const bf16* __restrict__ wt,
                                                                     const float* __restrict__ bias,
                                                                     float* __restrict__ y) {
    conv_bf16_fprop_body<2>(p, x, wt, bias, y, CbRowMajor());
}

extern "C" __global__ void __launch_bounds__(256) conv_bf16_fprop_f32_wide(ConvParams p, const bf16* __restrict__ x,
                                                                          const bf16* __restrict__ wt,
                                                                          const float* __restrict__ bias,
                                                                          float* __restrict__ y) {
    conv_bf16_fprop_body<4>(p, x, wt, bias, y, CbRowMajor());
}

extern "C" __global__ void __launch_bounds__(128) conv_bf16_fprop_bf16(ConvParams p, const bf16* __restrict__ x,
                                                                      const bf16* __restrict__ wt,
                                                                      const float* __restrict__ bias,
                                                                      bf16* __restrict__ y) {
    conv_bf16_fprop_body<2>(p, x, wt, bias, y, CbRowMajor());
}

extern "C" __global__ void __launch_bounds__(256) conv_bf16_fprop_bf16_wide(ConvParams p, const bf16* __restrict__ x,
                                                                           const bf16* __restrict__ wt,
                                                                           const float* __restrict__ bias,
                                                                           bf16* __restrict__ y) {
    conv_bf16_fprop_body<4>(p, x, wt, bias, y, CbRowMajor());
}

// ---- strided dgrad by stride phase ----------------------------------------
//   dx[n,h,w,c] = sum over (r, s, k) of dy[n, (h + ph - r dh)/sh, (w + pw - s dw)/sw, k] w[k, r, s, c]
// over the exact, in-range divisions. As in conv.cu's DgradPhaseDim, dx's
// pixels split into sh*sw phases (a, b) = (h % sh, w % sw); within a phase
// only the taps r0, r0 + step, ... (step = sh / gcd(sh, dh)) reach dy, the
// j-th of them at dy row i + e - j de for phase row i (h = a + i sh). Listed
// last first (t = taps - 1 - j) they read dy row i - pad + t de with
// pad = de (taps - 1) - e: a dense stride-1 conv of dy (dilation de, padding
// pad, negative where it starts inside dy; the fprop's bounds checks make
// every row outside dy a zero) with the sub-kernel
// wp[c, t, u, k] = w[k, r0 + (taps-1-t) step, s0 + (taps_w-1-u) step_w, c].
// So each phase is the fprop body with C output channels and the padded K as
// its reduction channels, whose row (n, i, j) lands on dx pixel
// (n, a + i sh, b + j sw). The host (ops/conv/bf16_dgrad.rs) computes the
// phases, launches conv_bf16_phase_weights and conv_bf16_dgrad_phase once
// per phase with taps, and zero-fills dx first where some phase has none.
struct Bf16DgradPhaseParams {
    ConvParams conv;  // the phase conv: dy (h = P, w = Q, c = K padded) to the phase's rows (p, q) and C channels (k)
    int a, b;         // the phase: dx rows a + i sh, columns b + j sw
    int sh, sw;       // the strided conv's stride
    int h, w;         // dx's height and width
    int accumulate;   // add onto dx (the gradient its input already has) instead of overwriting it
};

// Phase row (n, i, j), channel col: dx[n, a + i sh, b + j sw, col].
struct CbPhaseRows {
    const Bf16DgradPhaseParams& d;
    __device__ __forceinline__ u32 operator()(const ConvParams& p, int row, int col) const {
        const int j = row % p.q, rest = row / p.q;
        const int n = rest / p.p, i = rest % p.p;
        return ((u32)(n * d.h + d.a + i * d.sh) * d.w + d.b + j * d.sw) * p.k + col;
    }
    __device__ __forceinline__ float prior(const float* dx, u32 at) const {
        return d.accumulate ? dx[at] : 0.0f;
    }
    __device__ __forceinline__ float2 prior2(const float* dx, u32 at) const {
        return d.accumulate ? *reinterpret_cast<const float2*>(dx + at) : make_float2(0.0f, 0.0f);
    }
};

extern "C" __global__ void __launch_bounds__(128) conv_bf16_dgrad_phase(Bf16DgradPhaseParams p,
                                                                       const bf16* __restrict__ dy,
                                                                       const bf16* __restrict__ wt,
                                                                       float* __restrict__ dx) {
    conv_bf16_fprop_body<2>(p.conv, dy, wt, nullptr, dx, CbPhaseRows{p});
}

extern "C" __global__ void __launch_bounds__(256) conv_bf16_dgrad_phase_wide(Bf16DgradPhaseParams p,
                                                                            const bf16* __restrict__ dy,
                                                                            const bf16* __restrict__ wt,
                                                                            float* __restrict__ dx) {
    conv_bf16_fprop_body<4>(p.conv, dy, wt, nullptr, dx, CbPhaseRows{p});
}

// One phase's sub-kernel in bf16, [C, tr, ts, kp]:
// wp[c, t, u, k] = w[k, r_first + t r_step, s_first + u s_step, c] for k < K,
// 0 for K <= k < kp (dy's padded channels). The steps are negative: the
// phase conv reads its taps last first.
struct Bf16PhaseWeightParams {
    int k, r, s, c;              // w [K, R, S, C], f32
    int r_first, r_step, tr;     // the phase's taps along R
    int s_first, s_step, ts;     // and along S
    int kp;                      // K padded to a multiple of 8
};

extern "C" __global__ void conv_bf16_phase_weights(Bf16PhaseWeightParams p, const float* __restrict__ w,
                                                   bf16* __restrict__ wp) {
    MT_FOR_EACH(i, (u64)p.c * p.tr * p.ts * p.kp) {
        const int k = (int)(i % p.kp), rest = (int)(i / p.kp);
        const int u = rest % p.ts, t = (rest / p.ts) % p.tr, c = rest / p.ts / p.tr;
        const int r = p.r_first + t * p.r_step, s = p.s_first + u * p.s_step;
        wp[i] = k < p.k ? mt_f32_to_bf16(w[((k * p.r + r) * p.s + s) * p.c + c]) : (bf16)0;
    }
}

// ---- wgrad ----------------------------------------------------------------
//   dw[k,r,s,c] = sum over pixels (n, p, q) of dy[n,p,q,k] x[n, p sh - ph + r dh, q sw - pw + s dw, c]
//   GEMM view: M = K rows, N = R*S*Cp columns (Cp: x's padded channels),
//   reduction over the N*P*Q pixels, split into p.splits slices whose
//   partial tiles meet by atomicAdd in dw (zeroed by the host).
//
// Both operands are contiguous along their non-reduction side (channels),
// so the shared tiles are pixel-major, As[pixel][k] and Bs[pixel][rsc],
// filled by 16-byte cp.async along the channels; ldmatrix.trans turns them
// into mma's row-major A (k x pixels) and column-major B (pixels x rsc)
// fragments. Each aligned 8-column chunk of B lies inside one (r, s) tap
// (Cp % 8 == 0) and each 8-row chunk of A inside dy's padded rows.
// Block tile BM x BN x 32 pixels, warps of 64 x 32 (BM / 64 down, BN / 32
// across: 4, or 8 for the wide 128 x 128), the fprop's 3-stage pipeline, in
// dynamic shared memory (39936 bytes, 52224 wide). Rows are padded by 8 bf16 (16 bytes)
// so the 8 row addresses of an ldmatrix (272- or 144-byte stride) fall into
// 8 different 16-byte bank groups.
struct Bf16WgradParams {
    ConvParams conv;  // c: x's padded channels (its row length); k: dw's output channels
    int ldy;          // dy's row length: k padded to a multiple of 8
    int c_out;        // dw's channels: c before padding
};

template <int BM, int BN>
__device__ __forceinline__ void conv_bf16_wgrad_body(const Bf16WgradParams& wp, const bf16* __restrict__ x,
                                                     const bf16* __restrict__ dy, float* __restrict__ dw) {
    constexpr int WN = BN / 32, LDA = BM + 8, LDB = BN + 8;
    constexpr int THREADS = BM / 64 * WN * 32;
    constexpr int CA = BM / 8, CB = BN / 8;                  // 16-byte chunks per tile row
    constexpr int RA = THREADS / CA, RB = THREADS / CB;      // rows a pass of the block loads
    constexpr int LA = CB_BK / RA, LB = CB_BK / RB;          // passes per tile
    MT_DYNAMIC_SMEM(cb_smem);
    auto As = reinterpret_cast<bf16 (*)[CB_BK][LDA]>(cb_smem);
    auto Bs = reinterpret_cast<bf16 (*)[CB_BK][LDB]>(cb_smem + sizeof(bf16) * CB_STAGES * CB_BK * LDA);
    const ConvParams& p = wp.conv;
    const int t = threadIdx.x, lane = t % 32, warp = t / 32;
    const int M = p.k, N = p.r * p.s * p.c, pixels = p.n * p.p * p.q;
    const int mtiles = (M + BM - 1) / BM;
    const int m0 = (blockIdx.y % mtiles) * BM, n0 = blockIdx.x * BN;
    // This block's pixel slice, in whole 32-pixel steps.
    const int per = ((pixels + p.splits - 1) / p.splits + CB_BK - 1) / CB_BK * CB_BK;
    const int begin = min(pixels, (int)(blockIdx.y / mtiles) * per), end = min(pixels, begin + per);
    const int KT = (end - begin + CB_BK - 1) / CB_BK;
    if (KT == 0) return;  // an empty split (uniform over the block)

    // A: chunk t % CA (output channels m0 + 8 (t % CA) ..) of pixel rows t / CA + RA l.
    const int a_col = m0 + 8 * (t % CA), a_row = t / CA;
    const bool a_ok = a_col < wp.ldy;
    // B: chunk t % CB (columns n0 + 8 (t % CB) ..: one tap (r, s), channels c..c+7)
    // of pixel rows t / CB + RB l. Each pass's pixel is walked as (img, pp, qq)
    // by carries as the tiles advance 32 pixels at a time: no divisions.
    const int b_col = n0 + 8 * (t % CB), b_row = t / CB;
    const bool b_ok = b_col < N;
    const int b_c = b_col % p.c, b_rs = b_col / p.c;
    const int b_hoff = (b_rs / p.s) * p.dh - p.ph, b_woff = (b_rs % p.s) * p.dw - p.pw;
    int b_m[LB], b_img[LB], b_pp[LB], b_qq[LB];
#pragma unroll
    for (int l = 0; l < LB; ++l) {
        b_m[l] = begin + b_row + RB * l;
        b_qq[l] = b_m[l] % p.q;
        b_pp[l] = (b_m[l] / p.q) % p.p;
        b_img[l] = b_m[l] / p.q / p.p;
    }
    const int step_q = CB_BK % p.q, step_p = CB_BK / p.q;
    int a_m = begin + a_row;  // pixel of pass 0; pass l adds RA l
    // Loads the next tile (kt = 0, 1, 2, ... in order) into `stage`.
    auto load_tile = [&](int stage) {
#pragma unroll
        for (int l = 0; l < LA; ++l) {
            const int m = a_m + RA * l;
            const bool ok = a_ok && m < end;
            mt_cp_async16(&As[stage][a_row + RA * l][8 * (t % CA)], ok ? dy + m * wp.ldy + a_col : dy, ok ? 16 : 0);
        }
        a_m += CB_BK;
#pragma unroll
        for (int l = 0; l < LB; ++l) {
            const int hh = b_pp[l] * p.sh + b_hoff, ww = b_qq[l] * p.sw + b_woff;
            const bool ok = b_ok && b_m[l] < end && hh >= 0 && hh < p.h && ww >= 0 && ww < p.w;
            const bf16* src = ok ? x + ((b_img[l] * p.h + hh) * p.w + ww) * p.c + b_c : x;
            mt_cp_async16(&Bs[stage][b_row + RB * l][8 * (t % CB)], src, ok ? 16 : 0);
            b_m[l] += CB_BK;
            b_qq[l] += step_q;
            b_pp[l] += step_p;
            if (b_qq[l] >= p.q) {
                b_qq[l] -= p.q;
                ++b_pp[l];
            }
            for (; b_pp[l] >= p.p; b_pp[l] -= p.p) ++b_img[l];
        }
    };

    const int wm = warp / WN, wn = warp % WN;
    CbAcc acc;
    cb_zero(acc);
    cb_pipeline(KT, [&](int stage, int) { load_tile(stage); }, [&](int st) {
#pragma unroll
        for (int kk = 0; kk < CB_BK; kk += 16) {
            u32 a[4][4], b[4][2];
            // A (k x pixels, row-major): matrix j = lane / 8 holds channels
            // 8 (j % 2).. and pixels 8 (j / 2).. of the 16 x 16 fragment.
#pragma unroll
            for (int i = 0; i < 4; ++i)
                mt_ldmatrix_x4_trans(a[i], &As[st][kk + (lane / 16) * 8 + lane % 8][wm * 64 + i * 16 + ((lane / 8) % 2) * 8]);
            // B (pixels x rsc, column-major), stored [pixel][rsc]: lanes 8i..
            // address matrix i's rows.
#pragma unroll
            for (int j2 = 0; j2 < 2; ++j2) {
                u32 r[4];
                mt_ldmatrix_x4_trans(r, &Bs[st][kk + ((lane / 8) % 2) * 8 + lane % 8][wn * 32 + j2 * 16 + (lane / 16) * 8]);
                cb_split_b(b, 2 * j2, r);
            }
            cb_mma_4x4(acc, a, b);
        }
    });

    // Accumulator e of tile (i, j): row g + 8 (e / 2), column 2 (lane % 4) + e % 2.
    // Column (r, s, c) of the padded tile goes to dw's (r, s, c) when c < c_out.
    const int g = lane / 4, tg = lane % 4, taps_c = p.r * p.s * wp.c_out;
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int col = n0 + wn * 32 + j * 8 + 2 * tg + h, c = col % p.c;
            if (col >= N || c >= wp.c_out) continue;
            const int out_col = (col / p.c) * wp.c_out + c;
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int v = 0; v < 2; ++v) {
                    const int row = m0 + wm * 64 + i * 16 + g + 8 * v;
                    if (row >= M) continue;
                    float* o = dw + row * taps_c + out_col;
                    if (p.splits > 1)
                        atomicAdd(o, acc[i][j][2 * v + h]);
                    else
                        *o = acc[i][j][2 * v + h];
                }
        }
}

extern "C" __global__ void __launch_bounds__(128) conv_bf16_wgrad(Bf16WgradParams p, const bf16* __restrict__ x,
                                                                 const bf16* __restrict__ dy, float* __restrict__ dw) {
    conv_bf16_wgrad_body<128, 64>(p, x, dy, dw);
}

// 64 output channels x 128 (r, s, c) columns per block: for K <= 64.
extern "C" __global__ void __launch_bounds__(128) conv_bf16_wgrad_m64(Bf16WgradParams p, const bf16* __restrict__ x,
                                                                     const bf16* __restrict__ dy,
                                                                     float* __restrict__ dw) {
    conv_bf16_wgrad_body<64, 128>(p, x, dy, dw);
}

// 128 x 128 with 8 warps, for K and R*S*C of 128 or more: each tile of dy
// and of x serves twice the products.
extern "C" __global__ void __launch_bounds__(256) conv_bf16_wgrad_wide(Bf16WgradParams p, const bf16* __restrict__ x,
                                                                      const bf16* __restrict__ dy,
                                                                      float* __restrict__ dw) {
    conv_bf16_wgrad_body<128, 128>(p, x, dy, dw);
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
