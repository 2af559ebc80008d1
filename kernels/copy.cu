// Block copies for concat and narrow along an axis (Tensor::concat,
// Tensor::narrow are the reference): viewing source and destination as
// [outer, width] rows, dst[o * dst_w + dst_off + i] = src[o * src_w + src_off + i]
// for i < w.

struct CopyParams {
    u64 outer;
    u64 w;
    u64 src_w, src_off;
    u64 dst_w, dst_off;
};

extern "C" __global__ void copy_blocks(CopyParams p, const float* __restrict__ src, float* __restrict__ dst) {
    MT_FOR_EACH(i, p.outer * p.w) {
        const u64 o = i / p.w, j = i - o * p.w;
        dst[o * p.dst_w + p.dst_off + j] = src[o * p.src_w + p.src_off + j];
    }
}
