// Shared device helpers, prepended to every kernel module by build.rs.
// Self-contained on purpose: no CUDA toolkit headers, so NVRTC compiles
// these modules anywhere it runs.

typedef unsigned int u32;
typedef unsigned long long u64;

#define MT_WARP 32

// Grid-stride loop over n elements.
#define MT_FOR_EACH(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n); i += (u64)gridDim.x * blockDim.x)

__device__ __forceinline__ float mt_warp_sum(float v) {
    for (int o = MT_WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float mt_warp_max(float v) {
    for (int o = MT_WARP / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the whole block; every thread gets the result. `scratch` holds
// one float per warp (at most 32). blockDim.x must be a multiple of 32.
__device__ __forceinline__ float mt_block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % MT_WARP, warp = threadIdx.x / MT_WARP;
    const int warps = blockDim.x / MT_WARP;
    v = mt_warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = (threadIdx.x < warps) ? scratch[threadIdx.x] : 0.0f;
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
