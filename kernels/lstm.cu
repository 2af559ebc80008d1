// One LSTM time step, forward and backward (ops/lstm.rs is the reference).
// As in gru.cu, the products run on gemm.cu and these kernels do a step's
// gates, cell update and their derivatives in one launch. Gate order
// i, f, g, o as PyTorch's nn.LSTM.

// gx [N·T, 4H] (row n·T + t); gh [N, 4H] this step's hidden projection;
// gates [N, 4H], tanh_c and the states [N, H] are this step's slices;
// out [N, T, H]; mask [N·T] (0: padded frame, state passes through, output 0).
extern "C" __global__ void lstm_step_forward(MtRnnStep p, const float* __restrict__ gx,
                                             const float* __restrict__ gh, const float* __restrict__ mask,
                                             const float* __restrict__ h_prev, const float* __restrict__ c_prev,
                                             float* __restrict__ h_next, float* __restrict__ c_next,
                                             float* __restrict__ gates, float* __restrict__ tanh_c,
                                             float* __restrict__ out) {
    const u64 H = p.h;
    MT_FOR_EACH(i, p.n * H) {
        const u64 n = i / H, j = i - n * H, row = n * p.t_len + p.t;
        float* g = gates + n * 4 * H;
        if (mask[row] == 0.0f) {
            h_next[i] = h_prev[i];
            c_next[i] = c_prev[i];
            out[row * H + j] = 0.0f;
            tanh_c[i] = 0.0f;
            g[j] = g[H + j] = g[2 * H + j] = g[3 * H + j] = 0.0f;
            continue;
        }
        const float* x = gx + row * 4 * H;
        const float* s = gh + n * 4 * H;
        const float ig = mt_sigmoid(x[j] + s[j]);
        const float fg = mt_sigmoid(x[H + j] + s[H + j]);
        const float gg = tanhf(x[2 * H + j] + s[2 * H + j]);
        const float og = mt_sigmoid(x[3 * H + j] + s[3 * H + j]);
        const float c = fg * c_prev[i] + ig * gg;
        const float tc = tanhf(c);
        c_next[i] = c;
        h_next[i] = og * tc;
        out[row * H + j] = og * tc;
        tanh_c[i] = tc;
        g[j] = ig;
        g[H + j] = fg;
        g[2 * H + j] = gg;
        g[3 * H + j] = og;
    }
}

// dh: gradient of the hidden state this step wrote; dc: that of the cell
// state, updated in place to the gradient of the one it read; dh_prev: the
// read hidden state's, before gemm.cu adds dgh·W_hh; dgx [N·T, 4H] (row
// n·T + t) and dgh [N, 4H] (this step) get the pre-activation gradients.
extern "C" __global__ void lstm_step_backward(MtRnnStep p, const float* __restrict__ gout,
                                              const float* __restrict__ gates, const float* __restrict__ c_prev,
                                              const float* __restrict__ tanh_c, const float* __restrict__ mask,
                                              const float* __restrict__ dh, float* __restrict__ dc,
                                              float* __restrict__ dh_prev, float* __restrict__ dgx,
                                              float* __restrict__ dgh) {
    const u64 H = p.h;
    MT_FOR_EACH(i, p.n * H) {
        const u64 n = i / H, j = i - n * H, row = n * p.t_len + p.t;
        float* dx = dgx + row * 4 * H;
        float* ds = dgh + n * 4 * H;
        if (mask[row] == 0.0f) {
            dh_prev[i] = dh[i];
            for (int k = 0; k < 4; ++k) dx[k * H + j] = ds[k * H + j] = 0.0f;
            continue;
        }
        const float* g = gates + n * 4 * H;
        const float ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
        const float tc = tanh_c[i];
        const float dht = dh[i] + gout[row * H + j];
        const float dct = dc[i] + dht * og * (1.0f - tc * tc);
        dc[i] = dct * fg;
        dh_prev[i] = 0.0f;
        const float d[4] = {dct * gg * ig * (1.0f - ig), dct * c_prev[i] * fg * (1.0f - fg),
                            dct * ig * (1.0f - gg * gg), dht * tc * og * (1.0f - og)};
        for (int k = 0; k < 4; ++k) dx[k * H + j] = ds[k * H + j] = d[k];
    }
}
