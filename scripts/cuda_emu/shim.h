// CPU emulation of the CUDA subset that kernels/*.cu use, so the kernels'
// index arithmetic and synchronisation logic can be checked on a machine
// without a GPU: one OS thread per CUDA thread, the blocks of a grid one after
// another (so __shared__ can be a function-level static), __syncthreads and
// warp shuffles as barriers. It proves logic, not timing or the memory model,
// A cooperative launch (grid barriers) runs each block in its own forked
// process instead, all at once, over memory from shared_alloc.
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>
#include <memory>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
struct float4 { float x, y, z, w; };
std::unique_ptr<std::barrier<>> g_block_bar;
std::unique_ptr<std::barrier<>> g_warp_bar[32];
inline void __syncthreads() { g_block_bar->arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
// Warp shuffles of floats and doubles: each lane publishes, then reads its partner's.
template <class T> T g_xch[32][32];
template <class T> inline T __shfl_xor_sync(unsigned, T v, int o) {
    unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned w = t / 32, l = t % 32;
    g_warp_bar[w]->arrive_and_wait();
    g_xch<T>[w][l] = v;
    g_warp_bar[w]->arrive_and_wait();
    return g_xch<T>[w][l ^ o];
}
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline double atomicAdd(double* p, double v) { return std::atomic_ref<double>(*p).fetch_add(v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline float __expf(float x) { return expf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
using std::min; using std::max;

template <class F> void launch(dim3 grid, dim3 block, F kernel) {
    gridDim = grid; blockDim = block;
    unsigned nt = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz) for (unsigned by = 0; by < grid.y; ++by) for (unsigned bx = 0; bx < grid.x; ++bx) {
        g_block_bar = std::make_unique<std::barrier<>>(nt);
        for (unsigned w = 0; w < (nt + 31) / 32; ++w) g_warp_bar[w] = std::make_unique<std::barrier<>>(std::min(32u, nt - 32 * w));
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < nt; ++t) ts.emplace_back([=] {
            threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            blockIdx = {bx, by, bz};
            kernel();
        });
        for (auto& th : ts) th.join();
    }
}

// Memory that forked blocks share (cooperative launches).
template <class T> T* shared_alloc(size_t n) {
    void* p = mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    return static_cast<T*>(p);
}

// Every block resident at once, as cuLaunchCooperativeKernel guarantees: one
// process per block (so each has its own __shared__ statics), all started
// before any is waited for.
template <class F> void launch_cooperative(dim3 grid, dim3 block, F kernel) {
    std::vector<pid_t> kids;
    for (unsigned b = 0; b < grid.x; ++b) {
        pid_t pid = fork();
        if (pid == 0) {
            gridDim = grid; blockDim = block;
            unsigned nt = block.x;
            g_block_bar = std::make_unique<std::barrier<>>(nt);
            for (unsigned w = 0; w < (nt + 31) / 32; ++w) g_warp_bar[w] = std::make_unique<std::barrier<>>(std::min(32u, nt - 32 * w));
            std::vector<std::thread> ts;
            for (unsigned t = 0; t < nt; ++t) ts.emplace_back([=] { threadIdx = {t, 0, 0}; blockIdx = {b, 0, 0}; kernel(); });
            for (auto& th : ts) th.join();
            _exit(0);
        }
        kids.push_back(pid);
    }
    for (pid_t k : kids) { int st = 0; waitpid(k, &st, 0); if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { puts("a block failed"); exit(1); } }
}
