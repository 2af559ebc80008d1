// max / avg pooling over NHWC, also global (ops/pool.rs is the reference).
// Forward: one thread per output element, channels fastest (coalesced).
// Backward scatters each output's gradient into its window with atomicAdd
// (windows may overlap) into dx, which the host zeroed: max pooling to the
// argmax the forward recorded, average pooling spread over the window.

struct PoolParams {
    int n, h, w, c;
    int p, q;
    int kh, kw, sh, sw, ph, pw;
    int count_include_pad;
    int is_max;
};

struct PoolWindow {
    int h0, h1, w0, w1;
    float inv_divisor;
};

__device__ __forceinline__ PoolWindow pool_window(const PoolParams& p, int op, int oq) {
    PoolWindow win;
    const int a = op * p.sh, b = oq * p.sw;
    const int ae = min(a + p.kh, p.h + 2 * p.ph), be = min(b + p.kw, p.w + 2 * p.pw);
    win.h0 = max(a - p.ph, 0);
    win.h1 = min(max(a + p.kh - p.ph, 0), p.h);
    win.w0 = max(b - p.pw, 0);
    win.w1 = min(max(b + p.kw - p.pw, 0), p.w);
    const int divisor = p.count_include_pad ? (ae - a) * (be - b) : (win.h1 - win.h0) * (win.w1 - win.w0);
    win.inv_divisor = 1.0f / (float)divisor;
    return win;
}

// argmax (max pooling only) holds the input index of each output's maximum.
extern "C" __global__ void pool_forward(PoolParams p, const float* __restrict__ x, float* __restrict__ y,
                                        u32* __restrict__ argmax) {
    const u64 total = (u64)p.n * p.p * p.q * p.c;
    MT_FOR_EACH(o, total) {
        const int c = (int)(o % p.c);
        const u64 pix = o / p.c;
        const int oq = (int)(pix % p.q), op = (int)(pix / p.q % p.p), n = (int)(pix / ((u64)p.p * p.q));
        const PoolWindow win = pool_window(p, op, oq);
        const u64 base = (u64)n * p.h * p.w * p.c + c;
        if (p.is_max) {
            u64 best_i = base + ((u64)win.h0 * p.w + win.w0) * p.c;
            float best = x[best_i];
            for (int hh = win.h0; hh < win.h1; ++hh)
                for (int ww = win.w0; ww < win.w1; ++ww) {
                    const u64 i = base + ((u64)hh * p.w + ww) * p.c;
                    const float v = x[i];
                    if (v > best || v != v) {  // NaN propagates, as in the reference
                        best = v;
                        best_i = i;
                    }
                }
            y[o] = best;
            argmax[o] = (u32)best_i;
        } else {
            float s = 0.0f;
            for (int hh = win.h0; hh < win.h1; ++hh)
                for (int ww = win.w0; ww < win.w1; ++ww) s += x[base + ((u64)hh * p.w + ww) * p.c];
            y[o] = s * win.inv_divisor;
        }
    }
}

extern "C" __global__ void pool_backward(PoolParams p, const float* __restrict__ g, const u32* __restrict__ argmax,
                                         float* dx) {
    const u64 total = (u64)p.n * p.p * p.q * p.c;
    MT_FOR_EACH(o, total) {
        if (p.is_max) {
            atomicAdd(&dx[argmax[o]], g[o]);
            continue;
        }
        const int c = (int)(o % p.c);
        const u64 pix = o / p.c;
        const int oq = (int)(pix % p.q), op = (int)(pix / p.q % p.p), n = (int)(pix / ((u64)p.p * p.q));
        const PoolWindow win = pool_window(p, op, oq);
        const u64 base = (u64)n * p.h * p.w * p.c + c;
        const float v = g[o] * win.inv_divisor;
        for (int hh = win.h0; hh < win.h1; ++hh)
            for (int ww = win.w0; ww < win.w1; ++ww) atomicAdd(&dx[base + ((u64)hh * p.w + ww) * p.c], v);
    }
}

// Global average pooling (the SE squeeze) in the row-parallel layout over
// each sample's H*W rows, blockIdx.z the sample: each block-row adds its
// sums times 1/(H W) into y [N, C] (zeroed by the host) with one atomic per
// channel. pool_forward would give only N*C threads, each walking all H*W
// rows: far too few loads in flight to approach bandwidth.
template <int V>
__device__ void gap_forward_body(const MtRowsParams& p, const float* __restrict__ x, float* y, float* sh) {
    const MtRowsLane l = mt_rows_lane(p);
    const u64 n = blockIdx.z;
    x += n * p.rows * p.c;
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (l.active)
#pragma unroll 4
        for (u64 r = l.r0; r < l.r1; r += l.step) {
            float v[4];
            mt_load<V>(x + r * p.c + l.ch, v);
#pragma unroll
            for (int j = 0; j < V; ++j) s[j] += v[j];
        }
    mt_rows_atomic_sum<V>(l, s, sh, y + n * p.c + l.ch, p.scale);
}

extern "C" __global__ void gap_forward(MtRowsParams p, const float* __restrict__ x, float* y) {
    __shared__ float sh[MT_ROWS_THREADS * 4];
    if (p.vec == 4)
        gap_forward_body<4>(p, x, y, sh);
    else
        gap_forward_body<1>(p, x, y, sh);
}

// dx[n, r, c] = g[n, c] / (H W): every row of a sample gets the same values,
// added onto what dx holds when p.flag is set (the SE squeeze's input also
// feeds the channel scale, whose gradient is already there).
template <int V>
__device__ void gap_backward_body(const MtRowsParams& p, const float* __restrict__ g, float* __restrict__ dx) {
    const MtRowsLane l = mt_rows_lane(p);
    if (!l.active) return;
    const u64 n = blockIdx.z;
    dx += n * p.rows * p.c;
    float v[4];
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = g[n * p.c + l.ch + j] * p.scale;
    if (p.flag) {
#pragma unroll 4
        for (u64 r = l.r0; r < l.r1; r += l.step) {
            float o[4];
            mt_load<V>(dx + r * p.c + l.ch, o);
#pragma unroll
            for (int j = 0; j < V; ++j) o[j] += v[j];
            mt_store<V>(dx + r * p.c + l.ch, o);
        }
    } else {
#pragma unroll 4
        for (u64 r = l.r0; r < l.r1; r += l.step) mt_store<V>(dx + r * p.c + l.ch, v);
    }
}

extern "C" __global__ void gap_backward(MtRowsParams p, const float* __restrict__ g, float* __restrict__ dx) {
    if (p.vec == 4)
        gap_backward_body<4>(p, g, dx);
    else
        gap_backward_body<1>(p, g, dx);
}
