// Per-sample token gather (ops/gather_tokens.rs is the reference):
// y[n, j, :] = x[n, idx[n, j], :] for x [N, T, D], idx [N, K] (u32, checked
// on the host to be below T). The backward is a gather as well: the host
// lists, for every token row r = n·T + t, the j with idx[n, j] == t in
// ascending order (CSR: offsets [N·T + 1], sources [N·K]), and each dx
// element sums its sources in that order. Deterministic, no atomics, every
// dx element written (zero where no token was picked). Indices are u32 and
// N·K < 2^32 (TokenIndex::new refuses more); element offsets are u64.

struct GatherTokensParams {
    u64 n, t, k, d;
};

extern "C" __global__ void gather_tokens_forward(GatherTokensParams p, const u32* __restrict__ idx,
                                                 const float* __restrict__ x, float* __restrict__ y) {
    MT_FOR_EACH(o, p.n * p.k * p.d) {
        const u64 row = o / p.d, col = o % p.d;
        y[o] = x[((row / p.k) * p.t + idx[row]) * p.d + col];
    }
}

extern "C" __global__ void gather_tokens_backward(GatherTokensParams p, const u32* __restrict__ offsets,
                                                  const u32* __restrict__ sources, const float* __restrict__ dy,
                                                  float* __restrict__ dx) {
    MT_FOR_EACH(i, p.n * p.t * p.d) {
        const u64 row = i / p.d, col = i % p.d, sample = row / p.t;
        float s = 0.0f;
        for (u32 e = offsets[row]; e < offsets[row + 1]; ++e) s += dy[(sample * p.k + sources[e]) * p.d + col];
        dx[i] = s;
    }
}
