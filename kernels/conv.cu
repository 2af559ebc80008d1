// conv2d over NHWC as implicit GEMM: fprop, dgrad and wgrad gather their
// GEMM operands straight from the activations (no im2col buffer) into the
// shared-memory tiles of common.cuh (ops/conv.rs is the reference).
// Weights are [K, R, S, C/groups]; blockIdx.z is the group.
//
//   fprop  y[n,p,q,k]  M = N*P*Q   cols = K/g       sum over (r, s, c)
//   dgrad  dx[n,h,w,c] M = N*H*W   cols = C/g       sum over (r, s, k)
//   wgrad  dw[k,r,s,c] M = K/g     cols = R*S*C/g   sum over (n, p, q), split-K
//
// All three share one double-buffered main loop (conv_mainloop) and differ
// in their loaders. At stride 1, dgrad is an fprop over dy with the weights
// flipped in (r, s) and K, C swapped (conv_flip_weights, then conv_fprop*);
// conv_dgrad* is the general path (any stride). Each comes in two tile
// shapes: 128x128, and one whose 64-wide side fits a 64-channel operand
// without idle half tiles (fprop/dgrad 256x64, wgrad 64x256).
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

template <int BM, int BN, class Loader>
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

    __device__ FpropLoader(const ConvParams& p_, const float* x_, const float* wt, int m0, int n0, int grp)
        : p(p_), x(x_), cg(p_.c / p_.groups) {
        const int t = threadIdx.x, kk = t % MT_TK;
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

template <int BM, int BN>
__device__ __forceinline__ void conv_fprop_tile(const ConvParams& p, const float* x, const float* wt,
                                                const float* bias, float* y) {
    const int grp = blockIdx.z, cg = p.c / p.groups, kg = p.k / p.groups;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    FpropLoader<BM, BN> ld(p, x, wt, m0, n0, grp);
    float acc[8][8];
    mt_tile_zero(acc);
    conv_mainloop<BM, BN>(ld, (p.r * p.s * cg + MT_TK - 1) / MT_TK, acc);
    const int t = threadIdx.x;
    mt_tile_store<BM, BN>(acc, mt_tile_tx<BN>(t), mt_tile_ty<BN>(t), m0, n0, p.n * p.p * p.q, kg, y + grp * kg,
                          p.k, p.has_bias ? bias + grp * kg : nullptr, 0.0f, false);
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

// General dgrad operands (any stride; the host uses them for stride > 1):
// A = dy gathered at (input pixels x (r, s, k)), k fastest; B = w as
// ((r, s, k) x input channels c), c fastest. A thread loads k offset t % 8
// of A rows t/8 + 32 l, as fprop does, and B column t % BN at k offsets
// that advance by 8 per step; all (r, s, k) positions advance by carries.
// A tap reaches dy only where (h + ph - r dh) is a multiple of the stride:
// the quotient comes from a multiply-high by ceil(2^32 / stride), exact for
// the sizes the host allows (below 2^16).
template <int BM, int BN>
struct DgradLoader {
    static constexpr int LA = BM / 32, LB = BN / 32, DB = 256 / BN;
    struct Regs {
        float a[LA], b[LB];
    };
    const ConvParams& p;
    const float* dy;
    const float* wt;
    int a_base[LA], a_hw[LA];  // row's dy image base; h + ph, w + pw packed as in FpropLoader
    int k, r, s;               // A: the next step's (r, s, k) for this thread
    int bk[LB], brs[LB];       // B: the next step's (k, r*S + s) of each load
    const int kg, bcol;
    const unsigned mh, mw;  // ceil(2^32 / stride), 0 for stride 1

    __device__ DgradLoader(const ConvParams& p_, const float* dy_, const float* wt_, int m0, int n0, int grp)
        : p(p_), dy(dy_), wt(wt_ + grp * (p_.k / p_.groups) * p_.r * p_.s * (p_.c / p_.groups)),
          kg(p_.k / p_.groups), bcol(n0 + threadIdx.x % BN), mh(p_.sh > 1 ? 0xffffffffu / p_.sh + 1 : 0),
          mw(p_.sw > 1 ? 0xffffffffu / p_.sw + 1 : 0) {
        const int t = threadIdx.x, kk = t % MT_TK, M = p.n * p.h * p.w;
#pragma unroll
        for (int l = 0; l < LA; ++l) {
            const int row = m0 + t / MT_TK + 32 * l;
            const int wi = row % p.w, rest = row / p.w;
            a_base[l] = (rest / p.h) * p.p * p.q * p.k + grp * kg;
            const int h0 = row < M ? rest % p.h + p.ph : -32768, w0 = wi + p.pw;
            a_hw[l] = (int)(((u32)h0 << 16) | ((u32)w0 & 0xffffu));
        }
        k = kk % kg;
        s = (kk / kg) % p.s;
        r = (kk / kg) / p.s;
#pragma unroll
        for (int l = 0; l < LB; ++l) {
            const int gk = t / BN + DB * l;
            bk[l] = gk % kg;
            brs[l] = gk / kg;
        }
    }

    // floor(v / stride) for 0 <= v < 2^16.
    __device__ __forceinline__ static int quot(int v, unsigned m) { return m ? (int)__umulhi((unsigned)v, m) : v; }

    __device__ __forceinline__ void load(Regs& v) {
        const bool kin = r < p.r;
        const int hoff = r * p.dh, woff = s * p.dw;
#pragma unroll
        for (int l = 0; l < LA; ++l) {
            const int hp = (a_hw[l] >> 16) - hoff, wp = (int)(short)(a_hw[l] & 0xffff) - woff;
            float val = 0.0f;
            if (kin && hp >= 0 && wp >= 0) {
                const int pp = quot(hp, mh), qq = quot(wp, mw);
                if (pp * p.sh == hp && qq * p.sw == wp && pp < p.p && qq < p.q)
                    val = dy[a_base[l] + (pp * p.q + qq) * p.k + k];
            }
            v.a[l] = val;
        }
        for (k += MT_TK; k >= kg; k -= kg)
            if (++s == p.s) {
                s = 0;
                ++r;
            }
        const int rsn = p.r * p.s, cg = p.c / p.groups;
#pragma unroll
        for (int l = 0; l < LB; ++l) {
            v.b[l] = (brs[l] < rsn && bcol < cg) ? wt[(bk[l] * rsn + brs[l]) * cg + bcol] : 0.0f;
            for (bk[l] += MT_TK; bk[l] >= kg; bk[l] -= kg) ++brs[l];
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
// where the divisions are exact and in range. Also conv_transpose2d's forward (with its bias).
template <int BM, int BN>
__device__ __forceinline__ void conv_dgrad_tile(const ConvParams& p, const float* dy, const float* wt,
                                                const float* bias, float* dx) {
    const int grp = blockIdx.z, cg = p.c / p.groups, kg = p.k / p.groups;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    DgradLoader<BM, BN> ld(p, dy, wt, m0, n0, grp);
    float acc[8][8];
    mt_tile_zero(acc);
    conv_mainloop<BM, BN>(ld, (p.r * p.s * kg + MT_TK - 1) / MT_TK, acc);
    const int t = threadIdx.x;
    mt_tile_store<BM, BN>(acc, mt_tile_tx<BN>(t), mt_tile_ty<BN>(t), m0, n0, p.n * p.h * p.w, cg, dx + grp * cg,
                          p.c, p.has_bias ? bias + grp * cg : nullptr, 0.0f, false);
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
// The (n, p, q) sum is split over gridDim.y / ceil(M / BM) slices whose
// partial tiles meet by atomicAdd in dw, which the host zeroed.
template <int BM, int BN>
__device__ __forceinline__ void conv_wgrad_tile(const ConvParams& p, const float* x, const float* dy, float* dw) {
    const int grp = blockIdx.z, cg = p.c / p.groups, kg = p.k / p.groups;
    const int M = kg, N = p.r * p.s * cg, K = p.n * p.p * p.q;
    const int mtiles = (M + BM - 1) / BM;
    const int m0 = (blockIdx.y % mtiles) * BM, n0 = blockIdx.x * BN;
    const int split = blockIdx.y / mtiles;
    const int per = ((K + p.splits - 1) / p.splits + MT_TK - 1) / MT_TK * MT_TK;
    const int k_begin = min(K, split * per), k_end = min(K, k_begin + per);
    WgradLoader<BM, BN> ld(p, x, dy, m0, n0, grp, k_begin, k_end);
    float acc[8][8];
    mt_tile_zero(acc);
    conv_mainloop<BM, BN>(ld, (k_end - k_begin + MT_TK - 1) / MT_TK, acc);
    if (k_end <= k_begin) return;
    const int t = threadIdx.x;
    mt_tile_store<BM, BN>(acc, mt_tile_tx<BN>(t), mt_tile_ty<BN>(t), m0, n0, M, N, dw + (u64)grp * kg * N, N,
                          nullptr, 0.0f, p.splits > 1);
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
