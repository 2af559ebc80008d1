// Sum (times a scale) of a contiguous tensor over any set of axes, down to
// the kept shape (ops/reduce.rs and strided::sum_to_shape are the reference).
//
// Block (32, 8): threadIdx.x walks 32 consecutive outputs (coalesced when the
// kept axes are innermost, as for an NHWC per-channel sum), threadIdx.y and
// blockIdx.y split the reduced elements. With gridDim.y > 1 the partial sums
// meet by atomicAdd in y, which the host zeroed.

struct ReduceParams {
    u64 out_n;
    u64 red_n;
    u64 rank;
    u64 kdims[MT_MAX_RANK];  // kept dims (1 on reduced axes)
    u64 rdims[MT_MAX_RANK];  // reduced dims (1 on kept axes)
    u64 strides[MT_MAX_RANK];  // the input's strides
    float scale;
    int pad;
};

extern "C" __global__ void reduce_sum(ReduceParams p, const float* __restrict__ x, float* __restrict__ y) {
    __shared__ float part[8][33];
    const u64 o = (u64)blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (o < p.out_n) {
        const u64 base = mt_offset((int)p.rank, p.kdims, p.strides, o);
        for (u64 r = (u64)blockIdx.y * 8 + threadIdx.y; r < p.red_n; r += (u64)gridDim.y * 8)
            acc += x[base + mt_offset((int)p.rank, p.rdims, p.strides, r)];
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && o < p.out_n) {
        float s = 0.0f;
        for (int k = 0; k < 8; ++k) s += part[k][threadIdx.x];
        s *= p.scale;
        if (gridDim.y > 1) atomicAdd(&y[o], s);
        else y[o] = s;
    }
}
