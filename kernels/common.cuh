// Shared device helpers, prepended to every kernel module by build.rs.
// Self-contained on purpose: no CUDA toolkit headers, so NVRTC compiles
// these modules anywhere it runs.

typedef unsigned int u32;
typedef unsigned long long u64;

#define MT_WARP 32

// A kernel's shared tiles sized by the launch (dynamic shared memory;
// scripts/cuda_emu/shim.h gives the emulator a fixed buffer instead).
#ifndef MT_DYNAMIC_SMEM
#define MT_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// Grid-stride loop over n elements.
#define MT_FOR_EACH(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n); i += (u64)gridDim.x * blockDim.x)

template <typename T>
__device__ __forceinline__ T mt_warp_sum(T v) {
    for (int o = MT_WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float mt_warp_max(float v) {
    for (int o = MT_WARP / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the whole block; every thread gets the result. `scratch` holds
// one value per warp (at most 32). blockDim.x must be a multiple of 32.
template <typename T>
__device__ __forceinline__ T mt_block_sum(T v, T* scratch) {
    const int lane = threadIdx.x % MT_WARP, warp = threadIdx.x / MT_WARP;
    const int warps = blockDim.x / MT_WARP;
    v = mt_warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = (threadIdx.x < warps) ? scratch[threadIdx.x] : (T)0;
    if (warp == 0) v = mt_warp_sum(v);
    if (threadIdx.x == 0) scratch[0] = v;
    __syncthreads();
    return scratch[0];
}

// bf16 <-> f32 by bit manipulation (round to nearest even), without cuda_bf16.h.
__device__ __forceinline__ float mt_bf16_to_f32(unsigned short h) {
    return __uint_as_float(((u32)h) << 16);
}

__device__ __forceinline__ unsigned short mt_f32_to_bf16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

// ---- strided indexing (broadcasting, reductions) ----------------------
// The host merges contiguous axes first, so most launches see rank 1 or 2.
#define MT_MAX_RANK 6

// Offsets into two operands of the row-major element i of `dims`, where each
// operand has its own strides (0 along a broadcast axis).
__device__ __forceinline__ void mt_offsets2(int rank, const u64* dims, const u64* sa, const u64* sb,
                                            u64 i, u64& oa, u64& ob) {
    oa = 0;
    ob = 0;
    for (int ax = rank - 1; ax >= 0; --ax) {
        const u64 d = dims[ax], q = i / d, r = i - q * d;
        oa += r * sa[ax];
        ob += r * sb[ax];
        i = q;
    }
}

__device__ __forceinline__ u64 mt_offset(int rank, const u64* dims, const u64* s, u64 i) {
    u64 o = 0;
    for (int ax = rank - 1; ax >= 0; --ax) {
        const u64 d = dims[ax], q = i / d;
        o += (i - q * d) * s[ax];
        i = q;
    }
    return o;
}

// ---- row-parallel layout over channels-last [rows, C] ------------------
// Blocks of MT_ROWS_THREADS threads; a thread owns `vec` consecutive channels
// (vec 4: float4 accesses when C % 4 == 0) of every `step`-th row of its
// block-row's range, so a warp reads whole rows contiguously and each thread
// loads its per-channel constants once. blockIdx.x picks the channel group
// (C/vec > MT_ROWS_THREADS only), blockIdx.y the block-row of `chunk` rows,
// taken last to first when `reverse` (the pass after a reduction over the
// same data then starts on what the reduction left in L2). The host side is
// CudaDevice::rows_layout.
#define MT_ROWS_THREADS 256

struct MtRowsLane {
    u64 ch;      // first channel of this thread
    u64 r0, r1;  // rows r0, r0 + step, ... below r1
    u64 step;
    u64 cpb;        // threads per row (the thread `s` rows below is s * cpb further)
    u64 block_row;  // the block-row this block works on
    bool active;    // false: no channel or no row slot for this thread
    bool leader;    // the thread of its channels that merges the block's partials
};

__device__ __forceinline__ MtRowsLane mt_rows_lane(u64 rows, u64 c, int vec, u64 chunk, u64 splits, int reverse) {
    const u64 q = c / vec;
    const u64 cpb = q < MT_ROWS_THREADS ? q : MT_ROWS_THREADS;
    const u64 sub = threadIdx.x / cpb, vc = (u64)blockIdx.x * cpb + threadIdx.x % cpb;
    MtRowsLane l;
    l.step = MT_ROWS_THREADS / cpb;
    l.cpb = cpb;
    l.block_row = reverse ? splits - 1 - blockIdx.y : blockIdx.y;
    const u64 start = l.block_row * chunk, end = start + chunk;
    l.ch = vc * vec;
    l.r0 = start + sub;
    l.r1 = end < rows ? end : rows;
    l.active = sub < l.step && vc < q;
    l.leader = l.active && sub == 0;
    return l;
}

// Parameters of the per-sample row kernels (SE squeeze, channel scale):
// blockIdx.z is the sample, each sample `rows` rows of `c` channels.
struct MtRowsParams {
    u64 rows;
    u64 c;
    u64 chunk;
    u64 splits;
    int vec;
    int reverse;
    float scale;  // kernel-specific factor (1 / (H W) for the squeeze)
    int flag;     // kernel-specific switch (gap_backward: add onto dx)
};

__device__ __forceinline__ MtRowsLane mt_rows_lane(const MtRowsParams& p) {
    return mt_rows_lane(p.rows, p.c, p.vec, p.chunk, p.splits, p.reverse);
}

// v[0..V) = p[0..V) (one float4 access when V == 4; p 16-byte aligned).
template <int V>
__device__ __forceinline__ void mt_load(const float* p, float (&v)[4]) {
    if (V == 4) {
        const float4 t = *reinterpret_cast<const float4*>(p);
        v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
    } else {
        v[0] = p[0];
    }
}

template <int V>
__device__ __forceinline__ void mt_store(float* p, const float (&v)[4]) {
    if (V == 4) {
        float4 t;
        t.x = v[0]; t.y = v[1]; t.z = v[2]; t.w = v[3];
        *reinterpret_cast<float4*>(p) = t;
    } else {
        p[0] = v[0];
    }
}

// q[0..V) = v[0..V) rounded to bf16 (one 8-byte store when V == 4; q 8-byte
// aligned): the bf16 copy a producer writes next to its f32 output when a
// bf16 consumer (the tensor-core convolutions) reads it next.
template <int V>
__device__ __forceinline__ void mt_store_bf16(unsigned short* q, const float (&v)[4]) {
    if (V == 4) {
        uint2 t;
        t.x = (u32)mt_f32_to_bf16(v[0]) | ((u32)mt_f32_to_bf16(v[1]) << 16);
        t.y = (u32)mt_f32_to_bf16(v[2]) | ((u32)mt_f32_to_bf16(v[3]) << 16);
        *reinterpret_cast<uint2*>(q) = t;
    } else {
        q[0] = mt_f32_to_bf16(v[0]);
    }
}

// Merges the block's per-channel sums (acc of every thread) into the
// leader's acc, in a fixed order; true for the leader, which holds them.
// Every thread of the block must call it; sh holds MT_ROWS_THREADS * 4 floats.
template <int V>
__device__ __forceinline__ bool mt_rows_block_sum(const MtRowsLane& l, float (&acc)[4], float* sh) {
    for (int j = 0; j < 4; ++j) sh[threadIdx.x * 4 + j] = acc[j];
    __syncthreads();
    if (!l.leader) return false;
    for (u64 k = 1; k < l.step; ++k)
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] += sh[(threadIdx.x + k * l.cpb) * 4 + j];
    return true;
}

// Adds the block's per-channel sums (acc of every thread, times scale) to
// out[0..V) of the leader's channels, one atomic each. Every thread of the
// block must call it; sh holds MT_ROWS_THREADS * 4 floats.
template <int V>
__device__ __forceinline__ void mt_rows_atomic_sum(const MtRowsLane& l, float (&acc)[4], float* sh, float* out,
                                                   float scale) {
    if (!mt_rows_block_sum<V>(l, acc, sh)) return;
#pragma unroll
    for (int j = 0; j < V; ++j) atomicAdd(&out[j], acc[j] * scale);
}

// ---- grid-wide barrier for cooperative launches -----------------------
// `counter` is zeroed before the launch and only grows, so barrier number k
// (1, 2, ...) waits until every block has arrived k times. Valid only when
// all blocks are resident, which a cooperative launch guarantees.
__device__ __forceinline__ void mt_grid_barrier(u32* counter, u32 k) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(counter, 1u);
        const u32 target = k * gridDim.x;
        while (atomicAdd(counter, 0u) < target) {
        }
        __threadfence();
    }
    __syncthreads();
}

// ---- convolution geometry (conv.cu, conv_bf16.cu) -----------------------
struct ConvParams {
    int n, h, w, c;  // input
    int k, r, s;     // weight [K, R, S, C/groups]
    int p, q;        // output
    int sh, sw, ph, pw, dh, dw;  // stride, top/left padding, dilation
    int groups;
    int splits;  // fprop, wgrad: K-dimension splits (gridDim.y = row tiles * splits)
    int has_bias;
};

// ---- BM x BN block tile, K in steps of 8, 256 threads (gemm.cu, conv.cu) ----
// BM * BN = 128 * 128: 128x128 (gemm, conv), 256x64 and 64x256 (conv with
// 64 channels on one side, which would leave half of a 128-wide tile idle).
// Each thread holds an 8x8 register tile split 4+4 in both directions (rows
// ty*4 and BM/2+ty*4, columns tx*4 and BN/2+tx*4, tx = t % (BN/8),
// ty = t / (BN/8)) so that the float4 reads of shared memory are
// conflict-free. The loaders store As[k][row] and Bs[k][col]; these helpers
// do the rest.
#define MT_TILE 128
#define MT_TK 8

template <int BN>
__device__ __forceinline__ int mt_tile_tx(int t) { return t % (BN / 8); }
template <int BN>
__device__ __forceinline__ int mt_tile_ty(int t) { return t / (BN / 8); }

__device__ __forceinline__ int mt_tile_pos(int i, int t, int half) { return i < 4 ? t * 4 + i : half + t * 4 + i - 4; }

__device__ __forceinline__ void mt_tile_zero(float (&acc)[8][8]) {
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
}

// LDA, LDB: the row pitch of As and Bs, BM and BN or more (padding that
// spreads a loader's stores over the banks; multiples of 4 keep float4s aligned).
template <int BM = MT_TILE, int BN = MT_TILE, int LDA, int LDB>
__device__ __forceinline__ void mt_tile_fma(const float (&As)[MT_TK][LDA], const float (&Bs)[MT_TK][LDB],
                                            float (&acc)[8][8], int tx, int ty) {
#pragma unroll
    for (int kk = 0; kk < MT_TK; ++kk) {
        float a[8], b[8];
        const float4 a0 = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
        const float4 a1 = *reinterpret_cast<const float4*>(&As[kk][BM / 2 + ty * 4]);
        const float4 b0 = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
        const float4 b1 = *reinterpret_cast<const float4*>(&Bs[kk][BN / 2 + tx * 4]);
        a[0] = a0.x; a[1] = a0.y; a[2] = a0.z; a[3] = a0.w;
        a[4] = a1.x; a[5] = a1.y; a[6] = a1.z; a[7] = a1.w;
        b[0] = b0.x; b[1] = b0.y; b[2] = b0.z; b[3] = b0.w;
        b[4] = b1.x; b[5] = b1.y; b[6] = b1.z; b[7] = b1.w;
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
}

// row_ptr(row)[col] = acc (+ bias[col]) (+ beta * row_ptr(row)[col]; beta 0
// never reads it) for the rows < m and columns < n of the BM x BN tile at
// (m0, n0); with `atomic`, row_ptr(row)[col] += acc instead (split-K partial
// products). `row_ptr` maps a GEMM row to its output row (conv.cu's strided
// dgrad writes every sh-th row of every sw-th column).
template <int BM, int BN, class RowPtr>
__device__ __forceinline__ void mt_tile_store_rows(const float (&acc)[8][8], int tx, int ty, u64 m0, u64 n0, u64 m,
                                                   u64 n, RowPtr row_ptr, const float* bias, float beta,
                                                   bool atomic) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const u64 gm = m0 + mt_tile_pos(i, ty, BM / 2);
        if (gm >= m) continue;
        float* row = row_ptr(gm);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const u64 gn = n0 + mt_tile_pos(j, tx, BN / 2);
            if (gn >= n) continue;
            float v = acc[i][j];
            if (atomic) {
                atomicAdd(&row[gn], v);
                continue;
            }
            if (bias) v += bias[gn];
            row[gn] = beta != 0.0f ? v + beta * row[gn] : v;
        }
    }
}

// mt_tile_store_rows on a dense row-major output: row r at out + r * ldc.
template <int BM = MT_TILE, int BN = MT_TILE>
__device__ __forceinline__ void mt_tile_store(const float (&acc)[8][8], int tx, int ty, u64 m0, u64 n0, u64 m,
                                              u64 n, float* out, u64 ldc, const float* bias, float beta,
                                              bool atomic) {
    mt_tile_store_rows<BM, BN>(acc, tx, ty, m0, n0, m, n, [=](u64 r) { return out + r * ldc; }, bias, beta, atomic);
}

// ---- recurrent time steps (gru.cu, lstm.cu) ----------------------------
// One launch per time step, one thread per (sample n, unit j). Sequences
// are [N, T, ·] (row n·T + t); per-step buffers are step-major, so the host
// passes this step's slice and the kernel indexes it [N, ·].
struct MtRnnStep {
    u64 n, t_len, h;  // batch, sequence length, hidden size
    u64 t;            // this step
};

// Overflow-free logistic function in both directions (as unary.cu's sigmoid).
__device__ __forceinline__ float mt_sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}
