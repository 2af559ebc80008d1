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
