// Fused optimizer updates and the global gradient norm over ALL parameters
// in one launch each (optim/{sgd,adam}.rs are the reference).
//
// The host uploads a table of chunks, one block per chunk: a chunk is up to
// OPT_CHUNK consecutive elements of one parameter, with the addresses of
// the parameter, its gradient and its state buffers.

struct OptChunk {
    u64 p, g, s1, s2;  // parameter, gradient, state (momentum / Adam m, v)
    u64 offset, len;   // element range inside the parameter
    u64 first;         // SGD: 1 when the momentum buffer starts this step
    u64 pad;
};

struct AdamParams {
    float lr, beta1, beta2, eps, weight_decay;
    float bc1, bc2;  // bias corrections 1 - beta^t, computed on the host in f64
    int decoupled;   // AdamW
};

extern "C" __global__ void adam_step(AdamParams a, const OptChunk* __restrict__ chunks) {
    const OptChunk c = chunks[blockIdx.x];
    float* w = (float*)c.p + c.offset;
    const float* g = (const float*)c.g + c.offset;
    float* m = (float*)c.s1 + c.offset;
    float* v = (float*)c.s2 + c.offset;
    for (u64 i = threadIdx.x; i < c.len; i += blockDim.x) {
        float wi = w[i], gi = g[i];
        if (a.decoupled) wi -= a.lr * a.weight_decay * wi;
        else gi += a.weight_decay * wi;
        const float mi = a.beta1 * m[i] + (1.0f - a.beta1) * gi;
        const float vi = a.beta2 * v[i] + (1.0f - a.beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - a.lr * (mi / a.bc1) / (sqrtf(vi / a.bc2) + a.eps);
    }
}

struct SgdParams {
    float lr, momentum, dampening, weight_decay;
    int nesterov;
    int pad;
};

extern "C" __global__ void sgd_step(SgdParams s, const OptChunk* __restrict__ chunks) {
    const OptChunk c = chunks[blockIdx.x];
    float* w = (float*)c.p + c.offset;
    const float* g = (const float*)c.g + c.offset;
    float* b = (float*)c.s1 + c.offset;  // unused without momentum
    for (u64 i = threadIdx.x; i < c.len; i += blockDim.x) {
        float d = g[i] + s.weight_decay * w[i];
        if (s.momentum != 0.0f) {
            const float bi = c.first ? d : s.momentum * b[i] + (1.0f - s.dampening) * d;
            b[i] = bi;
            d = s.nesterov ? d + s.momentum * bi : bi;
        }
        w[i] -= s.lr * d;
    }
}

struct NormParams {
    u64 chunks;
};

// out[0] (a double, zeroed by the host) += sum of squares of every gradient.
extern "C" __global__ void grad_sq_sum(NormParams np, const OptChunk* __restrict__ chunks, double* out) {
    __shared__ float scratch[32];
    const OptChunk c = chunks[blockIdx.x];
    const float* g = (const float*)c.g + c.offset;
    float s = 0.0f;
    for (u64 i = threadIdx.x; i < c.len; i += blockDim.x) s += g[i] * g[i];
    s = mt_block_sum(s, scratch);
    if (threadIdx.x == 0) atomicAdd(out, (double)s);
}
