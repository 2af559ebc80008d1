// Elementwise unary ops, forward and backward (tensor_math/unary.rs and
// ops/unary.rs are the reference).
// The derivative is computed from the saved input or output, whichever the
// op saves, exactly as the CPU reference does.

// erff, expf and tanhf are NVRTC built-ins: no header needed.

enum UnaryOp { U_SCALE = 0, U_RELU = 1, U_LEAKY_RELU = 2, U_SIGMOID = 3, U_TANH = 4, U_EXP = 5, U_LOG = 6,
               U_GELU = 7, U_GELU_TANH = 8 };

#define MT_SQRT1_2 0.70710678118654752f
#define MT_INV_SQRT_2PI 0.39894228040143268f
#define MT_GELU_TANH_C 0.79788456080286536f  // sqrt(2/pi)
#define MT_GELU_TANH_A 0.044715f

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
        case U_GELU: return 0.5f * x * (1.0f + erff(x * MT_SQRT1_2));
        case U_GELU_TANH: return 0.5f * x * (1.0f + tanhf(MT_GELU_TANH_C * (x + MT_GELU_TANH_A * x * x * x)));
        default: return logf(x);
    }
}

// s is the saved input (relu, leaky_relu, log, gelu, gelu_tanh) or output
// (sigmoid, tanh, exp).
__device__ __forceinline__ float unary_df(const UnaryParams& p, float s) {
    switch (p.op) {
        case U_SCALE: return p.alpha;
        case U_RELU: return s > 0.0f ? 1.0f : 0.0f;
        case U_LEAKY_RELU: return s > 0.0f ? 1.0f : p.alpha;
        case U_SIGMOID: return s * (1.0f - s);
        case U_TANH: return 1.0f - s * s;
        case U_EXP: return s;
        case U_GELU: return 0.5f * (1.0f + erff(s * MT_SQRT1_2)) + s * MT_INV_SQRT_2PI * expf(-0.5f * s * s);
        case U_GELU_TANH: {
            const float t = tanhf(MT_GELU_TANH_C * (s + MT_GELU_TANH_A * s * s * s));
            return 0.5f * (1.0f + t) + 0.5f * s * (1.0f - t * t) * MT_GELU_TANH_C * (1.0f + 3.0f * MT_GELU_TANH_A * s * s);
        }
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
