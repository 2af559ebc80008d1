// Inverted dropout and drop path, forward and backward in one kernel
// (ops/dropout.rs is the reference): out = in * (keep(seed, i / group) ?
// scale : 0), group = 1 for dropout and the elements of one sample for drop
// path. The mask is a counter-based hash of (seed, draw index), so it is
// never stored or uploaded: backward recomputes it from the same seed. Drawing it on the
// host cost a random draw per element and an upload of the mask, which at
// batch 256 made the host the bottleneck of the whole step.

struct DropoutParams {
    u64 n;
    u64 seed;
    u64 group;      // consecutive elements sharing one draw
    u32 threshold;  // drop when the hash's top 24 bits are below this
    float scale;    // 1 / (1 - p)
};

// Must equal `mask_bits` in ops/dropout.rs bit for bit: the SplitMix64
// finaliser over the seed advanced by i + 1 golden-ratio steps.
__device__ __forceinline__ u32 dropout_bits(u64 seed, u64 i) {
    u64 z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (u32)(z >> 40);
}

extern "C" __global__ void dropout_apply(DropoutParams p, const float* __restrict__ in, float* __restrict__ out) {
    MT_FOR_EACH(i, p.n) {
        const u64 draw = p.group == 1 ? i : i / p.group;  // no 64-bit division for dropout
        out[i] = dropout_bits(p.seed, draw) < p.threshold ? 0.0f : in[i] * p.scale;
    }
}
