// add, sub, mul, div with broadcasting, their backward partials, and the
// broadcast-copy that reduce's backward needs (tensor_math/binary.rs and
// ops/elementwise.rs are the reference).

enum BinOp { B_ADD = 0, B_SUB = 1, B_MUL = 2, B_DIV = 3 };

// Output dims and both operands' strides (0 on broadcast axes), after the
// host merged contiguous axes.
struct BinaryParams {
    u64 n;
    u64 rank;
    u64 dims[MT_MAX_RANK];
    u64 sa[MT_MAX_RANK];
    u64 sb[MT_MAX_RANK];
    int op;
    float alpha;  // broadcast_scale's factor
};

extern "C" __global__ void binary_forward(BinaryParams p, const float* __restrict__ a,
                                          const float* __restrict__ b, float* __restrict__ y) {
    MT_FOR_EACH(i, p.n) {
        u64 oa, ob;
        mt_offsets2((int)p.rank, p.dims, p.sa, p.sb, i, oa, ob);
        const float x = a[oa], z = b[ob];
        float r;
        switch (p.op) {
            case B_ADD: r = x + z; break;
            case B_SUB: r = x - z; break;
            case B_MUL: r = x * z; break;
            default: r = x / z; break;
        }
        y[i] = r;
    }
}

// Per-element partials at the output shape; ga or gb may be null (not
// needed). The host sums them down to the operand shapes afterwards.
extern "C" __global__ void binary_backward(BinaryParams p, const float* __restrict__ g,
                                           const float* __restrict__ a, const float* __restrict__ b,
                                           float* __restrict__ ga, float* __restrict__ gb) {
    MT_FOR_EACH(i, p.n) {
        u64 oa, ob;
        mt_offsets2((int)p.rank, p.dims, p.sa, p.sb, i, oa, ob);
        const float gi = g[i];
        if (ga) {
            float r;
            switch (p.op) {
                case B_ADD: case B_SUB: r = gi; break;
                case B_MUL: r = gi * b[ob]; break;
                default: r = gi / b[ob]; break;
            }
            ga[i] = r;
        }
        if (gb) {
            float r;
            switch (p.op) {
                case B_ADD: r = gi; break;
                case B_SUB: r = -gi; break;
                case B_MUL: r = gi * a[oa]; break;
                default: { const float q = b[ob]; r = -gi * a[oa] / (q * q); } break;
            }
            gb[i] = r;
        }
    }
}

// y[i] = alpha * a[offset_a(i)]: broadcasts a reduced tensor back (sum/mean backward).
extern "C" __global__ void broadcast_scale(BinaryParams p, const float* __restrict__ a, float* __restrict__ y) {
    MT_FOR_EACH(i, p.n) y[i] = p.alpha * a[mt_offset((int)p.rank, p.dims, p.sa, i)];
}

struct ScaleParams {
    u64 n;
};

// y = x * s[0] / d[0] (d null: / 1) with s and d on the device: a loss
// gradient times the backward seed (over a count known only on the device),
// without reading either back to the host.
extern "C" __global__ void scale_by_device_scalar(ScaleParams p, const float* __restrict__ s,
                                                  const float* __restrict__ d, const float* __restrict__ x,
                                                  float* __restrict__ y) {
    const float k = d ? s[0] / d[0] : s[0];
    MT_FOR_EACH(i, p.n) y[i] = x[i] * k;
}
