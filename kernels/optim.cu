// Fused optimizer updates and the global gradient norm over ALL parameters
// in one launch each (optim/{sgd,adam}.rs are the reference).
//
// The host uploads a table of chunks, one block per chunk: a chunk is up to
// OPT_CHUNK consecutive elements of one parameter, with the addresses of
// the parameter, its gradient and its state buffers.
//
// A training step on the GPU is guarded (optim/guard.rs): grad_sq_sum and
// step_guard write a StepStatus, and the update kernels read it: they apply
// its clip scale to every gradient, and change nothing at all when it says
// skip (a non-finite loss or norm), so the host can check finiteness with a
// single read-back after the whole update is queued. A null status means an
// unguarded update (scale 1, never skipped).

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

// Written by grad_sq_sum (sq_sum) and step_guard (the rest); read back by
// the host in one copy. Mirrors StepStatus in optim/guard.rs.
struct StepStatus {
    double sq_sum;  // sum of squares of every gradient (zeroed by the host)
    double norm;    // sqrt(sq_sum)
    float scale;    // clip factor applied to every gradient (1: no clipping)
    int skip;       // 1: the loss or the norm is not finite; update nothing
    float loss, va, au, expr;
};

__device__ __forceinline__ bool opt_skip(const StepStatus* st) { return st != nullptr && st->skip; }
__device__ __forceinline__ float opt_scale(const StepStatus* st) { return st == nullptr ? 1.0f : st->scale; }

extern "C" __global__ void adam_step(AdamParams a, const OptChunk* __restrict__ chunks,
                                     const StepStatus* __restrict__ status) {
    if (opt_skip(status)) return;
    const float scale = opt_scale(status);
    const OptChunk c = chunks[blockIdx.x];
    float* w = (float*)c.p + c.offset;
    const float* g = (const float*)c.g + c.offset;
    float* m = (float*)c.s1 + c.offset;
    float* v = (float*)c.s2 + c.offset;
    for (u64 i = threadIdx.x; i < c.len; i += blockDim.x) {
        float wi = w[i], gi = g[i] * scale;
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

extern "C" __global__ void sgd_step(SgdParams s, const OptChunk* __restrict__ chunks,
                                    const StepStatus* __restrict__ status) {
    if (opt_skip(status)) return;
    const float scale = opt_scale(status);
    const OptChunk c = chunks[blockIdx.x];
    float* w = (float*)c.p + c.offset;
    const float* g = (const float*)c.g + c.offset;
    float* b = (float*)c.s1 + c.offset;  // unused without momentum
    for (u64 i = threadIdx.x; i < c.len; i += blockDim.x) {
        float d = g[i] * scale + s.weight_decay * w[i];
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

struct GuardParams {
    double max_norm;  // clip threshold; <= 0: no clipping
};

// Finiteness from the exponent bits: independent of fast-math flags and of
// the math headers (kernels are compiled without any).
__device__ __forceinline__ bool opt_finite_f(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }
__device__ __forceinline__ bool opt_finite_d(double x) {
    return (__double_as_longlong(x) & 0x7ff0000000000000ll) != 0x7ff0000000000000ll;
}

// One thread, after grad_sq_sum: the norm, the skip flag and the clip scale
// (max_norm / (norm + 1e-6) above the threshold, as clip_grad_norm does on
// the host), and the loss terms copied next to them for the read-back.
extern "C" __global__ void step_guard(GuardParams gp, StepStatus* st, const float* loss,
                                      const float* va, const float* au, const float* expr) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    const double norm = sqrt(st->sq_sum);
    st->norm = norm;
    st->loss = *loss;
    st->va = *va;
    st->au = *au;
    st->expr = *expr;
    st->skip = !(opt_finite_f(*loss) && opt_finite_d(norm));
    st->scale = (gp.max_norm > 0.0 && norm > gp.max_norm) ? (float)(gp.max_norm / (norm + 1e-6)) : 1.0f;
}
