// conv2d over NHWC as implicit GEMM: fprop, dgrad and wgrad gather their
// GEMM operands straight from the activations (no im2col buffer) into the
// shared-memory tiles of common.cuh (ops/conv/cpu.rs is the reference).
// Weights are [K, R, S, C/groups]; blockIdx.z is the group (strided dgrad:
// group and stride phase).
//
//   fprop  y[n,p,q,k]  M = N*P*Q   cols = K/g       sum over (r, s, c), split-K
//   dgrad  dx[n,h,w,c] M = N*H*W   cols = C/g       sum over (r, s, k)
//   wgrad  dw[k,r,s,c] M = K/g     cols = R*S*C/g   sum over (n, p, q), split-K
//
// All share one double-buffered main loop (conv_mainloop) and differ in
// their loaders. dgrad has three forms: at stride 1 an fprop over dy with
// the weights flipped in (r, s) and K, C swapped (conv_flip_weights, then
// conv_fprop*); at other strides one dense GEMM per stride phase
// (conv_dgrad*); with few input channels a GEMM over dy's pixels whose
// products scatter into dx (conv_dgrad_scatter). Tile shapes: 128x128, and
// one whose 64-wide side fits a 64-channel operand without idle half tiles
// (fprop/dgrad 256x64, wgrad 64x256).
//
// Split-K (fprop, wgrad): blockIdx.y / (row tiles) is the split; partial
// tiles meet by atomicAdd in an output the host pre-filled (bias or zeros),
// so those sums are not bitwise deterministic.
//
// Indices are 32-bit: the host refuses tensors of 2^31 elements or more,
// and heights, widths and paddings of 2^15 or more (16-bit packed pixels).

// The shared main loop: `steps` K steps of 8 from a loader that fetches one
// step's tile elements into registers (`load`, which then moves on to the
// next step) and writes them into shared memory (`store`). Double-buffered:
// the next step's global loads are in flight while this step's FMAs run, and
// one barrier per step suffices because a buffer is refilled only after the
// barrier that ends the step which last read it.
// Rows of As and Bs are padded by CONV_PAD floats: fprop's loaders store 8
// k offsets x 4 rows per warp, which on unpadded rows of a multiple of 32
// floats would hit 4 banks 8 times each.
#define CONV_PAD 4

// ---- TF32 tensor-core tile math (conv_wgrad_tf32*) ---------------------
// The same shared tiles, multiplied by mma.sync m16n8k8 with TF32 operands
// (cvt.rna: 10 explicit mantissa bits, ties away from zero) and f32
// accumulation. 8 warps, each a 64 x 32 block of the tile: BM/64 warps down,
// BN/32 across (128x128: 2 x 4, 64x256: 1 x 8); per k step of 8 a warp runs
// 4 x 4 mmas. acc[8][8] holds them as 16 fragments of 4: fragment
// f = 4 mi + ni is acc[f / 2][4 (f % 2) ..], its element e at tile row
// wm + 16 mi + g + 8 (e / 2), column wn + 8 ni + 2 t + e % 2 (g = lane / 4,
// t = lane % 4: the PTX ISA's m16n8k8 accumulator layout).
#ifndef MT_CUDA_EMU
__device__ __forceinline__ u32 mt_tf32(float f) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(f));
    return r;
}

// d (16x8 f32) += a (16x8 tf32, row) * b (8x8 tf32, col).
__device__ __forceinline__ void mt_mma_tf32_1688(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

template <int BN>
__device__ __forceinline__ void conv_tf32_warp_origin(int& wm, int& wn) {
    const int warp = threadIdx.x / MT_WARP;
    wm = (warp / (BN / 32)) * 64;
    wn = (warp % (BN / 32)) * 32;
}

__device__ __forceinline__ float (&conv_tf32_frag(float (&acc)[8][8], int f))[4] {
    return *reinterpret_cast<float(*)[4]>(&acc[f / 2][4 * (f % 2)]);
}

template <int BM, int BN, int LDA, int LDB>
__device__ __forceinline__ void conv_tile_mma_tf32(const float (&As)[MT_TK][LDA], const float (&Bs)[MT_TK][LDB],
                                                   float (&acc)[8][8]) {
    const int lane = threadIdx.x % MT_WARP, g = lane / 4, t = lane % 4;
    int wm, wn;
    conv_tf32_warp_origin<BN>(wm, wn);
    u32 a[4][4], b[4][2];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
        const int m = wm + 16 * mi + g;
        a[mi][0] = mt_tf32(As[t][m]);
        a[mi][1] = mt_tf32(As[t][m + 8]);
        a[mi][2] = mt_tf32(As[t + 4][m]);
        a[mi][3] = mt_tf32(As[t + 4][m + 8]);
    }
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
        const int n = wn + 8 * ni + g;
        b[ni][0] = mt_tf32(Bs[t][n]);
        b[ni][1] = mt_tf32(Bs[t + 4][n]);
    }
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) mt_mma_tf32_1688(conv_tf32_frag(acc, 4 * mi + ni), a[mi], b[ni]);
}

// out[row * ldc + col] = (or, with `atomic`, +=) the fragments' elements
// for the rows < m and columns < n of the BM x BN tile at (m0, n0).
template <int BN>
__device__ __forceinline__ void conv_tile_store_tf32(float (&acc)[8][8], u64 m0, u64 n0, u64 m, u64 n, float* out,
                                                     u64 ldc, bool atomic) {
    const int lane = threadIdx.x % MT_WARP, g = lane / 4, t = lane % 4;
    int wm, wn;
    conv_tf32_warp_origin<BN>(wm, wn);
#pragma unroll
    for (int f = 0; f < 16; ++f) {
        const float(&d)[4] = conv_tf32_frag(acc, f);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const u64 row = m0 + wm + 16 * (f / 4) + g + 8 * (e / 2), col = n0 + wn + 8 * (f % 4) + 2 * t + e % 2;
            if (row >= m || col >= n) continue;
            if (atomic)
                atomicAdd(&out[row * ldc + col], d[e]);
            else
                out[row * ldc + col] = d[e];
        }
    }
}

// TF32: the tile product on tensor cores (conv_tile_mma_tf32) instead of FMAs.
template <int BM, int BN, bool TF32 = false, class Loader>
__device__ __forceinline__ void conv_mainloop(Loader& ld, int steps, float (&acc)[8][8]) {
    __shared__ __align__(16) float As[2][MT_TK][BM + CONV_PAD];
    __shared__ __align__(16) float Bs[2][MT_TK][BN + CONV_PAD];
    const int tx = mt_tile_tx<BN>(threadIdx.x), ty = mt_tile_ty<BN>(threadIdx.x);
    typename Loader::Regs r;
    ld.load(r);
    ld.store(r, As[0], Bs[0]);
    __syncthreads();
    for (int i = 0; i < steps; ++i) {
        const int cur = i & 1;
        const bool more = i + 1 < steps;
        if (more) ld.load(r);
        if constexpr (TF32)
            conv_tile_mma_tf32<BM, BN>(As[cur], Bs[cur], acc);
        else
            mt_tile_fma<BM, BN>(As[cur], Bs[cur], acc, tx, ty);
        if (more) ld.store(r, As[cur ^ 1], Bs[cur ^ 1]);
        __syncthreads();
    }
}

// fprop operands. A (output pixels x (r, s, c)) and B (output channels x
// (r, s, c)) are both contiguous in c, so a thread loads k offset t % 8 of
// rows (columns) t/8 + 32 l; its pixels are decoded once, and its (r, s, c)
// position advances by 8 per step without divisions.
template <int BM, int BN>
struct FpropLoader {
    static constexpr int LA = BM / 32, LB = BN / 32;
    struct Regs {
        float a[LA], b[LB];
    };
    // Sizes are read from the kernel's parameter space, not held in registers.
    const ConvParams& p;
    const float* x;
    // Row l's first input pixel and its (h, w) origin packed as h << 16 | w
    // (16-bit halves: the host keeps sizes below 2^15); a row past M gets
    // h = -2^15, which no tap brings into range.
    int a_base[LA], a_hw[LA];
    const float* b_src[LB];  // this thread's next B element, or null past K/groups
    int c, r, s;             // the next step's (r, s, c) for this thread
    const int cg;

    // k_begin: the first (r, s, c) index of this block's split, a multiple of MT_TK.
    __device__ FpropLoader(const ConvParams& p_, const float* x_, const float* wt, int m0, int n0, int grp,
                           int k_begin)
        : p(p_), x(x_), cg(p_.c / p_.groups) {
        const int t = threadIdx.x, kk = k_begin + t % MT_TK;
        const int kg = p.k / p.groups, M = p.n * p.p * p.q;
#pragma unroll
        for (int l = 0; l < LA; ++l) {
            const int row = m0 + t / MT_TK + 32 * l;
            const int qq = row % p.q, rest = row / p.q;
            a_base[l] = (rest / p.p) * p.h * p.w * p.c + grp * cg;
            const int h0 = row < M ? (rest % p.p) * p.sh - p.ph : -32768, w0 = qq * p.sw - p.pw;
            a_hw[l] = (int)(((u32)h0 << 16) | ((u32)w0 & 0xffffu));
        }
#pragma unroll
        for (int l = 0; l < LB; ++l) {
            const int col = n0 + t / MT_TK + 32 * l;
            b_src[l] = col < kg ? wt + (grp * kg + col) * (p.r * p.s * cg) + kk : nullptr;
        }
        c = kk % cg;
        s = (kk / cg) % p.s;
        r = (kk / cg) / p.s;
    }

    __device__ __forceinline__ void load(Regs& v) {
        const bool kin = r < p.r;  // this thread's k index is below R*S*C/groups
        const int hoff = r * p.dh, woff = s * p.dw;
#pragma unroll
        for (int l = 0; l < LA; ++l) {
            const int hh = (a_hw[l] >> 16) + hoff, ww = (int)(short)(a_hw[l] & 0xffff) + woff;
            v.a[l] = (kin && hh >= 0 && hh < p.h && ww >= 0 && ww < p.w)
                         ? x[a_base[l] + (hh * p.w + ww) * p.c + c]
                         : 0.0f;
        }
#pragma unroll
        for (int l = 0; l < LB; ++l) {
            v.b[l] = (kin && b_src[l]) ? *b_src[l] : 0.0f;
            if (b_src[l]) b_src[l] += MT_TK;
        }
        for (c += MT_TK; c >= cg; c -= cg)
            if (++s == p.s) {
                s = 0;
                ++r;
            }
    }

    __device__ __forceinline__ void store(const Regs& v, float (&As)[MT_TK][BM + CONV_PAD],
                                          float (&Bs)[MT_TK][BN + CONV_PAD]) const {
        const int t = threadIdx.x;
#pragma unroll
        for (int l = 0; l < LA; ++l) As[t % MT_TK][t / MT_TK + 32 * l] = v.a[l];
#pragma unroll
        for (int l = 0; l < LB; ++l) Bs[t % MT_TK][t / MT_TK + 32 * l] = v.b[l];
    }
};

// The number of K steps of split `split` of a sum over `len` indices in
// p.splits splits of whole steps, and the split's first index.
__device__ __forceinline__ int conv_split_steps(const ConvParams& p, int len, int split, int& begin) {
    const int per = ((len + p.splits - 1) / p.splits + MT_TK - 1) / MT_TK * MT_TK;
    begin = min(len, split * per);
    return (min(len, begin + per) - begin + MT_TK - 1) / MT_TK;
}

template <int BM, int BN>
__device__ __forceinline__ void conv_fprop_tile(const ConvParams& p, const float* x, const float* wt,
                                                const float* bias, float* y) {
    const int grp = blockIdx.z, cg = p.c / p.groups, kg = p.k / p.groups, M = p.n * p.p * p.q;
    const int mtiles = (M + BM - 1) / BM;
    const int m0 = (blockIdx.y % mtiles) * BM, n0 = blockIdx.x * BN;
    int k_begin;
    const int steps = conv_split_steps(p, p.r * p.s * cg, blockIdx.y / mtiles, k_begin);
    if (steps == 0) return;  // an empty split (uniform over the block)
    FpropLoader<BM, BN> ld(p, x, wt, m0, n0, grp, k_begin);
    float acc[8][8];
    mt_tile_zero(acc);
    conv_mainloop<BM, BN>(ld, steps, acc);
    const int t = threadIdx.x;
    const bool split = p.splits > 1;  // y holds the bias already
    mt_tile_store<BM, BN>(acc, mt_tile_tx<BN>(t), mt_tile_ty<BN>(t), m0, n0, M, kg, y + grp * kg, p.k,
                          p.has_bias && !split ? bias + grp * kg : nullptr, 0.0f, split);
}

extern "C" __global__ void __launch_bounds__(256, 2) conv_fprop(ConvParams p, const float* __restrict__ x,
                                                             const float* __restrict__ wt,
                                                             const float* __restrict__ bias, float* __restrict__ y) {
    conv_fprop_tile<128, 128>(p, x, wt, bias, y);
}

// 256 pixels x 64 output channels per block: for K/groups <= 64.
extern "C" __global__ void __launch_bounds__(256, 2) conv_fprop_n64(ConvParams p, const float* __restrict__ x,
                                                                 const float* __restrict__ wt,
                                                                 const float* __restrict__ bias,
                                                                 float* __restrict__ y) {
    conv_fprop_tile<256, 64>(p, x, wt, bias, y);
}

// wf[g*C/g + c, R-1-r, S-1-s, k] = w[g*K/g + k, r, s, c]: the weights of the
// stride-1 dgrad as an fprop (input dy with K channels, output dx with C).
extern "C" __global__ void conv_flip_weights(ConvParams p, const float* __restrict__ w, float* __restrict__ wf) {
    const int cg = p.c / p.groups, kg = p.k / p.groups;
    MT_FOR_EACH(i, (u64)p.k * p.r * p.s * cg) {
        const int c = i % cg, rest = i / cg;
        const int s = rest % p.s, rest2 = rest / p.s;
        const int r = rest2 % p.r, kk = rest2 / p.r;
        const int grp = kk / kg, k = kk % kg;
        wf[(((grp * cg + c) * p.r + (p.r - 1 - r)) * p.s + (p.s - 1 - s)) * kg + k] = w[i];
    }
}

// Strided dgrad by stride phase. The input pixels (h, w) split into sh*sw
// phases (h % sh, w % sw) = (a, b); within a phase, tap r reaches dy row
// (h + ph - r dh) / sh exactly when r dh = a + ph (mod sh), i.e. for
// r = r0, r0 + sh/g, ... (g = gcd(sh, dh)), whose dy rows are
// h / sh + e - j dh/g for the j-th of them. So each phase is a dense GEMM
// (rows: the phase's pixels, columns: C/groups, sum over its taps and K)
// whose A gather needs no stride test and never loads a tap that fails it.
// One dimension of a phase: its first tap r0, tap step, tap count, the dy
// offset e of its first tap and the dy step per tap.
struct DgradPhaseDim {
    int r0, step, taps, e, de;
    // a: the phase's residue; st, pd, d, R: stride, padding, dilation, kernel size.
    __device__ DgradPhaseDim(int a, int st, int pd, int d, int R) {
        int g = st, b = d;  // gcd(st, d) by Euclid
        while (b) {
            const int t = g % b;
            g = b;
            b = t;
        }
        step = st / g;
        de = d / g;
        // Residues of r d repeat with period st / g <= st: the first match, if any, is below st.
        r0 = 0;
        while (r0 < R && r0 < st && ((a + pd - r0 * d) % st + st) % st != 0) ++r0;
        taps = (r0 < R && r0 < st) ? (R - 1 - r0) / step + 1 : 0;
        e = taps ? (a + pd - r0 * d) / st : 0;  // exact: a multiple of st
    }
};

// The residue of rank `rank` among a dimension's st residues ordered by tap
// count, most first (ties: smaller residue first). Blocks start in blockIdx
// order, so the longest phases start first and the short ones fill the tail
// (3x3/2, padding 1: 4, 2, 2 and 1 taps).
__device__ __forceinline__ int dgrad_residue_by_rank(int rank, int st, int pd, int d, int R) {
    for (int a = 0; a < st; ++a) {
        const int ta = DgradPhaseDim(a, st, pd, d, R).taps;
        int before = 0;
        for (int b = 0; b < st; ++b) {
            const int tb = DgradPhaseDim(b, st, pd, d, R).taps;
            before += tb > ta || (tb == ta && b < a);
        }
        if (before == rank) return a;
    }
    return rank;  // not reached: the ranks are a permutation of the residues
}

// The phase of rank `rank` (blockIdx.z = group * sh*sw + rank; rank =
// rank_h + sh * rank_w, each by dgrad_residue_by_rank) and its pixel counts
// per image column and row.
struct DgradPhase {
    int a, b, hp, wp;
    DgradPhaseDim y, x;
    __device__ DgradPhase(const ConvParams& p, int rank)
        : a(dgrad_residue_by_rank(rank % p.sh, p.sh, p.ph, p.dh, p.r)),
          b(dgrad_residue_by_rank(rank / p.sh, p.sw, p.pw, p.dw, p.s)), hp((p.h - a + p.sh - 1) / p.sh),
          wp((p.w - b + p.sw - 1) / p.sw), y(a, p.sh, p.ph, p.dh, p.r), x(b, p.sw, p.pw, p.dw, p.s) {}
};

// A = dy at (the phase's pixels x (tap j, tap i, k)), k fastest: a thread
// loads k offset t % 8 of rows t/8 + 32 l, as fprop does. B = w at
// ((j, i, k) x input channels c), c fastest (coalesced): column t % BN at
// k offsets that advance by 8 per step. Positions advance by carries.
template <int BM, int BN>
struct DgradLoader {
    static constexpr int LA = BM / 32, LB = BN / 32, DB = 256 / BN;
    struct Regs {
        float a[LA], b[LB];
    };
    const ConvParams& p;
    const DgradPhase& ph;
    const float* dy;
    const float* wt;
    int a_base[LA], a_hw[LA];  // row's dy image base; its first tap's dy (row, column) packed as in FpropLoader
    int k, i, j;               // A: the next step's (tap j, tap i, k) for this thread
    int bk[LB], bi[LB], bj[LB];  // B: the same for each load
    const int kg, bcol;

    __device__ DgradLoader(const ConvParams& p_, const DgradPhase& ph_, const float* dy_, const float* wt_, int m0,
                           int n0, int grp)
        : p(p_), ph(ph_), dy(dy_), wt(wt_ + grp * (p_.k / p_.groups) * p_.r * p_.s * (p_.c / p_.groups)),
          kg(p_.k / p_.groups), bcol(n0 + threadIdx.x % BN) {
        const int t = threadIdx.x, kk = t % MT_TK, M = p.n * ph.hp * ph.wp;
#pragma unroll
        for (int l = 0; l < LA; ++l) {
            const int row = m0 + t / MT_TK + 32 * l;
            const int wi = row % ph.wp, rest = row / ph.wp;
            a_base[l] = (rest / ph.hp) * p.p * p.q * p.k + grp * kg;
            const int h0 = row < M ? rest % ph.hp + ph.y.e : -32768, w0 = wi + ph.x.e;
            a_hw[l] = (int)(((u32)h0 << 16) | ((u32)w0 & 0xffffu));
        }
        k = kk % kg;
        i = (kk / kg) % ph.x.taps;
        j = (kk / kg) / ph.x.taps;
#pragma unroll
        for (int l = 0; l < LB; ++l) {
            const int gk = t / BN + DB * l;
            bk[l] = gk % kg;
            bi[l] = (gk / kg) % ph.x.taps;
            bj[l] = (gk / kg) / ph.x.taps;
        }
    }

    // Moves (k, i, j) on by one step of MT_TK.
    __device__ __forceinline__ void advance(int& kk, int& ii, int& jj) const {
        for (kk += MT_TK; kk >= kg; kk -= kg)
            if (++ii == ph.x.taps) {
                ii = 0;
                ++jj;
            }
    }

    __device__ __forceinline__ void load(Regs& v) {
        const bool kin = j < ph.y.taps;
        const int hoff = j * ph.y.de, woff = i * ph.x.de;
#pragma unroll
        for (int l = 0; l < LA; ++l) {
            const int pp = (a_hw[l] >> 16) - hoff, qq = (int)(short)(a_hw[l] & 0xffff) - woff;
            v.a[l] = (kin && pp >= 0 && pp < p.p && qq >= 0 && qq < p.q) ? dy[a_base[l] + (pp * p.q + qq) * p.k + k]
                                                                        : 0.0f;
        }
        advance(k, i, j);
        const int cg = p.c / p.groups;
#pragma unroll
        for (int l = 0; l < LB; ++l) {
            const int r = ph.y.r0 + bj[l] * ph.y.step, s = ph.x.r0 + bi[l] * ph.x.step;
            v.b[l] = (bj[l] < ph.y.taps && bcol < cg) ? wt[((bk[l] * p.r + r) * p.s + s) * cg + bcol] : 0.0f;
            advance(bk[l], bi[l], bj[l]);
        }
    }

    __device__ __forceinline__ void store(const Regs& v, float (&As)[MT_TK][BM + CONV_PAD],
                                          float (&Bs)[MT_TK][BN + CONV_PAD]) const {
        const int t = threadIdx.x;
#pragma unroll
        for (int l = 0; l < LA; ++l) As[t % MT_TK][t / MT_TK + 32 * l] = v.a[l];
#pragma unroll
        for (int l = 0; l < LB; ++l) Bs[t / BN + DB * l][t % BN] = v.b[l];
    }
};

// dx[n,h,w,c] = sum over (r, s, k) of dy[n, (h + ph - r dh)/sh, (w + pw - s dw)/sw, k] w[k, r, s, c]
// where the divisions are exact and in range, one phase per blockIdx.z; also
// conv_transpose2d's forward (with its bias). A phase without taps writes the bias (or zeros).
template <int BM, int BN>
__device__ __forceinline__ void conv_dgrad_tile(const ConvParams& p, const float* dy, const float* wt,
                                                const float* bias, float* dx) {
    const int phases = p.sh * p.sw, grp = blockIdx.z / phases, cg = p.c / p.groups, kg = p.k / p.groups;
    const DgradPhase ph(p, blockIdx.z % phases);
    const int M = p.n * ph.hp * ph.wp, m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    if (m0 >= M) return;  // the grid covers the largest phase (uniform over the block)
    float acc[8][8];
    mt_tile_zero(acc);
    if (ph.y.taps * ph.x.taps > 0) {  // uniform over the block; the loader divides by the tap count
        DgradLoader<BM, BN> ld(p, ph, dy, wt, m0, n0, grp);
        conv_mainloop<BM, BN>(ld, (ph.y.taps * ph.x.taps * kg + MT_TK - 1) / MT_TK, acc);
    }
    const int t = threadIdx.x;
    // Phase row (n, hi, wi) is dx pixel (n, a + hi sh, b + wi sw).
    const auto row_ptr = [&](u64 row) {
        const int wi = (int)row % ph.wp, rest = (int)row / ph.wp;
        const int n = rest / ph.hp, h = ph.a + (rest % ph.hp) * p.sh, w = ph.b + wi * p.sw;
        return dx + ((u64)(n * p.h + h) * p.w + w) * p.c + grp * cg;
    };
    mt_tile_store_rows<BM, BN>(acc, mt_tile_tx<BN>(t), mt_tile_ty<BN>(t), m0, n0, M, cg, row_ptr,
                               p.has_bias ? bias + grp * cg : nullptr, 0.0f, false);
}

extern "C" __global__ void __launch_bounds__(256, 2) conv_dgrad(ConvParams p, const float* __restrict__ dy,
                                                             const float* __restrict__ wt,
                                                             const float* __restrict__ bias, float* __restrict__ dx) {
    conv_dgrad_tile<128, 128>(p, dy, wt, bias, dx);
}

// 256 input pixels x 64 input channels per block: for C/groups <= 64.
extern "C" __global__ void __launch_bounds__(256, 2) conv_dgrad_n64(ConvParams p, const float* __restrict__ dy,
                                                                 const float* __restrict__ wt,
                                                                 const float* __restrict__ bias,
                                                                 float* __restrict__ dx) {
    conv_dgrad_tile<256, 64>(p, dy, wt, bias, dx);
}

// dgrad with few input channels (the 3-channel stem), where any tile with
// C/groups columns would stay nearly idle: the GEMM
// T[(n, p, q), (r, s, c)] = sum over k of dy[n, p, q, k] w[k, r, s, c]
// (R*S*C/groups columns, 256x64 tiles), each product added into
// dx[n, p sh - ph + r dh, q sw - pw + s dw, c] where that is in range. dx
// holds the bias (or zeros) before; the sums meet by atomicAdd.
// A: dy rows, k fastest (thread: k offset t % 8 of rows t/8 + 32 l);
// B: w rows k, columns (r, s, c) contiguous (thread: column t % BN).
struct DgradScatterLoader {
    static constexpr int BM = 256, BN = 64, LA = BM / 32, LB = BN / 32, DB = 256 / BN;
    struct Regs {
        float a[LA], b[LB];
    };
    const float* dy;         // dy of this group at this thread's next k
    int a_row[LA];           // offset of each A row in dy, -1 past the rows (32-bit: fewer registers)
    const float* b_src;      // w at this thread's first B element, or null past the columns
    int ka, kb;              // the next step's k of this thread's A elements and first B element
    const int kg, ldb;

    __device__ DgradScatterLoader(const ConvParams& p, const float* dy_, const float* wt, int m0, int n0, int grp)
        : kg(p.k / p.groups), ldb(p.r * p.s * (p.c / p.groups)) {
        const int t = threadIdx.x, M = p.n * p.p * p.q, col = n0 + t % BN;
        ka = t % MT_TK;
        kb = t / BN;
        dy = dy_ + grp * kg + ka;
#pragma unroll
        for (int l = 0; l < LA; ++l) {
            const int row = m0 + t / MT_TK + 32 * l;
            a_row[l] = row < M ? row * p.k : -1;
        }
        b_src = col < ldb ? wt + (u64)(grp * kg + kb) * ldb + col : nullptr;
    }

    __device__ __forceinline__ void load(Regs& v) {
#pragma unroll
        for (int l = 0; l < LA; ++l) v.a[l] = (a_row[l] >= 0 && ka < kg) ? dy[a_row[l]] : 0.0f;
        dy += MT_TK;
        ka += MT_TK;
#pragma unroll
        for (int l = 0; l < LB; ++l) v.b[l] = (b_src && kb + DB * l < kg) ? b_src[DB * l * ldb] : 0.0f;
        if (b_src) b_src += MT_TK * ldb;
        kb += MT_TK;
    }

    __device__ __forceinline__ void store(const Regs& v, float (&As)[MT_TK][BM + CONV_PAD],
                                          float (&Bs)[MT_TK][BN + CONV_PAD]) const {
        const int t = threadIdx.x;
#pragma unroll
        for (int l = 0; l < LA; ++l) As[t % MT_TK][t / MT_TK + 32 * l] = v.a[l];
#pragma unroll
        for (int l = 0; l < LB; ++l) Bs[t / BN + DB * l][t % BN] = v.b[l];
    }
};

extern "C" __global__ void __launch_bounds__(256, 2) conv_dgrad_scatter(ConvParams p, const float* __restrict__ dy,
                                                                     const float* __restrict__ wt, float* dx) {
    constexpr int BM = DgradScatterLoader::BM, BN = DgradScatterLoader::BN;
    const int grp = blockIdx.z, cg = p.c / p.groups, kg = p.k / p.groups;
    const int M = p.n * p.p * p.q, cols = p.r * p.s * cg, m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    DgradScatterLoader ld(p, dy, wt, m0, n0, grp);
    float acc[8][8];
    mt_tile_zero(acc);
    conv_mainloop<BM, BN>(ld, (kg + MT_TK - 1) / MT_TK, acc);
    const int tx = mt_tile_tx<BN>(threadIdx.x), ty = mt_tile_ty<BN>(threadIdx.x);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = m0 + mt_tile_pos(i, ty, BM / 2);
        if (row >= M) continue;
        const int qq = row % p.q, rest = row / p.q;
        const int h0 = (rest % p.p) * p.sh - p.ph, w0 = qq * p.sw - p.pw;
        float* img = dx + (u64)(rest / p.p) * p.h * p.w * p.c + grp * cg;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int col = n0 + mt_tile_pos(j, tx, BN / 2);
            if (col >= cols) continue;
            const int c = col % cg, rs = col / cg;
            const int h = h0 + (rs / p.s) * p.dh, w = w0 + (rs % p.s) * p.dw;
            if (h >= 0 && h < p.h && w >= 0 && w < p.w) atomicAdd(img + (h * p.w + w) * p.c + c, acc[i][j]);
        }
    }
}

// y[n, p, q, k] = bias[k] (or 0 without a bias): the starting value of the
// outputs that split-K fprop and scatter dgrad (as the fprop of the flipped
// geometry) add into.
extern "C" __global__ void conv_fill_bias(ConvParams p, const float* __restrict__ bias, float* __restrict__ y) {
    MT_FOR_EACH(i, (u64)p.n * p.p * p.q * p.k) y[i] = p.has_bias ? bias[i % p.k] : 0.0f;
}

// wgrad operands: A = dy (output channels x pixels), B = x gathered at
// ((r, s, c) columns x pixels). Both are loaded with the channel index
// fastest across threads (coalesced over NHWC's contiguous C): a thread owns
// row t % BM of A and column t % BN of B at pixels that advance in fixed
// steps, so it walks its pixel's (n, p, q) by carries, without divisions.
template <int BM, int BN>
struct WgradLoader {
    static constexpr int LA = BM / 32, LB = BN / 32;
    static constexpr int DA = 256 / BM, DB = 256 / BN;  // pixel steps between a thread's loads
    struct Regs {
        float a[LA], b[LB];
    };
    const float* x;
    const float* a_src;  // dy at this thread's next A pixel
    int a_m, b_m;     // next A and B pixels
    int bn, bp, bq;   // b_m as (n, p, q)
    bool a_ok, b_ok;
    int b_hoff, b_woff, b_c;
    const int end;  // end of this split's pixel range
    const int P, Q, H, W, C, sh, sw, ka;

    __device__ WgradLoader(const ConvParams& p, const float* x_, const float* dy, int m0, int n0, int grp, int begin,
                           int end_)
        : x(x_), end(end_), P(p.p), Q(p.q), H(p.h), W(p.w), C(p.c), sh(p.sh), sw(p.sw), ka(p.k) {
        const int t = threadIdx.x, cg = p.c / p.groups, kg = p.k / p.groups;
        const int arow = m0 + t % BM, bcol = n0 + t % BN;
        a_ok = arow < kg;
        b_ok = bcol < p.r * p.s * cg;
        a_m = begin + t / BM;
        a_src = dy + (long long)a_m * p.k + grp * kg + arow;
        const int brs = bcol / cg;
        b_c = grp * cg + bcol % cg;
        b_hoff = (brs / p.s) * p.dh - p.ph;
        b_woff = (brs % p.s) * p.dw - p.pw;
        b_m = begin + t / BN;
        bq = b_m % Q;
        bp = (b_m / Q) % P;
        bn = b_m / Q / P;
    }

    __device__ __forceinline__ void load(Regs& v) {
#pragma unroll
        for (int l = 0; l < LA; ++l) {
            v.a[l] = (a_ok && a_m < end) ? *a_src : 0.0f;
            a_m += DA;
            a_src += DA * ka;
        }
#pragma unroll
        for (int l = 0; l < LB; ++l) {
            const int hh = bp * sh + b_hoff, ww = bq * sw + b_woff;
            v.b[l] = (b_ok && b_m < end && hh >= 0 && hh < H && ww >= 0 && ww < W)
                         ? x[((bn * H + hh) * W + ww) * C + b_c]
                         : 0.0f;
            b_m += DB;
            for (bq += DB; bq >= Q; bq -= Q)
                if (++bp == P) {
                    bp = 0;
                    ++bn;
                }
        }
    }

    __device__ __forceinline__ void store(const Regs& v, float (&As)[MT_TK][BM + CONV_PAD],
                                          float (&Bs)[MT_TK][BN + CONV_PAD]) const {
        const int t = threadIdx.x;
#pragma unroll
        for (int l = 0; l < LA; ++l) As[t / BM + DA * l][t % BM] = v.a[l];
#pragma unroll
        for (int l = 0; l < LB; ++l) Bs[t / BN + DB * l][t % BN] = v.b[l];
    }
};

// dw[k, r, s, c] = sum over (n, p, q) of dy[n, p, q, k] x[n, p sh - ph + r dh, q sw - pw + s dw, c].
// The (n, p, q) sum is split over p.splits slices whose partial tiles meet
// by atomicAdd in dw, which the host zeroed.
// TF32: the products on tensor cores from TF32-rounded operands (the
// conv_wgrad_tf32* kernels, for train.precision = bf16).
template <int BM, int BN, bool TF32 = false>
__device__ __forceinline__ void conv_wgrad_tile(const ConvParams& p, const float* x, const float* dy, float* dw) {
    const int grp = blockIdx.z, cg = p.c / p.groups, kg = p.k / p.groups;
    const int M = kg, N = p.r * p.s * cg, K = p.n * p.p * p.q;
    const int mtiles = (M + BM - 1) / BM;
    const int m0 = (blockIdx.y % mtiles) * BM, n0 = blockIdx.x * BN;
    int k_begin;
    const int steps = conv_split_steps(p, K, blockIdx.y / mtiles, k_begin);
    if (steps == 0) return;  // an empty split (uniform over the block)
    WgradLoader<BM, BN> ld(p, x, dy, m0, n0, grp, k_begin, min(K, k_begin + steps * MT_TK));
    float acc[8][8];
    mt_tile_zero(acc);
    conv_mainloop<BM, BN, TF32>(ld, steps, acc);
    float* out = dw + (u64)grp * kg * N;
    if constexpr (TF32) {
        conv_tile_store_tf32<BN>(acc, m0, n0, M, N, out, N, p.splits > 1);
    } else {
        const int t = threadIdx.x;
        mt_tile_store<BM, BN>(acc, mt_tile_tx<BN>(t), mt_tile_ty<BN>(t), m0, n0, M, N, out, N, nullptr, 0.0f,
                              p.splits > 1);
    }
}

extern "C" __global__ void __launch_bounds__(256, 2) conv_wgrad(ConvParams p, const float* __restrict__ x,
                                                             const float* __restrict__ dy, float* dw) {
    conv_wgrad_tile<128, 128>(p, x, dy, dw);
}

// 64 output channels x 256 (r, s, c) columns per block: for K/groups <= 64.
extern "C" __global__ void __launch_bounds__(256, 2) conv_wgrad_m64(ConvParams p, const float* __restrict__ x,
                                                                 const float* __restrict__ dy, float* dw) {
    conv_wgrad_tile<64, 256>(p, x, dy, dw);
}

extern "C" __global__ void __launch_bounds__(256, 2) conv_wgrad_tf32(ConvParams p, const float* __restrict__ x,
                                                                  const float* __restrict__ dy, float* dw) {
    conv_wgrad_tile<128, 128, true>(p, x, dy, dw);
}

extern "C" __global__ void __launch_bounds__(256, 2) conv_wgrad_m64_tf32(ConvParams p, const float* __restrict__ x,
                                                                      const float* __restrict__ dy, float* dw) {
    conv_wgrad_tile<64, 256, true>(p, x, dy, dw);
}
