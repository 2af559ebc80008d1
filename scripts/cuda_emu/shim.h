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
struct float2 { float x, y; };
// Dynamic shared memory (MT_DYNAMIC_SMEM): one fixed buffer per kernel body,
// shared by a block's threads like the static __shared__ arrays.
#define MT_DYNAMIC_SMEM(name) static __align__(16) unsigned char name[64 * 1024]
inline float2 make_float2(float x, float y) { return {x, y}; }
struct uint2 { unsigned x, y; };
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
inline long long __double_as_longlong(double d) { long long i; memcpy(&i, &d, 8); return i; }
inline float __expf(float x) { return expf(x); }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
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

// ---- sm_80 warp-level PTX used by kernels/conv_bf16.cu ------------------
// Scalar emulations of cp.async, ldmatrix.x4 (plain and .trans) and mma.m16n8k16 bf16 with the
// fragment layouts of the PTX ISA, replacing the kernel's inline-PTX wrappers
// (MT_CUDA_EMU). The warp-collective ones exchange operands through
// per-warp slots between warp barriers, like __shfl_xor_sync above.
#define MT_CUDA_EMU 1
inline unsigned emu_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
inline float emu_bf16(unsigned short h) { return __uint_as_float((unsigned)h << 16); }

// cp.async: immediate (the earliest a copy may land) or, with
// g_cp_async_defer, performed only when wait_group retires its group (the
// latest it may land): a missing wait or a stage overwritten too early
// shows up in one mode or the other.
bool g_cp_async_defer = false;
struct EmuCopy { void* dst; const void* src; int bytes; };
thread_local std::vector<EmuCopy> t_cp_open;
thread_local std::vector<std::vector<EmuCopy>> t_cp_groups;
inline void emu_copy(const EmuCopy& c) {
    memcpy(c.dst, c.src, c.bytes);
    memset(static_cast<char*>(c.dst) + c.bytes, 0, 16 - c.bytes);
}
inline void mt_cp_async16(void* dst, const void* src, int bytes) {
    if (g_cp_async_defer) t_cp_open.push_back({dst, src, bytes}); else emu_copy({dst, src, bytes});
}
inline void mt_cp_async_commit() { t_cp_groups.push_back(std::move(t_cp_open)); t_cp_open.clear(); }
template <int N> inline void mt_cp_async_wait() {
    while (t_cp_groups.size() > (size_t)N) {
        for (auto& c : t_cp_groups.front()) emu_copy(c);
        t_cp_groups.erase(t_cp_groups.begin());
    }
}

const void* g_ldm_xch[32][32];
// Matrix i's rows are addressed by lanes 8i..8i+7. Plain: r[i] = row lane/4,
// columns 2(lane%4), +1. Transposed: r[i] = column lane/4, rows 2(lane%4), +1.
// Low half first.
inline void emu_ldmatrix_x4(unsigned (&r)[4], const void* p, bool trans) {
    unsigned w = emu_tid() / 32, l = emu_tid() % 32;
    g_warp_bar[w]->arrive_and_wait();
    g_ldm_xch[w][l] = p;
    g_warp_bar[w]->arrive_and_wait();
    auto at = [&](int i, int row, int col) { return static_cast<const unsigned short*>(g_ldm_xch[w][8 * i + row])[col]; };
    for (int i = 0; i < 4; ++i) {
        int a = l / 4, b = 2 * (l % 4);
        r[i] = trans ? at(i, b, a) | ((unsigned)at(i, b + 1, a) << 16) : at(i, a, b) | ((unsigned)at(i, a, b + 1) << 16);
    }
    g_warp_bar[w]->arrive_and_wait();
}
inline void mt_ldmatrix_x4(unsigned (&r)[4], const void* p) { emu_ldmatrix_x4(r, p, false); }
inline void mt_ldmatrix_x4_trans(unsigned (&r)[4], const void* p) { emu_ldmatrix_x4(r, p, true); }

// cvt.rna.tf32.f32: keep 10 explicit mantissa bits, ties away from zero
// (adding half of the dropped 13 bits to the magnitude); NaN and Inf as they are.
inline unsigned mt_tf32(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u) return u;
    return (u + 0x1000u) & 0xffffe000u;
}

unsigned g_mma_tf32_xch[32][32][6];
// d += A B for m16n8k8 tf32. Lane l = 4 g + t holds A rows g, g+8 at column t
// (a0, a1) and t+4 (a2, a3); B column g at rows t (b0) and t+4 (b1); D rows g
// (d0, d1) and g+8 (d2, d3) at columns 2t, 2t+1.
inline void mt_mma_tf32_1688(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    unsigned w = emu_tid() / 32, l = emu_tid() % 32;
    g_warp_bar[w]->arrive_and_wait();
    for (int i = 0; i < 4; ++i) g_mma_tf32_xch[w][l][i] = a[i];
    g_mma_tf32_xch[w][l][4] = b[0]; g_mma_tf32_xch[w][l][5] = b[1];
    g_warp_bar[w]->arrive_and_wait();
    auto A = [&](int row, int k) { return __uint_as_float(g_mma_tf32_xch[w][(row % 8) * 4 + k % 4][row / 8 + 2 * (k / 4)]); };
    auto B = [&](int k, int col) { return __uint_as_float(g_mma_tf32_xch[w][col * 4 + k % 4][4 + k / 4]); };
    for (int e = 0; e < 4; ++e) {
        int row = l / 4 + 8 * (e / 2), col = 2 * (l % 4) + e % 2;
        float s = 0.0f;  // tf32 products are exact in f32
        for (int k = 0; k < 8; ++k) s += A(row, k) * B(k, col);
        d[e] += s;
    }
    g_warp_bar[w]->arrive_and_wait();
}

unsigned g_mma_xch[32][32][6];
// d += A B. Lane l = 4 g + t holds A rows g, g+8 at columns 2t, 2t+1 (a0, a1)
// and 2t+8, 2t+9 (a2, a3); B column g at rows 2t, 2t+1 (b0) and 2t+8, 2t+9
// (b1); D rows g (d0, d1) and g+8 (d2, d3) at columns 2t, 2t+1.
inline void mt_mma_bf16_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    unsigned w = emu_tid() / 32, l = emu_tid() % 32;
    g_warp_bar[w]->arrive_and_wait();
    for (int i = 0; i < 4; ++i) g_mma_xch[w][l][i] = a[i];
    g_mma_xch[w][l][4] = b[0]; g_mma_xch[w][l][5] = b[1];
    g_warp_bar[w]->arrive_and_wait();
    auto half = [](unsigned v, int k) { return emu_bf16((unsigned short)(k % 2 ? v >> 16 : v & 0xffff)); };
    auto A = [&](int row, int k) { return half(g_mma_xch[w][(row % 8) * 4 + (k % 8) / 2][row / 8 + 2 * (k / 8)], k); };
    auto B = [&](int k, int col) { return half(g_mma_xch[w][col * 4 + (k % 8) / 2][4 + k / 8], k); };
    for (int e = 0; e < 4; ++e) {
        int row = l / 4 + 8 * (e / 2), col = 2 * (l % 4) + e % 2;
        float s = 0.0f;  // bf16 products are exact in f32
        for (int k = 0; k < 16; ++k) s += A(row, k) * B(k, col);
        d[e] += s;
    }
    g_warp_bar[w]->arrive_and_wait();
}
