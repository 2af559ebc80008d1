// Elementwise unary ops, forward and backward (tensor_math/unary.rs and
// ops/unary.rs are the reference).
// The derivative is computed from the saved input or output, whichever the
// op saves, exactly as the CPU reference does.

enum UnaryOp { U_SCALE = 0, U_RELU = 1, U_LEAKY_RELU = 2, U_SIGMOID = 3, U_TANH = 4, U_EXP = 5, U_LOG = 6 };

struct UnaryParams {
    u64 n;
    int op;
    float alpha;  // scale factor or leaky slope
};

__device__ __forceinline__ float unary_f(const UnaryParams& p, float x) {
    switch (p.op) {
        case U_SCALE: return x * p.alpha;
        case U_RELU: return fmaxf(x, 0.0f);
        case U_LEAKY_RELU: return x > 0.0f ? x : x * p.alpha;
        case U_SIGMOID: {
            // Overflow-free in both directions.
            if (x >= 0.0f) return 1.0f / (1.0f + __expf(-x));
            const float e = __expf(x);
            return e / (1.0f + e);
        }
        case U_TANH: return tanhf(x);
        case U_EXP: return expf(x);
        default: return logf(x);
    }
}

// s is the saved input (relu, leaky_relu, log) or output (sigmoid, tanh, exp).
__device__ __forceinline__ float unary_df(const UnaryParams& p, float s) {
    switch (p.op) {
        case U_SCALE: return p.alpha;
        case U_RELU: return s > 0.0f ? 1.0f : 0.0f;
        case U_LEAKY_RELU: return s > 0.0f ? 1.0f : p.alpha;
        case U_SIGMOID: return s * (1.0f - s);
        case U_TANH: return 1.0f - s * s;
        case U_EXP: return s;
        default: return 1.0f / s;
    }
}

extern "C" __global__ void unary_forward(UnaryParams p, const float* __restrict__ x, float* __restrict__ y) {
    MT_FOR_EACH(i, p.n) y[i] = unary_f(p, x[i]);
}

extern "C" __global__ void unary_backward(UnaryParams p, const float* __restrict__ saved,
                                          const float* __restrict__ dy, float* __restrict__ dx) {
    MT_FOR_EACH(i, p.n) dx[i] = dy[i] * unary_df(p, p.op == U_SCALE ? 0.0f : saved[i]);
}
