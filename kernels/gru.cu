// One GRU time step, forward and backward (ops/gru.rs is the reference).
// The products run on gemm.cu: the input projection of the whole sequence
// before the loop, each step's hidden projection h·W_hhᵀ + b_hh, and in
// backward each step's dgh·W_hh (added to dh_prev) and the weight gradients
// after it. These kernels do a step's gates, state update and their
// derivatives in one launch. Gate order r, z, n as PyTorch's nn.GRU.

// gx [N·T, 3H] (row n·T + t); gh, gates [N, 3H] and h_prev, h_next [N, H]
// are this step's slices; out [N, T, H]; mask [N·T] (0: padded frame, which
// passes the state through and outputs 0).
extern "C" __global__ void gru_step_forward(MtRnnStep p, const float* __restrict__ gx,
                                            const float* __restrict__ gh, const float* __restrict__ mask,
                                            const float* __restrict__ h_prev, float* __restrict__ h_next,
                                            float* __restrict__ gates, float* __restrict__ out) {
    const u64 H = p.h;
    MT_FOR_EACH(i, p.n * H) {
        const u64 n = i / H, j = i - n * H, row = n * p.t_len + p.t;
        float* g = gates + n * 3 * H;
        const float hp = h_prev[i];
        if (mask[row] == 0.0f) {
            h_next[i] = hp;
            out[row * H + j] = 0.0f;
            g[j] = g[H + j] = g[2 * H + j] = 0.0f;
            continue;
        }
        const float* x = gx + row * 3 * H;
        const float* s = gh + n * 3 * H;
        const float r = mt_sigmoid(x[j] + s[j]);
        const float z = mt_sigmoid(x[H + j] + s[H + j]);
        const float c = tanhf(x[2 * H + j] + r * s[2 * H + j]);
        const float hn = (1.0f - z) * c + z * hp;
        h_next[i] = hn;
        out[row * H + j] = hn;
        g[j] = r;
        g[H + j] = z;
        g[2 * H + j] = c;
    }
}

// dh: gradient of the state this step wrote; dh_prev: that of the state it
// read, before gemm.cu adds dgh·W_hh; dgx [N·T, 3H] (row n·T + t) and dgh
// [N, 3H] (this step) get the pre-activation gradients, zero at padding.
extern "C" __global__ void gru_step_backward(MtRnnStep p, const float* __restrict__ gout,
                                             const float* __restrict__ gates, const float* __restrict__ gh,
                                             const float* __restrict__ h_prev, const float* __restrict__ mask,
                                             const float* __restrict__ dh, float* __restrict__ dh_prev,
                                             float* __restrict__ dgx, float* __restrict__ dgh) {
    const u64 H = p.h;
    MT_FOR_EACH(i, p.n * H) {
        const u64 n = i / H, j = i - n * H, row = n * p.t_len + p.t;
        float* dx = dgx + row * 3 * H;
        float* ds = dgh + n * 3 * H;
        if (mask[row] == 0.0f) {
            dh_prev[i] = dh[i];
            dx[j] = dx[H + j] = dx[2 * H + j] = 0.0f;
            ds[j] = ds[H + j] = ds[2 * H + j] = 0.0f;
            continue;
        }
        const float* g = gates + n * 3 * H;
        const float r = g[j], z = g[H + j], c = g[2 * H + j];
        const float dht = dh[i] + gout[row * H + j];
        dh_prev[i] = dht * z;
        const float dc = dht * (1.0f - z) * (1.0f - c * c);
        const float dr = dc * gh[n * 3 * H + 2 * H + j] * r * (1.0f - r);
        const float dz = dht * (h_prev[i] - c) * z * (1.0f - z);
        dx[j] = dr;
        dx[H + j] = dz;
        dx[2 * H + j] = dc;
        ds[j] = dr;
        ds[H + j] = dz;
        ds[2 * H + j] = dc * r;
    }
}
