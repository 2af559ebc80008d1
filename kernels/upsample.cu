// Nearest-neighbour upsampling of NHWC by an integer factor (ops/upsample.rs
// is the reference). Backward gathers each input's f x f block of output
// gradients: deterministic, no atomics.

struct UpsampleParams {
    u64 n, h, w, c;  // input
    u64 f;
};

extern "C" __global__ void upsample_nearest_forward(UpsampleParams p, const float* __restrict__ x,
                                                    float* __restrict__ y) {
    const u64 ho = p.h * p.f, wo = p.w * p.f;
    MT_FOR_EACH(o, p.n * ho * wo * p.c) {
        const u64 c = o % p.c, pix = o / p.c;
        const u64 ow = pix % wo, oh = pix / wo % ho, n = pix / (wo * ho);
        y[o] = x[((n * p.h + oh / p.f) * p.w + ow / p.f) * p.c + c];
    }
}

extern "C" __global__ void upsample_nearest_backward(UpsampleParams p, const float* __restrict__ g,
                                                     float* __restrict__ dx) {
    const u64 ho = p.h * p.f, wo = p.w * p.f;
    MT_FOR_EACH(i, p.n * p.h * p.w * p.c) {
        const u64 c = i % p.c, pix = i / p.c;
        const u64 iw = pix % p.w, ih = pix / p.w % p.h, n = pix / (p.w * p.h);
        float s = 0.0f;
        for (u64 a = 0; a < p.f; ++a)
            for (u64 b = 0; b < p.f; ++b) s += g[((n * ho + ih * p.f + a) * wo + iw * p.f + b) * p.c + c];
        dx[i] = s;
    }
}
