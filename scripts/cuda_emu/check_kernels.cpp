// Runs the CUDA kernels under the CPU emulation of shim.h against naive
// double-precision references (odd sizes, stride 2, groups, masks, multi-tile
// and split-K cases). Build and run with scripts/cuda_emu/run.sh.
#include "kernels_emu.h"
#include <random>
#include <tuple>
static std::mt19937 rng(1);
std::vector<float> randv(size_t n, float lo = -1, float hi = 1) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}
void check(const char* what, const float* a, const std::vector<double>& r, double atol=1e-4, double rtol=1e-4) {
    double worst = 0; for (size_t i = 0; i < r.size(); ++i) { double e = fabs(a[i] - r[i]) / (atol + rtol * fabs(r[i])); if (!(e <= worst)) worst = e; if (!(e <= 1.0)) { printf("%s: FAIL at %zu: %f vs %f\n", what, i, a[i], r[i]); exit(1);} }
    printf("%s ok (worst err/tol %.3f, %zu values)\n", what, worst, r.size());
}
unsigned short to_bf16(float f) { unsigned u; memcpy(&u, &f, 4); u += 0x7fffu + ((u >> 16) & 1u); return (unsigned short)(u >> 16); }
// A producer's bf16 copy (mt_store_bf16) must be exactly its f32 output rounded.
void check_bf16_copy(const char* what, const std::vector<float>& v, const std::vector<unsigned short>& b) {
    for (size_t i = 0; i < v.size(); ++i) if (b[i] != to_bf16(v[i])) { printf("%s: FAIL at %zu: %04x vs %04x\n", what, i, b[i], to_bf16(v[i])); exit(1); }
    printf("%s ok (exact, %zu values)\n", what, v.size());
}
// splits > 1: split-K into slices of k_chunk, added atomically onto a zeroed C.
void gemm_case(int batch, int m, int k, int n, bool ta, bool tb, bool bias, int splits = 1, int k_chunk = 0) {
    auto A = randv((size_t)batch*m*k), B = randv((size_t)batch*k*n), bi = randv(n);
    std::vector<float> C((size_t)batch*m*n, splits > 1 ? 0.f : NAN);
    if (splits == 1) k_chunk = (k + 7) / 8 * 8;
    GemmParams p{(u64)m,(u64)n,(u64)k, ta?1ull:(u64)k, ta?(u64)m:1ull, (u64)m*k, tb?1ull:(u64)n, tb?(u64)k:1ull, (u64)k*n, (u64)m*n, 0.f, bias, (u64)splits, (u64)k_chunk};
    launch({(unsigned)((n+127)/128),(unsigned)((m+127)/128),(unsigned)(batch*splits)},{256,1,1},[&]{ gemm_f32(p, A.data(), B.data(), bi.data(), C.data()); });
    std::vector<double> R(C.size());
    for (int b=0;b<batch;++b) for (int i=0;i<m;++i) for (int j=0;j<n;++j) { double s = bias?bi[j]:0; for (int q=0;q<k;++q) { double a = ta? A[b*m*k + q*m + i] : A[b*m*k + i*k + q]; double bb = tb? B[b*k*n + j*k + q] : B[b*k*n + q*n + j]; s += a*bb; } R[(size_t)b*m*n+i*n+j]=s; }
    char name[100]; snprintf(name, 100, "gemm b%d %dx%dx%d ta%d tb%d splits %d", batch,m,k,n,ta,tb,splits); check(name, C.data(), R);
}
struct G { int n,h,w,c,k,r,s,sh,sw,pt,pb,pl,pr,dh,dw,groups; int p() const { return (h+pt+pb-dh*(r-1)-1)/sh+1; } int q() const { return (w+pl+pr-dw*(s-1)-1)/sw+1; } };
void conv_case(G g) {
    int P = g.p(), Q = g.q(), cg = g.c/g.groups, kg = g.k/g.groups;
    auto X = randv((size_t)g.n*g.h*g.w*g.c), W = randv((size_t)g.k*g.r*g.s*cg), DY = randv((size_t)g.n*P*Q*g.k), bias = randv(g.k);
    ConvParams p{g.n,g.h,g.w,g.c,g.k,g.r,g.s,P,Q,g.sh,g.sw,g.pt,g.pl,g.dh,g.dw,g.groups,1,1};
    // naive references
    std::vector<double> Y((size_t)g.n*P*Q*g.k), DX((size_t)g.n*g.h*g.w*g.c, 0), DW(W.size(), 0), DWT(W.size(), 0);
    auto tf32 = [](float v) { return (double)__uint_as_float(mt_tf32(v)); };
    for (int n=0;n<g.n;++n) for (int pp=0;pp<P;++pp) for (int qq=0;qq<Q;++qq) for (int k=0;k<g.k;++k) {
        int grp = k/kg; double acc = bias[k];
        for (int r=0;r<g.r;++r) for (int s=0;s<g.s;++s) for (int c=0;c<cg;++c) {
            int hh = pp*g.sh - g.pt + r*g.dh, ww = qq*g.sw - g.pl + s*g.dw;
            if (hh<0||hh>=g.h||ww<0||ww>=g.w) continue;
            size_t xo = ((size_t)(n*g.h+hh)*g.w+ww)*g.c + grp*cg + c, wo = ((size_t)(k*g.r+r)*g.s+s)*cg + c;
            acc += X[xo]*W[wo];
            double d = DY[((size_t)(n*P+pp)*Q+qq)*g.k+k];
            DX[xo] += d*W[wo]; DW[wo] += d*X[xo];
            DWT[wo] += tf32((float)d) * tf32(X[xo]);  // the TF32 kernels' operands
        }
        Y[((size_t)(n*P+pp)*Q+qq)*g.k+k] = acc;
    }
    // fprop: both tile shapes and 1 or 3 K splits (grid as ops/conv/cuda.rs
    // sets it up; split-K adds into an output conv_fill_bias prepared).
    auto fprop = [&](const char* name, bool n64, ConvParams q, const float* in, const float* w, const float* b,
                     const std::vector<double>& ref) {
        int cols = q.k / q.groups, rows = q.n * q.p * q.q, bm = n64 ? 256 : 128, bn = n64 ? 64 : 128;
        for (int splits : {1, 3}) {
            q.splits = splits;
            std::vector<float> out(ref.size(), NAN);
            if (splits > 1) launch({2,1,1},{256,1,1},[&]{ conv_fill_bias(q, b, out.data()); });
            launch({(unsigned)((cols+bn-1)/bn),(unsigned)((rows+bm-1)/bm*splits),(unsigned)q.groups},{256,1,1},[&]{
                if (n64) conv_fprop_n64(q, in, w, b, out.data()); else conv_fprop(q, in, w, b, out.data()); });
            char full[100]; snprintf(full, 100, "%s split%d", name, splits);
            check(full, out.data(), ref);
        }
    };
    fprop("conv fprop", false, p, X.data(), W.data(), bias.data(), Y);
    fprop("conv fprop_n64", true, p, X.data(), W.data(), bias.data(), Y);
    std::vector<float> dx(DX.size(), NAN), dw(DW.size(), 0.f);
    ConvParams pd = p; pd.has_bias = 0;
    // dx + bias (conv_transpose2d's forward adds a bias over C).
    auto cbias = randv(g.c);
    std::vector<double> DXB(DX);
    for (size_t i = 0; i < DXB.size(); ++i) DXB[i] += cbias[i % g.c];
    ConvParams pf{g.n,P,Q,g.k, g.c,g.r,g.s, g.h,g.w, 1,1, g.dh*(g.r-1)-g.pt, g.dw*(g.s-1)-g.pl, g.dh,g.dw, g.groups,1,0};
    for (int with_bias : {0, 1}) {
        ConvParams pb = pd; pb.has_bias = with_bias;
        const std::vector<double>& ref = with_bias ? DXB : DX;
        // Stride phases (every stride; the host takes them for stride > 1).
        for (bool n64 : {false, true}) {
            int bm = n64 ? 256 : 128, bn = n64 ? 64 : 128, phase_rows = g.n*((g.h+g.sh-1)/g.sh)*((g.w+g.sw-1)/g.sw);
            std::fill(dx.begin(), dx.end(), NAN);
            launch({(unsigned)((cg+bn-1)/bn),(unsigned)((phase_rows+bm-1)/bm),(unsigned)(g.groups*g.sh*g.sw)},{256,1,1},[&]{
                if (n64) conv_dgrad_n64(pb, DY.data(), W.data(), cbias.data(), dx.data()); else conv_dgrad(pb, DY.data(), W.data(), cbias.data(), dx.data()); });
            check(n64 ? "conv dgrad_n64 (stride phases)" : "conv dgrad (stride phases)", dx.data(), ref);
        }
        // Scatter (few input channels): dx filled with the bias, then products added.
        std::fill(dx.begin(), dx.end(), NAN);
        ConvParams pfb = pf; pfb.has_bias = with_bias;
        launch({2,1,1},{256,1,1},[&]{ conv_fill_bias(pfb, cbias.data(), dx.data()); });
        launch({(unsigned)((g.r*g.s*cg+63)/64),(unsigned)((g.n*P*Q+255)/256),(unsigned)g.groups},{256,1,1},[&]{
            conv_dgrad_scatter(pb, DY.data(), W.data(), dx.data()); });
        check("conv dgrad_scatter", dx.data(), ref);
    }
    if (g.sh == 1 && g.sw == 1) {
        // Stride 1: dgrad = fprop over dy with flipped weights, K and C swapped.
        std::vector<float> wf(W.size(), NAN);
        launch({3,1,1},{256,1,1},[&]{ conv_flip_weights(pd, W.data(), wf.data()); });
        fprop("conv dgrad as fprop", false, pf, DY.data(), wf.data(), nullptr, DX);
        fprop("conv dgrad as fprop_n64", true, pf, DY.data(), wf.data(), nullptr, DX);
    }
    // f32 FMAs, then TF32 tensor cores (against the TF32-rounded reference),
    // with the same tiles, grids and splits.
    for (bool tf : {false, true}) for (bool m64 : {false, true}) for (int splits : {1, 3}) {
        std::fill(dw.begin(), dw.end(), 0.f);
        ConvParams pw = p; pw.splits = splits; pw.has_bias = 0;
        int cols = g.r*g.s*cg, bm = m64 ? 64 : 128, bn = m64 ? 256 : 128;
        launch({(unsigned)((cols+bn-1)/bn),(unsigned)(((kg+bm-1)/bm)*splits),(unsigned)g.groups},{256,1,1},[&]{
            auto k = tf ? (m64 ? conv_wgrad_m64_tf32 : conv_wgrad_tf32) : (m64 ? conv_wgrad_m64 : conv_wgrad);
            k(pw, X.data(), DY.data(), dw.data()); });
        char name[64]; snprintf(name, 64, "conv wgrad%s%s split%d", m64 ? "_m64" : "", tf ? "_tf32" : "", splits);
        check(name, dw.data(), tf ? DWT : DW);
    }
}
void tiles() {
    gemm_case(1, 7, 13, 5, false, false, true);
    gemm_case(1, 129, 9, 131, false, false, false);
    gemm_case(2, 17, 33, 9, true, false, false);
    gemm_case(2, 17, 33, 9, false, true, false);
    gemm_case(2, 17, 33, 9, true, true, false);
    gemm_case(1, 130, 64, 129, false, true, true);
    // Split-K: three slices of 104 over K = 300 (the last one short), bias once.
    gemm_case(1, 19, 300, 21, false, false, true, 3, 104);
    gemm_case(2, 9, 300, 140, true, true, true, 3, 104);
    conv_case({2,9,11,5, 7,3,3, 1,1, 1,1,1,1, 1,1, 1});
    conv_case({2,9,11,6, 4,3,3, 2,2, 1,1,1,1, 1,1, 1});
    conv_case({1,10,9,8, 6,3,2, 1,1, 1,0,2,1, 1,1, 2});
    conv_case({2,12,12,4, 5,3,3, 1,1, 2,2,2,2, 2,2, 1});
    conv_case({2,7,7,12, 12,3,3, 1,1, 1,1,1,1, 1,1, 12});
    conv_case({3,6,5,40, 130,1,1, 1,1, 0,0,0,0, 1,1, 1});
    conv_case({4,15,13,3, 9,5,5, 2,3, 2,2,2,2, 1,1, 1});
    // Wider than one 64-channel tile on both sides (fprop_n64 and wgrad_m64
    // need two column / row tiles), and a 1x1 with padding (the flipped
    // fprop's padding is negative).
    conv_case({2,5,7,72, 66,3,3, 1,1, 1,1,1,1, 1,1, 1});
    conv_case({1,4,5,3, 5,1,1, 1,1, 1,1,1,1, 1,1, 1});
    // Stride phases: stride 3 (phases without taps: 1x1 taps only reach
    // one of 9), dilation with stride (gcd(sh, dh) = 2: half the phases
    // have no taps), asymmetric padding with groups and stride, a phase
    // grid taller than one tile (70 input channels: 128x128 tiles), the
    // stem 7x7/2 on 3 channels, and a 4x4/2 (conv_transpose2d's shape).
    conv_case({2,10,11,4, 6,3,3, 3,3, 1,1,1,1, 1,1, 1});
    conv_case({1,9,8,5, 4,1,1, 3,3, 0,0,0,0, 1,1, 1});
    conv_case({2,11,10,4, 5,3,3, 2,2, 2,2,2,2, 2,2, 1});
    conv_case({1,9,10,8, 6,3,2, 2,3, 1,0,2,1, 1,3, 2});
    conv_case({1,7,6,70, 9,3,3, 2,2, 1,1,1,1, 1,1, 1});
    conv_case({2,22,23,3, 16,7,7, 2,2, 3,3,3,3, 1,1, 1});
    conv_case({1,16,14,8, 12,4,4, 2,2, 1,1,1,1, 1,1, 1});
    // Many channels on a small image: fprop over a K sum of 3*3*80 split 3 ways.
    conv_case({1,4,4,80, 70,3,3, 1,1, 1,1,1,1, 1,1, 1});
}

// Batch norm (+ ReLU) through the row-parallel layout: float4 (c % 4 == 0)
// and scalar lanes, several block-rows (the last one short), two channel
// groups when c / 4 > 256, apply and dx passes in reverse block-row order.
void bn_case(int m, int c, int splits, int relu, int training) {
    auto x = randv(m * c, 2, 5), g = randv(m * c), gam = randv(c, .5, 1.5), bet = randv(c, -.3, .3);
    auto rm = randv(c), rv = randv(c, .5, 2);
    std::vector<float> rm0 = rm, rv0 = rv, stats(2 * c), y(m * c, NAN), dw(c, NAN), db(c, NAN), dx(m * c, NAN);
    int vec = c % 4 == 0 ? 4 : 1, q = c / vec, cpb = std::min(q, 256);
    u64 chunk = (m + splits - 1) / splits;
    dim3 grid{(unsigned)((q + cpb - 1) / cpb), (unsigned)((m + chunk - 1) / chunk), 1};
    BnParams p{(u64)m, (u64)c, chunk, grid.y, 1e-5f, 0.1f, training, relu, vec, 0};
    BnParams rev = p; rev.reverse = 1;
    std::vector<float> ws(grid.y * c * 3);
    dim3 fin{(unsigned)c, 1, 1};
    if (training) launch(grid, {256, 1, 1}, [&] { bn_stats(p, x.data(), ws.data()); });
    launch(fin, {256, 1, 1}, [&] { bn_finalize(p, ws.data(), rm.data(), rv.data(), stats.data()); });
    std::vector<unsigned short> y16(m * c, 0xffff), dx16(m * c, 0xffff);
    launch(grid, {256, 1, 1}, [&] { bn_apply(rev, x.data(), stats.data(), gam.data(), bet.data(), y.data(), y16.data()); });
    launch(grid, {256, 1, 1}, [&] { bn_backward_reduce(p, g.data(), x.data(), stats.data(), gam.data(), bet.data(), ws.data()); });
    launch(fin, {256, 1, 1}, [&] { bn_backward_finalize(p, ws.data(), dw.data(), db.data()); });
    launch(grid, {256, 1, 1}, [&] { bn_backward_dx(rev, g.data(), x.data(), stats.data(), gam.data(), bet.data(), dw.data(), db.data(), dx.data(), dx16.data()); });
    std::vector<double> mean(c, 0), var(c, 0), Y(m * c), DX(m * c), SG(c, 0), SGH(c, 0), RM(c), RV(c), G(m * c);
    for (int i = 0; i < m; ++i) for (int j = 0; j < c; ++j) mean[j] += x[i * c + j] / (double)m;
    for (int i = 0; i < m; ++i) for (int j = 0; j < c; ++j) var[j] += (x[i * c + j] - mean[j]) * (x[i * c + j] - mean[j]) / m;
    for (int j = 0; j < c; ++j) {
        RM[j] = training ? 0.9 * rm0[j] + 0.1 * mean[j] : rm0[j];
        RV[j] = training ? 0.9 * rv0[j] + 0.1 * var[j] * m / (m - 1) : rv0[j];
        if (!training) { mean[j] = rm0[j]; var[j] = rv0[j]; }
    }
    auto xhat = [&](int i, int j) { return (x[i * c + j] - mean[j]) / sqrt(var[j] + 1e-5); };
    for (int i = 0; i < m; ++i) for (int j = 0; j < c; ++j) {
        double pre = gam[j] * xhat(i, j) + bet[j];
        Y[i * c + j] = relu && pre <= 0 ? 0 : pre;
        G[i * c + j] = relu && pre <= 0 ? 0 : g[i * c + j];
        SG[j] += G[i * c + j]; SGH[j] += G[i * c + j] * xhat(i, j);
    }
    for (int i = 0; i < m; ++i) for (int j = 0; j < c; ++j) {
        double k = gam[j] / sqrt(var[j] + 1e-5);
        DX[i * c + j] = training ? k * (G[i * c + j] - SG[j] / m - xhat(i, j) * SGH[j] / m) : k * G[i * c + j];
    }
    printf("bn m=%d c=%d splits=%u relu=%d training=%d: ", m, c, grid.y, relu, training);
    check("running_mean", rm.data(), RM); check("running_var", rv.data(), RV); check("y", y.data(), Y);
    check("dw", dw.data(), SGH); check("db", db.data(), SG); check("dx", dx.data(), DX);
    check_bf16_copy("y bf16 copy", y, y16); check_bf16_copy("dx bf16 copy", dx, dx16);
}
// SE squeeze (global average pool) and channel scale, per sample
// (blockIdx.z) in the row-parallel layout: float4 and scalar lanes, several
// block-rows per sample, dx and dg from one backward pass.
void se_case(int N, int R, int c, int splits) {
    auto x = randv(N * R * c), dy = randv(N * R * c), g = randv(N * c), gy = randv(N * c);
    std::vector<float> pooled(N * c, 0.f), dxp(N * R * c, NAN), y(N * R * c, NAN), dx(N * R * c, NAN), dg(N * c, 0.f);
    int vec = c % 4 == 0 ? 4 : 1, q = c / vec, cpb = std::min(q, 256);
    u64 chunk = (R + splits - 1) / splits;
    dim3 grid{(unsigned)((q + cpb - 1) / cpb), (unsigned)((R + chunk - 1) / chunk), (unsigned)N};
    MtRowsParams p{(u64)R, (u64)c, chunk, grid.y, vec, 0, 1.0f / R, 0};
    MtRowsParams one = p; one.scale = 1.0f;
    launch(grid, {256, 1, 1}, [&] { gap_forward(p, x.data(), pooled.data()); });
    launch(grid, {256, 1, 1}, [&] { gap_backward(p, gy.data(), dxp.data()); });
    // Onto an earlier gradient (flag): dx += g / R.
    auto prior = randv(N * R * c), dxa = prior;
    MtRowsParams onto = p; onto.flag = 1;
    launch(grid, {256, 1, 1}, [&] { gap_backward(onto, gy.data(), dxa.data()); });
    launch(grid, {256, 1, 1}, [&] { cs_forward(one, x.data(), g.data(), nullptr, y.data(), nullptr); });
    launch(grid, {256, 1, 1}, [&] { cs_backward(one, dy.data(), x.data(), g.data(), nullptr, dx.data(), dg.data(), nullptr); });
    // Fused with a residual and ReLU: y = relu(x g + res); dz = dy where y > 0.
    auto res = randv(N * R * c);
    std::vector<float> yf(N * R * c, NAN), dxf(N * R * c, NAN), dgf(N * c, 0.f), dres(N * R * c, NAN);
    std::vector<unsigned short> y16(N * R * c, 0xffff);
    launch(grid, {256, 1, 1}, [&] { cs_forward(one, x.data(), g.data(), res.data(), yf.data(), y16.data()); });
    launch(grid, {256, 1, 1}, [&] { cs_backward(one, dy.data(), x.data(), g.data(), yf.data(), dxf.data(), dgf.data(), dres.data()); });
    std::vector<double> P(N * c, 0), DXP(N * R * c), Y(N * R * c), DX(N * R * c), DG(N * c, 0);
    std::vector<double> YF(N * R * c), DXF(N * R * c), DGF(N * c, 0), DRES(N * R * c);
    for (int n = 0; n < N; ++n) for (int r = 0; r < R; ++r) for (int j = 0; j < c; ++j) {
        size_t i = ((size_t)n * R + r) * c + j, k = n * c + j;
        P[k] += x[i] / (double)R; DXP[i] = gy[k] / (double)R;
        Y[i] = x[i] * (double)g[k]; DX[i] = dy[i] * (double)g[k]; DG[k] += dy[i] * (double)x[i];
        double z = (double)(x[i] * g[k]) + res[i], dz = z > 0 ? dy[i] : 0.0;
        YF[i] = std::max(z, 0.0); DRES[i] = dz; DXF[i] = dz * g[k]; DGF[k] += dz * x[i];
    }
    printf("se N=%d rows=%d c=%d splits=%u: ", N, R, c, grid.y);
    check("gap forward", pooled.data(), P); check("gap backward", dxp.data(), DXP);
    std::vector<double> DXA(N * R * c);
    for (size_t i = 0; i < DXA.size(); ++i) DXA[i] = DXP[i] + prior[i];
    check("gap backward onto an earlier gradient", dxa.data(), DXA);
    check("channel_scale y", y.data(), Y); check("channel_scale dx", dx.data(), DX); check("channel_scale dg", dg.data(), DG);
    check("channel_scale_add_relu y", yf.data(), YF); check("channel_scale_add_relu dx", dxf.data(), DXF);
    check("channel_scale_add_relu dg", dgf.data(), DGF); check("channel_scale_add_relu dres", dres.data(), DRES);
    check_bf16_copy("channel_scale_add_relu y bf16 copy", yf, y16);
}
// PReLU over [rows, c] in the row-parallel layout: float4 and scalar lanes
// (c = 1 is the shared slope), several block-rows whose slope partials the
// finalize kernel adds per channel.
void prelu_case(int R, int c, int splits) {
    auto x = randv(R * c), dy = randv(R * c), a = randv(c);
    std::vector<float> y(R * c, NAN), dx(R * c, NAN), da(c, NAN);
    int vec = c % 4 == 0 ? 4 : 1, q = c / vec, cpb = std::min(q, 256);
    u64 chunk = (R + splits - 1) / splits;
    dim3 grid{(unsigned)((q + cpb - 1) / cpb), (unsigned)((R + chunk - 1) / chunk), 1};
    PreluParams p{(u64)R, (u64)c, chunk, grid.y, vec, 0};
    std::vector<float> ws(grid.y * c, NAN);
    launch(grid, {256, 1, 1}, [&] { prelu_forward(p, x.data(), a.data(), y.data()); });
    launch(grid, {256, 1, 1}, [&] { prelu_backward(p, dy.data(), x.data(), a.data(), dx.data(), ws.data()); });
    launch({(unsigned)c, 1, 1}, {256, 1, 1}, [&] { prelu_backward_finalize(p, ws.data(), da.data()); });
    std::vector<double> Y(R * c), DX(R * c), DA(c, 0);
    for (int r = 0; r < R; ++r) for (int j = 0; j < c; ++j) {
        size_t i = (size_t)r * c + j;
        bool pos = x[i] > 0;
        Y[i] = pos ? x[i] : (double)a[j] * x[i]; DX[i] = pos ? dy[i] : (double)a[j] * dy[i];
        if (!pos) DA[j] += (double)dy[i] * x[i];
    }
    printf("prelu rows=%d c=%d splits=%u: ", R, c, grid.y);
    check("prelu y", y.data(), Y); check("prelu dx", dx.data(), DX); check("prelu da", da.data(), DA);
}
void others() {
    // reduce: [5, 13, 11, 7] sum over axes 1,2 -> kept [5,1,1,7]; merged: kdims (5,1,7) rdims (1,143,1)
    { int A=5,B=143,C=7; auto x = randv(A*B*C); 
      for (unsigned gy : {1u, 4u}) {
        std::vector<float> y(A*C, gy>1?0.f:NAN);
        ReduceParams p{}; p.out_n=A*C; p.red_n=B; p.rank=3; u64 kd[3]={5,1,7}, rd[3]={1,143,1}, st[3]={(u64)B*C,(u64)C,1};
        for(int i=0;i<3;++i){p.kdims[i]=kd[i];p.rdims[i]=rd[i];p.strides[i]=st[i];} p.scale=0.5f;
        launch({(unsigned)((A*C+31)/32),gy,1},{32,8,1},[&]{ reduce_sum(p, x.data(), y.data()); });
        std::vector<double> R(A*C,0); for(int a=0;a<A;++a)for(int b=0;b<B;++b)for(int c=0;c<C;++c) R[a*C+c]+=0.5*x[(a*B+b)*C+c];
        check("reduce_sum", y.data(), R); } }
    for (auto [m, c, splits, relu, training] : {std::tuple{300, 37, 3, 0, 1}, {300, 40, 4, 1, 1}, {61, 1028, 2, 1, 1}, {50, 12, 2, 1, 0}}) bn_case(m, c, splits, relu, training);
    // ccc: one block, then 4 blocks through the grid barrier (cooperative
    // launch); D = 2 with an odd N (float4 units and a tail row), D = 1, and
    // D = 3 (scalar rows); invalid rows include row 0 (the shift).
    for (auto [n, d, blocks] : {std::tuple{5001, 2, 1u}, {5001, 2, 4u}, {999, 1, 4u}, {1001, 3, 4u}, {777, 2, 3u}}) {
      auto pv = randv(n*d, 0.5f, 1.5f), tv = randv(n*d, -1, 1); for (int i=0;i<n*d;i+=7) tv[i] = -5.f;
      float* pr = shared_alloc<float>(n*d); float* t = shared_alloc<float>(n*d); std::copy(pv.begin(), pv.end(), pr); std::copy(tv.begin(), tv.end(), t);
      float* loss = shared_alloc<float>(1); float* grad = shared_alloc<float>(n*d); float* ws = shared_alloc<float>(1+blocks*6*8);
      std::fill(grad, grad+n*d, NAN);
      CccParams p{(u64)n,(u64)d,-5.f,1};
      // n = 777: the d = 2 build (ccc_loss_fused_d2) the host launches for valence/arousal.
      if (n == 777) launch_cooperative({blocks,1,1},{128,1,1},[&]{ ccc_loss_fused_d2(p,pr,t,loss,grad,ws+1,(u32*)ws); });
      else launch_cooperative({blocks,1,1},{128,1,1},[&]{ ccc_loss_fused(p,pr,t,loss,grad,ws+1,(u32*)ws); });
      double L=0; std::vector<double> G(n*d,0);
      for(int j=0;j<d;++j){ double cnt=0,mp=0,mt=0; for(int i=0;i<n;++i) if(t[i*d+j]!=-5.f){cnt++;mp+=pr[i*d+j];mt+=t[i*d+j];} mp/=cnt; mt/=cnt;
        double vp=0,vt=0,cv=0; for(int i=0;i<n;++i) if(t[i*d+j]!=-5.f){double a=pr[i*d+j]-mp,b=t[i*d+j]-mt; vp+=a*a; vt+=b*b; cv+=a*b;}
        double den=(vp+vt)/cnt+(mp-mt)*(mp-mt), ccc=2*cv/cnt/den; L+=(1-ccc)/d;
        for(int i=0;i<n;++i) if(t[i*d+j]!=-5.f) G[i*d+j]=-2.0/(cnt*den)*((t[i*d+j]-mt)-ccc*(pr[i*d+j]-mt))/d; }
      printf("ccc n=%d d=%d blocks=%u: ", n, d, blocks);
      check("loss", loss, {L}, 1e-6, 1e-4); check("grad", grad, G, 1e-7, 1e-3); }
    // softmax / log_softmax, rows=37 cols=77
    for (int lg : {0, 1}) { int R=37, C=77; auto x = randv(R*C, -3, 3), g = randv(R*C); std::vector<float> y(R*C), dx(R*C);
      SoftmaxParams p{(u64)R,(u64)C,lg,0};
      launch({3,1,1},{256,1,1},[&]{ softmax_forward(p,x.data(),y.data()); });
      launch({3,1,1},{256,1,1},[&]{ softmax_backward(p,y.data(),g.data(),dx.data()); });
      std::vector<double> Y(R*C), DX(R*C);
      for(int r=0;r<R;++r){ double m=-1e30; for(int c=0;c<C;++c) m=std::max(m,(double)x[r*C+c]); double s=0; for(int c=0;c<C;++c) s+=exp(x[r*C+c]-m); double ls=log(s);
        double dot=0, sg=0; for(int c=0;c<C;++c){ double lp=x[r*C+c]-m-ls; Y[r*C+c]= lg?lp:exp(lp); dot+=g[r*C+c]*exp(lp); sg+=g[r*C+c]; }
        for(int c=0;c<C;++c){ double lp=x[r*C+c]-m-ls; DX[r*C+c]= lg? g[r*C+c]-exp(lp)*sg : exp(lp)*(g[r*C+c]-dot); } }
      check(lg?"log_softmax y":"softmax y", y.data(), Y); check(lg?"log_softmax dx":"softmax dx", dx.data(), DX); }
    // cross entropy: n=40 rows, c=8, weights, smoothing 0.1, some ignored
    { int N=40, C=8; auto z = randv(N*C, -2, 2), w = randv(C, .2, 2); std::vector<float> lab(N); for(int i=0;i<N;++i) lab[i] = (i%4==0) ? -1.f : (float)(i%C);
      double W=0, sw=0; for(int i=0;i<N;++i) if(lab[i]>=0) W+=w[(int)lab[i]]; for (int c=0;c<C;++c) sw+=w[c];
      double eps=0.1; std::vector<float> loss(1,0.f), grad(N*C, NAN);
      CrossEntropyParams p{(u64)N,(u64)C,(float)eps,(float)(1/W),(float)sw,1};
      launch({5,1,1},{256,1,1},[&]{ cross_entropy_fused(p,z.data(),lab.data(),w.data(),loss.data(),grad.data()); });
      double L=0; std::vector<double> G(N*C,0);
      for(int i=0;i<N;++i){ if(lab[i]<0) continue; int y=(int)lab[i]; double m=-1e30; for(int c=0;c<C;++c) m=std::max(m,(double)z[i*C+c]); double s=0; for(int c=0;c<C;++c) s+=exp(z[i*C+c]-m); double lse=m+log(s);
        double as=0; for(int c=0;c<C;++c){ double a=(1-eps)*(c==y?w[y]:0)+eps/C*w[c]; as+=a; L+=a*(lse-z[i*C+c])/W; }
        for(int c=0;c<C;++c){ double a=(1-eps)*(c==y?w[y]:0)+eps/C*w[c]; G[i*C+c]=(as*exp(z[i*C+c]-lse)-a)/W; } }
      check("cross_entropy loss", loss.data(), {L}); check("cross_entropy grad", grad.data(), G, 1e-6, 1e-4); }
    // layer norm rows=9, d=45
    { int R=9, D=45; auto x = randv(R*D, -2, 3), w = randv(D, .5, 1.5), b = randv(D), g = randv(R*D);
      std::vector<float> y(R*D), st(2*R), dx(R*D), dw(D,0.f), db(D,0.f);
      LayerNormParams p{(u64)R,(u64)D,2,1e-5f,0};
      launch({2,1,1},{256,1,1},[&]{ ln_forward(p,x.data(),w.data(),b.data(),y.data(),st.data()); });
      launch({2,1,1},{256,1,1},[&]{ ln_backward_dx(p,g.data(),x.data(),w.data(),st.data(),dx.data()); });
      launch({2,2,1},{32,8,1},[&]{ ln_backward_params(p,g.data(),x.data(),st.data(),dw.data(),db.data()); });
      std::vector<double> Y(R*D), DX(R*D), DW(D,0), DB(D,0);
      for(int r=0;r<R;++r){ double m=0; for(int j=0;j<D;++j) m+=x[r*D+j]/(double)D; double v=0; for(int j=0;j<D;++j) v+=(x[r*D+j]-m)*(x[r*D+j]-m)/D; double is=1/sqrt(v+1e-5);
        double su=0,suh=0; for(int j=0;j<D;++j){ double h=(x[r*D+j]-m)*is; Y[r*D+j]=w[j]*h+b[j]; DW[j]+=g[r*D+j]*h; DB[j]+=g[r*D+j]; su+=g[r*D+j]*w[j]; suh+=g[r*D+j]*w[j]*h; }
        for(int j=0;j<D;++j){ double h=(x[r*D+j]-m)*is; DX[r*D+j]=is*(g[r*D+j]*w[j]-su/D-h*suh/D);} }
      check("layer_norm y", y.data(), Y); check("layer_norm dx", dx.data(), DX); check("layer_norm dw", dw.data(), DW); check("layer_norm db", db.data(), DB); }
    // pooling: max 3x3 s2 p1 on [2,7,6,5], avg count_include_pad false
    for (int ismax : {1, 0}) { int N=2,H=7,W=6,C=5,kh=3,sh=2,ph=1; int P=(H+2*ph-kh)/sh+1, Q=(W+2*ph-kh)/sh+1;
      auto x = randv(N*H*W*C), g = randv(N*P*Q*C); std::vector<float> y(N*P*Q*C), dx(N*H*W*C, 0.f); std::vector<u32> am(N*P*Q*C);
      PoolParams p{N,H,W,C,P,Q,kh,kh,sh,sh,ph,ph,0,ismax};
      launch({4,1,1},{256,1,1},[&]{ pool_forward(p,x.data(),y.data(),am.data()); });
      launch({4,1,1},{256,1,1},[&]{ pool_backward(p,g.data(),am.data(),dx.data()); });
      std::vector<double> Y(y.size()), DX(dx.size(),0);
      for(int n=0;n<N;++n)for(int op=0;op<P;++op)for(int oq=0;oq<Q;++oq)for(int c=0;c<C;++c){ int h0=std::max(op*sh-ph,0),h1=std::min(op*sh-ph+kh,H),w0=std::max(oq*sh-ph,0),w1=std::min(oq*sh-ph+kh,W);
        size_t o=((n*P+op)*Q+oq)*C+c; double best=-1e30; size_t bi=0; double s=0; int cnt=(h1-h0)*(w1-w0);
        for(int hh=h0;hh<h1;++hh)for(int ww=w0;ww<w1;++ww){ size_t i=((n*H+hh)*W+ww)*C+c; if(x[i]>best){best=x[i];bi=i;} s+=x[i]; }
        if(ismax){Y[o]=best; DX[bi]+=g[o];} else {Y[o]=s/cnt; for(int hh=h0;hh<h1;++hh)for(int ww=w0;ww<w1;++ww) DX[((n*H+hh)*W+ww)*C+c]+=g[o]/cnt;} }
      check(ismax?"max_pool y":"avg_pool y", y.data(), Y); check(ismax?"max_pool dx":"avg_pool dx", dx.data(), DX); }
    // pointwise losses: BCE (mask -1, pos_weight), MSE (mask -5), a GAN term (count all)
    { int n=600, cl=12; auto x = randv(n, -3, 3), pw = randv(cl, .5, 4); std::vector<float> t(n); for(int i=0;i<n;++i) t[i] = (i%5==0)?-1.f:(float)(i%3==0);
      auto run = [&](int kind, int has_invalid, float invalid, int count_all, std::vector<double>& G, double& L) {
        std::vector<float> grad(n, NAN), ws(2,0.f), loss(1), cnt(1);
        PointwiseLossParams p{(u64)n,(u64)cl,kind,1,invalid,has_invalid,count_all,1};
        launch({2,1,1},{256,1,1},[&]{ loss_partial(p,x.data(),t.data(),pw.data(),grad.data(),ws.data()); });
        launch({1,1,1},{32,1,1},[&]{ loss_finalize(p,ws.data(),loss.data(),cnt.data()); });
        double C=0; for(int i=0;i<n;++i) if(count_all || !(has_invalid && t[i]==invalid)) C++;
        char nm[64]; snprintf(nm, 64, "pointwise loss kind %d", kind);
        check(nm, loss.data(), {L/C}); check("pointwise grad (unscaled)", grad.data(), G); check("pointwise count", cnt.data(), {C}); };
      std::vector<double> G(n,0); double L=0;
      for(int i=0;i<n;++i){ if(t[i]==-1.f) continue; double k=1+(pw[i%cl]-1)*t[i]; double sp=std::max(-x[i],0.f)+log1p(exp(-fabs(x[i]))); L+=(1-t[i])*x[i]+k*sp; G[i]=(1-t[i])-k/(1+exp(x[i])); }
      run(0, 1, -1.f, 0, G, L);
      std::fill(G.begin(), G.end(), 0); L=0;
      for(int i=0;i<n;++i){ if(t[i]==-1.f) continue; double e=x[i]-t[i]; L+=e*e; G[i]=2*e; }
      run(1, 1, -1.f, 1, G, L);
      std::fill(G.begin(), G.end(), 0); L=0;
      for(int i=0;i<n;++i){ L+=std::max(1.0+x[i],0.0); G[i]=x[i]>-1?1:0; }
      run(5, 0, 0.f, 1, G, L); }
    // adam over two params with a chunk table; one spans two chunks
    { size_t n1=70001, n2=7; auto w1=randv(n1), g1=randv(n1), w2=randv(n2), g2=randv(n2); std::vector<float> m1(n1,0), v1(n1,0), m2(n2,0), v2(n2,0);
      auto W1=w1, W2=w2; std::vector<OptChunk> tab;
      auto add=[&](float* p,float* g,float* m,float* v,size_t n){ for(size_t off=0;off<n;off+=65536) tab.push_back({(u64)p,(u64)g,(u64)m,(u64)v,off,std::min<size_t>(65536,n-off),0,0}); };
      add(w1.data(),g1.data(),m1.data(),v1.data(),n1); add(w2.data(),g2.data(),m2.data(),v2.data(),n2);
      AdamParams a{1e-2f,.9f,.999f,1e-8f,.05f,(float)(1-.9),(float)(1-.999),1};
      launch({(unsigned)tab.size(),1,1},{256,1,1},[&]{ adam_step(a,tab.data(),nullptr); });
      auto ref=[&](std::vector<float>& W, std::vector<float>& G){ std::vector<double> R(W.size()); for(size_t i=0;i<W.size();++i){ double w=W[i]; w-=1e-2*.05*w; double m=.1*G[i], v=.001*G[i]*G[i]; R[i]=w-1e-2*(m/.1)/(sqrt(v/.001)+1e-8);} return R; };
      check("adamw w1", w1.data(), ref(W1,g1), 1e-5, 1e-4); check("adamw w2", w2.data(), ref(W2,g2), 1e-5, 1e-4);
      std::vector<double> out(1,0.0); NormParams np{tab.size()};
      std::vector<double> sq(1,0); launch({(unsigned)tab.size(),1,1},{256,1,1},[&]{ grad_sq_sum(np,tab.data(),sq.data()); });
      double S=0; for(auto v:g1) S+=v*(double)v; for(auto v:g2) S+=v*(double)v; check("grad_sq_sum", std::vector<float>{(float)sq[0]}.data(), {S}, 0, 1e-5);
      // A guarded step: the norm into a StepStatus, step_guard's clip scale
      // applied by adam_step; then a NaN loss: skip set, nothing changes.
      float loss=1.5f, va=.25f, au=.5f, ex=.75f; StepStatus st{}; GuardParams gp{1.0};
      launch({(unsigned)tab.size(),1,1},{256,1,1},[&]{ grad_sq_sum(np,tab.data(),&st.sq_sum); });
      launch({1,1,1},{32,1,1},[&]{ step_guard(gp,&st,&loss,&va,&au,&ex); });
      double nrm=sqrt(S), sc=1.0/(nrm+1e-6);
      check("step_guard norm", std::vector<float>{(float)st.norm}.data(), {nrm}, 0, 1e-5);
      check("step_guard scale", &st.scale, {sc}, 0, 1e-5);
      check("step_guard copies the loss terms", &st.loss, {1.5, .25, .5, .75}, 1e-12, 0);
      if (st.skip != 0) { std::printf("FAIL step_guard: skip set for finite values\n"); exit(1); }
      for (auto& x : m1) x = 0; for (auto& x : v1) x = 0; for (auto& x : m2) x = 0; for (auto& x : v2) x = 0;
      w1 = W1; w2 = W2;
      launch({(unsigned)tab.size(),1,1},{256,1,1},[&]{ adam_step(a,tab.data(),&st); });
      auto G1=g1; for (auto& x : G1) x *= st.scale; auto G2=g2; for (auto& x : G2) x *= st.scale;
      check("adamw clipped w1", w1.data(), ref(W1,G1), 1e-5, 1e-4); check("adamw clipped w2", w2.data(), ref(W2,G2), 1e-5, 1e-4);
      for (float bad : {NAN, INFINITY}) {
        auto w1b=w1, m1b=m1, v1b=v1, w2b=w2; loss=bad; st=StepStatus{};
        launch({(unsigned)tab.size(),1,1},{256,1,1},[&]{ grad_sq_sum(np,tab.data(),&st.sq_sum); });
        launch({1,1,1},{32,1,1},[&]{ step_guard(gp,&st,&loss,&va,&au,&ex); });
        launch({(unsigned)tab.size(),1,1},{256,1,1},[&]{ adam_step(a,tab.data(),&st); });
        SgdParams sp{.1f,.9f,0.f,0.f,0,0};
        launch({(unsigned)tab.size(),1,1},{256,1,1},[&]{ sgd_step(sp,tab.data(),&st); });
        bool same = st.skip == 1 && std::memcmp(w1.data(),w1b.data(),n1*4)==0 && std::memcmp(m1.data(),m1b.data(),n1*4)==0
                    && std::memcmp(v1.data(),v1b.data(),n1*4)==0 && std::memcmp(w2.data(),w2b.data(),n2*4)==0;
        if (!same) { std::printf("FAIL guarded step with loss %f changed state (skip %d)\n", bad, st.skip); exit(1); } }
      // A non-finite gradient: the norm is NaN, so the step is skipped too.
      loss=1.5f; g2[3]=NAN; st=StepStatus{};
      launch({(unsigned)tab.size(),1,1},{256,1,1},[&]{ grad_sq_sum(np,tab.data(),&st.sq_sum); });
      launch({1,1,1},{32,1,1},[&]{ step_guard(gp,&st,&loss,&va,&au,&ex); });
      if (st.skip != 1) { std::printf("FAIL step_guard: NaN gradient not flagged\n"); exit(1); }
      puts("guarded steps with a NaN/Inf loss or gradient skip, changing nothing ok"); }
}

// Broadcasting binary ops ([12, 7] (op) [7]), their partials, broadcast_scale,
// unary ops and nearest upsampling.
void elementwise() {
    const int R = 12, C = 7;
    auto a = randv(R * C), b = randv(C, 0.5, 2), g = randv(R * C);
    BinaryParams p{};
    p.n = R * C; p.rank = 2; p.dims[0] = R; p.dims[1] = C; p.sa[0] = C; p.sa[1] = 1; p.sa[0] = C; p.sb[0] = 0; p.sb[1] = 1;
    for (int op = 0; op < 4; ++op) {
        p.op = op;
        std::vector<float> y(R * C, NAN), ga(R * C, NAN), gb(R * C, NAN);
        launch({1, 1, 1}, {256, 1, 1}, [&] { binary_forward(p, a.data(), b.data(), y.data()); });
        launch({1, 1, 1}, {256, 1, 1}, [&] { binary_backward(p, g.data(), a.data(), b.data(), ga.data(), gb.data()); });
        std::vector<double> Y(R * C), GA(R * C), GB(R * C);
        for (int i = 0; i < R * C; ++i) {
            double x = a[i], z = b[i % C], gi = g[i];
            Y[i] = op == 0 ? x + z : op == 1 ? x - z : op == 2 ? x * z : x / z;
            GA[i] = op <= 1 ? gi : op == 2 ? gi * z : gi / z;
            GB[i] = op == 0 ? gi : op == 1 ? -gi : op == 2 ? gi * x : -gi * x / (z * z);
        }
        check("binary_forward", y.data(), Y); check("binary_backward a", ga.data(), GA); check("binary_backward b", gb.data(), GB);
    }
    p.alpha = 0.25f; p.sa[0] = 0; p.sa[1] = 1;  // broadcast b ([7]) up to [12, 7]
    std::vector<float> y(R * C, NAN);
    launch({1, 1, 1}, {256, 1, 1}, [&] { broadcast_scale(p, b.data(), y.data()); });
    std::vector<double> Y(R * C);
    for (int i = 0; i < R * C; ++i) Y[i] = 0.25 * b[i % C];
    check("broadcast_scale", y.data(), Y);
    {  // transpose [12, 7] -> [7, 12] as ops/matmul/cuda.rs sets it up
        BinaryParams tp{};
        tp.n = R * C; tp.rank = 2; tp.dims[0] = C; tp.dims[1] = R; tp.sa[0] = 1; tp.sa[1] = C; tp.alpha = 1.0f;
        std::vector<float> yt(R * C, NAN);
        launch({1, 1, 1}, {256, 1, 1}, [&] { broadcast_scale(tp, a.data(), yt.data()); });
        std::vector<double> T(R * C);
        for (int i = 0; i < R; ++i) for (int j = 0; j < C; ++j) T[j * R + i] = a[i * C + j];
        check("transpose", yt.data(), T);
    }
    for (int op = 0; op < 9; ++op) {
        auto x = randv(100, op == 6 ? 0.1f : -3.f, 3.f), g = randv(100);
        UnaryParams u{100, op, 0.3f};
        std::vector<float> yy(100, NAN), dx(100, NAN);
        launch({1, 1, 1}, {256, 1, 1}, [&] { unary_forward(u, x.data(), yy.data()); });
        const bool saves_out = op == 3 || op == 4 || op == 5;
        launch({1, 1, 1}, {256, 1, 1}, [&] { unary_backward(u, saves_out ? yy.data() : x.data(), g.data(), dx.data()); });
        std::vector<double> YY(100), DX(100);
        for (int i = 0; i < 100; ++i) {
            double v = x[i], f, d;
            switch (op) {
                case 0: f = 0.3 * v; d = 0.3; break;
                case 1: f = v > 0 ? v : 0; d = v > 0; break;
                case 2: f = v > 0 ? v : 0.3 * v; d = v > 0 ? 1 : 0.3; break;
                case 3: f = 1 / (1 + exp(-v)); d = f * (1 - f); break;
                case 4: f = tanh(v); d = 1 - f * f; break;
                case 5: f = exp(v); d = f; break;
                case 6: f = log(v); d = 1 / v; break;
                case 7: {  // gelu
                    const double cdf = 0.5 * (1 + erf(v / sqrt(2.0)));
                    f = v * cdf; d = cdf + v * exp(-0.5 * v * v) / sqrt(2 * M_PI); break;
                }
                default: {  // gelu_tanh
                    const double c = sqrt(2 / M_PI), a = 0.044715, t = tanh(c * (v + a * v * v * v));
                    f = 0.5 * v * (1 + t); d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * a * v * v); break;
                }
            }
            YY[i] = f; DX[i] = g[i] * d;
        }
        check("unary_forward", yy.data(), YY, 1e-5, 1e-5); check("unary_backward", dx.data(), DX, 1e-5, 1e-4);
    }
    UpsampleParams up{2, 3, 4, 5, 2};
    auto x = randv(2 * 3 * 4 * 5), gy = randv(2 * 6 * 8 * 5);
    std::vector<float> yu(gy.size(), NAN), dxu(x.size(), NAN);
    launch({2, 1, 1}, {256, 1, 1}, [&] { upsample_nearest_forward(up, x.data(), yu.data()); });
    launch({1, 1, 1}, {256, 1, 1}, [&] { upsample_nearest_backward(up, gy.data(), dxu.data()); });
    std::vector<double> YU(yu.size()), DXU(x.size(), 0);
    for (int n = 0; n < 2; ++n) for (int h = 0; h < 6; ++h) for (int w = 0; w < 8; ++w) for (int c = 0; c < 5; ++c) {
        size_t o = ((n * 6 + h) * 8 + w) * 5 + c, i = ((n * 3 + h / 2) * 4 + w / 2) * 5 + c;
        YU[o] = x[i]; DXU[i] += gy[o];
    }
    check("upsample forward", yu.data(), YU); check("upsample backward", dxu.data(), DXU);
    // copy_blocks: columns 2..5 of a [6, 9] matrix into columns 4..7 of a [6, 10] one.
    auto src = randv(6 * 9);
    std::vector<float> dst(6 * 10, 0.f);
    CopyParams cp{6, 3, 9, 2, 10, 4};
    launch({1, 1, 1}, {256, 1, 1}, [&] { copy_blocks(cp, src.data(), dst.data()); });
    std::vector<double> D(6 * 10, 0);
    for (int o = 0; o < 6; ++o) for (int j = 0; j < 3; ++j) D[o * 10 + 4 + j] = src[o * 9 + 2 + j];
    check("copy_blocks", dst.data(), D, 1e-12, 0);
}

// ---- temporal ops: one GRU / LSTM step, masked attention ----------------
// References are double-precision forward functions; the backward kernels
// are checked against their central differences, so the derivative formulas
// are not restated here.
using VD = std::vector<double>;
VD dbl(const std::vector<float>& v) { return VD(v.begin(), v.end()); }
// d/dx_i of f(x) for every i, f scalar, central differences.
VD numgrad(VD x, const std::function<double(const VD&)>& f) {
    VD g(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double x0 = x[i], e = 1e-6;
        x[i] = x0 + e; const double fp = f(x); x[i] = x0 - e; const double fm = f(x); x[i] = x0;
        g[i] = (fp - fm) / (2 * e);
    }
    return g;
}
double sig(double x) { return 1 / (1 + exp(-x)); }
// Step t of a sequence: N samples, T frames, H units, G gates; sample 1 is padded at step t.
struct Rnn { int N = 3, T = 4, H = 37, t = 2; int G; };
// The step as the reference sees it: (gx row t, gh, h_prev, c_prev) -> L = Σ gout·out + Σ dh·h' (+ Σ dc·c').
double rnn_step_loss(const Rnn& r, const VD& gx, const VD& gh, const VD& hp, const VD& cp, const std::vector<float>& mask,
                     const VD& gout, const VD& dh, const VD& dc, VD* hn_out, VD* cn_out) {
    int H = r.H, G = r.G; double L = 0;
    for (int n = 0; n < r.N; ++n) for (int j = 0; j < H; ++j) {
        int i = n * H + j, row = n * r.T + r.t;
        double h = hp[i], c = cp.empty() ? 0 : cp[i], o = 0;
        if (mask[row] != 0) {
            auto pre = [&](int k) { return gx[(size_t)row * G * H + k * H + j] + gh[(size_t)n * G * H + k * H + j]; };
            if (G == 3) {
                double rr = sig(pre(0)), z = sig(pre(1));
                double cc = tanh(gx[(size_t)row * 3 * H + 2 * H + j] + rr * gh[(size_t)n * 3 * H + 2 * H + j]);
                h = (1 - z) * cc + z * h;
            } else {
                c = sig(pre(1)) * c + sig(pre(0)) * tanh(pre(2));
                h = sig(pre(3)) * tanh(c);
            }
            o = h;
        }
        L += gout[(size_t)row * H + j] * o + dh[i] * h + (G == 4 ? dc[i] * c : 0);
        if (hn_out) (*hn_out)[i] = h;
        if (cn_out) (*cn_out)[i] = c;
    }
    return L;
}
void rnn_step_case(int G) {
    Rnn r; r.G = G; int N = r.N, T = r.T, H = r.H, t = r.t;
    auto gx = randv((size_t)N * T * G * H, -2, 2), gh = randv((size_t)N * G * H, -2, 2), hp = randv(N * H), cp = randv(N * H);
    auto gout = randv((size_t)N * T * H), dh = randv(N * H), dc0 = randv(N * H);
    std::vector<float> mask(N * T, 1.f); mask[1 * T + t] = 0.f;
    MtRnnStep p{(u64)N, (u64)T, (u64)H, (u64)t};
    std::vector<float> hn(N * H, NAN), cn(N * H, NAN), gates((size_t)N * G * H, NAN), tc(N * H, NAN), out((size_t)N * T * H, 7.f);
    if (G == 3) launch({1, 1, 1}, {64, 1, 1}, [&] { gru_step_forward(p, gx.data(), gh.data(), mask.data(), hp.data(), hn.data(), gates.data(), out.data()); });
    else launch({1, 1, 1}, {64, 1, 1}, [&] { lstm_step_forward(p, gx.data(), gh.data(), mask.data(), hp.data(), cp.data(), hn.data(), cn.data(), gates.data(), tc.data(), out.data()); });
    VD DX = dbl(gx), DH = dbl(gh), HP = dbl(hp), CP = G == 4 ? dbl(cp) : VD{}, GO = dbl(gout), Dh = dbl(dh), Dc = dbl(dc0);
    VD HN(N * H), CN(N * H), OUT((size_t)N * T * H, 7.0);
    rnn_step_loss(r, DX, DH, HP, CP, mask, GO, Dh, Dc, &HN, &CN);
    for (int n = 0; n < N; ++n) for (int j = 0; j < H; ++j) OUT[((size_t)n * T + t) * H + j] = mask[n * T + t] != 0 ? HN[n * H + j] : 0;
    const char* nm = G == 3 ? "gru" : "lstm";
    char w[80];
    snprintf(w, 80, "%s_step_forward h", nm); check(w, hn.data(), HN, 1e-5, 1e-5);
    snprintf(w, 80, "%s_step_forward out", nm); check(w, out.data(), OUT, 1e-5, 1e-5);
    if (G == 4) { snprintf(w, 80, "%s_step_forward c", nm); check(w, cn.data(), CN, 1e-5, 1e-5); }
    // Backward from what forward saved, against central differences of the reference loss.
    std::vector<float> dhp(N * H, NAN), dgx((size_t)N * T * G * H, 7.f), dgh((size_t)N * G * H, NAN), dc = dc0;
    if (G == 3) launch({1, 1, 1}, {64, 1, 1}, [&] { gru_step_backward(p, gout.data(), gates.data(), gh.data(), hp.data(), mask.data(), dh.data(), dhp.data(), dgx.data(), dgh.data()); });
    else launch({1, 1, 1}, {64, 1, 1}, [&] { lstm_step_backward(p, gout.data(), gates.data(), cp.data(), tc.data(), mask.data(), dh.data(), dc.data(), dhp.data(), dgx.data(), dgh.data()); });
    auto loss = [&](const VD& a, const VD& b, const VD& h, const VD& c) { return rnn_step_loss(r, a, b, h, c, mask, GO, Dh, Dc, nullptr, nullptr); };
    VD RX = numgrad(DX, [&](const VD& v) { return loss(v, DH, HP, CP); });
    for (size_t i = 0; i < RX.size(); ++i) if ((i / (G * H)) % T != (size_t)t) RX[i] = 7.0;  // other steps' rows untouched
    snprintf(w, 80, "%s_step_backward dgx", nm); check(w, dgx.data(), RX, 1e-5, 1e-4);
    snprintf(w, 80, "%s_step_backward dgh", nm); check(w, dgh.data(), numgrad(DH, [&](const VD& v) { return loss(DX, v, HP, CP); }), 1e-5, 1e-4);
    // gemm.cu adds the path through gh (dgh·W_hh); the kernel gives the direct one.
    snprintf(w, 80, "%s_step_backward dh_prev", nm); check(w, dhp.data(), numgrad(HP, [&](const VD& v) { return loss(DX, DH, v, CP); }), 1e-5, 1e-4);
    if (G == 4) check("lstm_step_backward dc_prev", dc.data(), numgrad(CP, [&](const VD& v) { return loss(DX, DH, HP, v); }), 1e-5, 1e-4);
}
// Attention: q [N,T,H,D], k, v [N,S,H,D]. Masked: sample 0 partly padded,
// the last one all padded, the others all real; padded keys hold NaN, which
// must reach no output. Backward against central differences of the
// reference loss, at every element when the tensors are small, else at 150
// random ones.
struct Att { int N, T, S, H, D; bool masked; };
void att_ref(const Att& a, const VD& q, const VD& k, const VD& v, const std::vector<float>& mask, VD& out) {
    out.assign((size_t)a.N * a.T * a.H * a.D, 0);
    for (int n = 0; n < a.N; ++n) for (int h = 0; h < a.H; ++h) for (int i = 0; i < a.T; ++i) {
        VD s(a.S); double m = -1e300, z = 0;
        for (int j = 0; j < a.S; ++j) if (mask[n * a.S + j] != 0) {
            double d = 0; for (int e = 0; e < a.D; ++e) d += q[((n * a.T + i) * a.H + h) * a.D + e] * k[((n * a.S + j) * a.H + h) * a.D + e];
            s[j] = d / sqrt((double)a.D); m = std::max(m, s[j]);
        }
        for (int j = 0; j < a.S; ++j) if (mask[n * a.S + j] != 0) { s[j] = exp(s[j] - m); z += s[j]; }
        for (int j = 0; j < a.S; ++j) if (mask[n * a.S + j] != 0)
            for (int e = 0; e < a.D; ++e) out[((n * a.T + i) * a.H + h) * a.D + e] += s[j] / z * v[((n * a.S + j) * a.H + h) * a.D + e];
    }
}
// numgrad at the listed elements only; the others hold NAN and are not checked.
void check_grad(const char* what, const std::vector<float>& got, const VD& x, const std::function<double(const VD&)>& f) {
    if (x.size() <= 4000) { check(what, got.data(), numgrad(x, f), 1e-5, 1e-4); return; }
    std::uniform_int_distribution<size_t> pick(0, x.size() - 1);
    std::vector<float> sub; VD ref; VD xx = x;
    for (int r = 0; r < 150; ++r) {
        const size_t i = pick(rng); const double x0 = xx[i], e = 1e-6;
        xx[i] = x0 + e; const double fp = f(xx); xx[i] = x0 - e; const double fm = f(xx); xx[i] = x0;
        sub.push_back(got[i]); ref.push_back((fp - fm) / (2 * e));
    }
    check(what, sub.data(), ref, 1e-5, 1e-4);
}
void attention_case(Att a) {
    int N = a.N, T = a.T, S = a.S, H = a.H, D = a.D;
    auto q = randv((size_t)N * T * H * D, -2, 2), k = randv((size_t)N * S * H * D, -2, 2), v = randv((size_t)N * S * H * D), g = randv(q.size());
    std::vector<float> mask(N * S, 1.f);
    if (a.masked)
        for (int j = 0; j < S; ++j) {
            if (j % 3 == 1) mask[j] = 0.f;
            mask[(N - 1) * S + j] = 0.f;
        }
    auto kn = k, vn = v;  // what the kernels see: NaN in padded frames
    for (int n = 0; n < N; ++n) for (int j = 0; j < S; ++j) if (mask[n * S + j] == 0)
        for (int x = 0; x < H * D; ++x) kn[((size_t)n * S + j) * H * D + x] = vn[((size_t)n * S + j) * H * D + x] = NAN;
    unsigned group = 1; while (16 * group < (unsigned)D) group *= 2;
    AttnParams p{(u64)N, (u64)T, (u64)S, (u64)H, (u64)D, group, 1.f / sqrtf((float)D)};
    const float* m = a.masked ? mask.data() : nullptr;
    std::vector<float> y(q.size(), NAN), lse((size_t)N * H * T, NAN), delta(lse.size(), NAN);
    std::vector<float> dq(q.size(), NAN), dk(k.size(), NAN), dv(v.size(), NAN);
    const unsigned qt = N * H * ((T + ATT_TILE - 1) / ATT_TILE), kt = N * H * ((S + ATT_TILE - 1) / ATT_TILE);
    launch({qt, 1, 1}, {32 * group, 1, 1}, [&] { attention_forward(p, q.data(), kn.data(), vn.data(), m, y.data(), lse.data()); });
    launch({3, 1, 1}, {64, 1, 1}, [&] { attention_backward_delta(p, g.data(), y.data(), delta.data()); });
    launch({kt, 1, 1}, {32 * group, 1, 1}, [&] { attention_backward_kv(p, q.data(), kn.data(), vn.data(), m, g.data(), lse.data(), delta.data(), dk.data(), dv.data()); });
    launch({qt, 1, 1}, {32 * group, 1, 1}, [&] { attention_backward_q(p, q.data(), kn.data(), vn.data(), m, g.data(), lse.data(), delta.data(), dq.data()); });
    VD Q = dbl(q), K = dbl(k), V = dbl(v), G = dbl(g), Y;
    att_ref(a, Q, K, V, mask, Y);
    char w[120], nm[80];
    snprintf(nm, 80, "attention N%d T%d S%d H%d D%d%s", N, T, S, H, D, a.masked ? " masked" : "");
    snprintf(w, 120, "%s forward", nm); check(w, y.data(), Y, 1e-5, 1e-4);
    auto loss = [&](const VD& qq, const VD& kk, const VD& vv) { VD o; att_ref(a, qq, kk, vv, mask, o); double L = 0; for (size_t i = 0; i < o.size(); ++i) L += G[i] * o[i]; return L; };
    // Padded keys get gradient 0 (their NaN never entered).
    snprintf(w, 120, "%s dq", nm); check_grad(w, dq, Q, [&](const VD& x) { return loss(x, K, V); });
    snprintf(w, 120, "%s dk", nm); check_grad(w, dk, K, [&](const VD& x) { return loss(Q, x, V); });
    snprintf(w, 120, "%s dv", nm); check_grad(w, dv, V, [&](const VD& x) { return loss(Q, K, x); });
}
void temporal() {
    rnn_step_case(3);
    rnn_step_case(4);
    // D = 5 and 48 pad a thread's dims; 8, 32, 64, 128: one to eight threads
    // per row; T, S past a 32-row tile and not multiples of it.
    attention_case({3, 3, 37, 2, 5, true});
    attention_case({1, 33, 33, 2, 8, false});
    attention_case({3, 45, 70, 1, 32, true});
    attention_case({1, 65, 65, 2, 64, false});
    attention_case({2, 17, 9, 1, 48, true});
    attention_case({1, 5, 40, 1, 128, false});
}

// bf16 tensor-core conv fprop (conv_bf16.cu) on bf16-rounded inputs, with
// cp.async immediate and deferred; f32 and bf16 outputs; the stem's channels
// padded from 3 to 8 by f32_to_bf16_pad, read back through bf16_to_f32.
void conv_bf16_case(G g, int c_real, bool bias) {
    int P = g.p(), Q = g.q(), M = g.n*P*Q, Kd = g.r*g.s*g.c;
    auto X = randv((size_t)g.n*g.h*g.w*c_real), W = randv((size_t)g.k*g.r*g.s*c_real), b = randv(g.k);
    std::vector<unsigned short> xb((size_t)g.n*g.h*g.w*g.c, 0xffff), wb((size_t)g.k*g.r*g.s*g.c, 0xffff);
    Bf16PadParams px{(u64)g.n*g.h*g.w, c_real, g.c}, pw{(u64)g.k*g.r*g.s, c_real, g.c};
    launch({3,1,1},{256,1,1},[&]{ f32_to_bf16_pad(px, X.data(), xb.data()); });
    launch({3,1,1},{256,1,1},[&]{ f32_to_bf16_pad(pw, W.data(), wb.data()); });
    auto xv = [&](size_t i) { return (double)emu_bf16(xb[i]); };
    auto wv = [&](size_t i) { return (double)emu_bf16(wb[i]); };
    for (size_t i = 0; i < X.size(); ++i) if (xb[i / c_real * g.c + i % c_real] != to_bf16(X[i])) { puts("f32_to_bf16_pad: FAIL"); exit(1); }
    std::vector<double> Y((size_t)M*g.k), A((size_t)M*g.k);  // A: sum of |terms|, for the tolerance
    for (int n=0;n<g.n;++n) for (int pp=0;pp<P;++pp) for (int qq=0;qq<Q;++qq) for (int k=0;k<g.k;++k) {
        double acc = bias ? b[k] : 0, ab = fabs(acc);
        for (int r=0;r<g.r;++r) for (int s=0;s<g.s;++s) for (int c=0;c<g.c;++c) {
            int hh = pp*g.sh - g.pt + r*g.dh, ww = qq*g.sw - g.pl + s*g.dw;
            if (hh<0||hh>=g.h||ww<0||ww>=g.w) continue;
            double t = xv(((size_t)(n*g.h+hh)*g.w+ww)*g.c + c) * wv(((size_t)(k*g.r+r)*g.s+s)*g.c + c);
            acc += t; ab += fabs(t);
        }
        size_t o = ((size_t)(n*P+pp)*Q+qq)*g.k+k; Y[o] = acc; A[o] = ab;
    }
    ConvParams p{g.n,g.h,g.w,g.c,g.k,g.r,g.s,P,Q,g.sh,g.sw,g.pt,g.pl,g.dh,g.dw,1,1,bias};
    // The 128 x 64 tile (4 warps) and the wide 128 x 128 (8 warps).
    for (int mode = 0; mode < 4; ++mode) {
        const bool defer = mode % 2, wide = mode / 2 == 1;
        g_cp_async_defer = defer;
        const int bn = wide ? 128 : 64;
        dim3 grid{(unsigned)((M+127)/128),(unsigned)((g.k+bn-1)/bn),1}, block{wide ? 256u : 128u,1,1};
        std::vector<float> y(Y.size(), NAN);
        std::vector<unsigned short> yb(Y.size(), 0xffff);
        auto f32_out = wide ? conv_bf16_fprop_f32_wide : conv_bf16_fprop_f32;
        launch(grid,block,[&]{ f32_out(p, xb.data(), wb.data(), b.data(), y.data()); });
        auto bf16_out = wide ? conv_bf16_fprop_bf16_wide : conv_bf16_fprop_bf16;
        launch(grid,block,[&]{ bf16_out(p, xb.data(), wb.data(), b.data(), yb.data()); });
        std::vector<float> yf(Y.size(), NAN);
        Bf16PadParams pb{(u64)Y.size(), 1, 1};
        launch({2,1,1},{256,1,1},[&]{ bf16_to_f32(pb, yb.data(), yf.data()); });
        // f32 accumulation of Kd + 1 terms: |err| <= Kd 2^-24 sum|terms| (x4 margin); bf16 output adds at most 2^-8 (|Y| + tol).
        double worst = 0, worst_b = 0;
        for (size_t i = 0; i < Y.size(); ++i) {
            double tol = 1e-6 + 4.0 * (Kd + 1) * ldexp(1.0, -24) * A[i], e = fabs(y[i] - Y[i]) / tol;
            double eb = fabs(yf[i] - Y[i]) / (tol * (1 + ldexp(1.0, -8)) + ldexp(1.0, -8) * fabs(Y[i]));
            if (!(e <= 1) || !(eb <= 1)) { printf("conv_bf16 FAIL at %zu: f32 %f bf16 %f vs %f\n", i, y[i], yf[i], Y[i]); exit(1); }
            worst = std::max(worst, e); worst_b = std::max(worst_b, eb);
        }
        printf("conv_bf16%s n%d %dx%d c%d(%d) k%d %dx%d s%d p%d d%d cp.async %s ok (worst err/tol f32 out %.3f, bf16 out %.3f, %zu values)\n",
               wide ? "_wide" : "", g.n, g.h, g.w, g.c, c_real, g.k, g.r, g.s, g.sh, g.pt, g.dh, defer ? "deferred" : "immediate", worst, worst_b, Y.size());
    }
    g_cp_async_defer = false;
}
// bf16 tensor-core wgrad (conv_bf16_wgrad*) on bf16 x (c_real channels
// padded to g.c) and dy (k_real channels padded to a multiple of 8), both
// tile shapes, one or several pixel splits, cp.async immediate and deferred.
void conv_bf16_wgrad_case(G g, int c_real, int splits) {
    int P = g.p(), Q = g.q(), M = g.n*P*Q, ldy = (g.k + 7) / 8 * 8;
    auto X = randv((size_t)g.n*g.h*g.w*c_real), DY = randv((size_t)M*g.k);
    std::vector<unsigned short> xb((size_t)g.n*g.h*g.w*g.c, 0xffff), db((size_t)M*ldy, 0xffff);
    Bf16PadParams px{(u64)g.n*g.h*g.w, c_real, g.c}, pd{(u64)M, g.k, ldy};
    launch({3,1,1},{256,1,1},[&]{ f32_to_bf16_pad(px, X.data(), xb.data()); });
    launch({3,1,1},{256,1,1},[&]{ f32_to_bf16_pad(pd, DY.data(), db.data()); });
    auto xv = [&](int n, int h, int w, int c) { return (double)emu_bf16(xb[((size_t)(n*g.h+h)*g.w+w)*g.c + c]); };
    size_t taps = (size_t)g.r*g.s*c_real;
    std::vector<double> R((size_t)g.k*taps, 0), A(R.size(), 0);  // A: sum of |terms|, for the tolerance
    for (int n=0;n<g.n;++n) for (int pp=0;pp<P;++pp) for (int qq=0;qq<Q;++qq) for (int k=0;k<g.k;++k) {
        double d = emu_bf16(db[((size_t)(n*P+pp)*Q+qq)*ldy + k]);
        for (int r=0;r<g.r;++r) for (int s=0;s<g.s;++s) for (int c=0;c<c_real;++c) {
            int hh = pp*g.sh - g.pt + r*g.dh, ww = qq*g.sw - g.pl + s*g.dw;
            if (hh<0||hh>=g.h||ww<0||ww>=g.w) continue;
            double t = d * xv(n, hh, ww, c);
            size_t o = k*taps + (r*g.s+s)*c_real + c; R[o] += t; A[o] += fabs(t);
        }
    }
    Bf16WgradParams p{{g.n,g.h,g.w,g.c,g.k,g.r,g.s,P,Q,g.sh,g.sw,g.pt,g.pl,g.dh,g.dw,1,splits,0}, ldy, c_real};
    // Tiles: 128 x 64, 64 x 128 (m64), 128 x 128 (wide, 8 warps).
    for (int tile : {0, 1, 2}) for (bool defer : {false, true}) {
        g_cp_async_defer = defer;
        const bool m64 = tile == 1, wide = tile == 2;
        int bm = m64 ? 64 : 128, bn = tile ? 128 : 64, cols = g.r*g.s*g.c;
        std::vector<float> dw(R.size(), splits > 1 ? 0.f : NAN);
        dim3 grid{(unsigned)((cols+bn-1)/bn),(unsigned)((g.k+bm-1)/bm*splits),1}, block{wide ? 256u : 128u,1,1};
        auto kernel = wide ? conv_bf16_wgrad_wide : m64 ? conv_bf16_wgrad_m64 : conv_bf16_wgrad;
        launch(grid,block,[&]{ kernel(p, xb.data(), db.data(), dw.data()); });
        // f32 accumulation of M terms (per split, then the splits' partial sums): |err| <= (M + splits) 2^-24 sum|terms| (x4 margin).
        double worst = 0;
        for (size_t i = 0; i < R.size(); ++i) {
            double e = fabs(dw[i] - R[i]) / (1e-6 + 4.0 * (M + splits) * ldexp(1.0, -24) * A[i]);
            if (!(e <= 1)) { printf("conv_bf16_wgrad FAIL at %zu: %f vs %f\n", i, dw[i], R[i]); exit(1); }
            worst = std::max(worst, e);
        }
        printf("conv_bf16_wgrad%s n%d %dx%d c%d(%d) k%d %dx%d s%d p%d d%d split%d cp.async %s ok (worst err/tol %.3f, %zu values)\n",
               wide ? "_wide" : m64 ? "_m64" : "", g.n, g.h, g.w, g.c, c_real, g.k, g.r, g.s, g.sh, g.pt, g.dh, splits, defer ? "deferred" : "immediate", worst, R.size());
    }
    g_cp_async_defer = false;
}

// bf16 strided dgrad (conv_bf16_dgrad_phase): every stride phase launched as
// ops/conv/bf16_dgrad.rs does, with the phase geometry taken from conv.cu's
// DgradPhaseDim (the f32 phase dgrad's, checked by conv_case) and the
// sub-kernels gathered by conv_bf16_phase_weights; dy has K padded to a
// multiple of 8. dx is poisoned except the pixels of phases without taps
// (zeros, as the host's fill), then compared with the double dgrad of
// bf16-rounded dy and w; cp.async immediate and deferred.
void conv_bf16_dgrad_case(G g) {
    int P = g.p(), Q = g.q(), kp = (g.k + 7) / 8 * 8, Kd = g.r*g.s*kp;
    auto DY = randv((size_t)g.n*P*Q*g.k), W = randv((size_t)g.k*g.r*g.s*g.c);
    std::vector<unsigned short> db((size_t)g.n*P*Q*kp, 0xffff);
    Bf16PadParams pd{(u64)g.n*P*Q, g.k, kp};
    launch({3,1,1},{256,1,1},[&]{ f32_to_bf16_pad(pd, DY.data(), db.data()); });
    std::vector<double> R((size_t)g.n*g.h*g.w*g.c, 0), A(R.size(), 0);  // A: sum of |terms|, for the tolerance
    for (int n=0;n<g.n;++n) for (int pp=0;pp<P;++pp) for (int qq=0;qq<Q;++qq) for (int k=0;k<g.k;++k) {
        double d = emu_bf16(db[((size_t)(n*P+pp)*Q+qq)*kp + k]);
        for (int r=0;r<g.r;++r) for (int s=0;s<g.s;++s) for (int c=0;c<g.c;++c) {
            int hh = pp*g.sh - g.pt + r*g.dh, ww = qq*g.sw - g.pl + s*g.dw;
            if (hh<0||hh>=g.h||ww<0||ww>=g.w) continue;
            double t = d * emu_bf16(to_bf16(W[((size_t)(k*g.r+r)*g.s+s)*g.c + c]));
            size_t o = ((size_t)(n*g.h+hh)*g.w+ww)*g.c + c; R[o] += t; A[o] += fabs(t);
        }
    }
    // Onto an earlier gradient (accumulate): phases without taps keep it.
    auto prior = randv(R.size());
    // Modes: immediate, deferred, onto an earlier gradient; then the wide tile immediate and onto.
    for (int mode = 0; mode < 5; ++mode) {
        const bool defer = mode == 1, onto = mode == 2 || mode == 4, wide = mode >= 3;
        g_cp_async_defer = defer;
        std::vector<float> dx = onto ? prior : std::vector<float>(R.size(), NAN);
        int launched = 0;
        for (int a = 0; a < g.sh; ++a) for (int b = 0; b < g.sw; ++b) {
            DgradPhaseDim y(a, g.sh, g.pt, g.dh, g.r), x(b, g.sw, g.pl, g.dw, g.s);
            int hp = (g.h - a + g.sh - 1) / g.sh, wp = (g.w - b + g.sw - 1) / g.sw;
            if (hp <= 0 || wp <= 0) continue;
            if (!y.taps || !x.taps) {
                if (onto) continue;
                for (int n=0;n<g.n;++n) for (int i=0;i<hp;++i) for (int j=0;j<wp;++j)
                    std::fill_n(&dx[((size_t)(n*g.h + a + i*g.sh)*g.w + b + j*g.sw)*g.c], g.c, 0.f);
                continue;
            }
            std::vector<unsigned short> wb((size_t)g.c*y.taps*x.taps*kp, 0xffff);
            Bf16PhaseWeightParams pw{g.k,g.r,g.s,g.c, y.r0 + (y.taps-1)*y.step, -y.step, y.taps,
                                     x.r0 + (x.taps-1)*x.step, -x.step, x.taps, kp};
            launch({2,1,1},{256,1,1},[&]{ conv_bf16_phase_weights(pw, W.data(), wb.data()); });
            Bf16DgradPhaseParams p{{g.n,P,Q,kp, g.c,y.taps,x.taps, hp,wp, 1,1, y.de*(y.taps-1) - y.e, x.de*(x.taps-1) - x.e,
                                    y.de,x.de, 1,1,0}, a, b, g.sh, g.sw, g.h, g.w, onto};
            const int bn = wide ? 128 : 64;
            dim3 grid{(unsigned)((g.n*hp*wp+127)/128),(unsigned)((g.c+bn-1)/bn),1}, block{wide ? 256u : 128u,1,1};
            auto kernel = wide ? conv_bf16_dgrad_phase_wide : conv_bf16_dgrad_phase;
            launch(grid,block,[&]{ kernel(p, db.data(), wb.data(), dx.data()); });
            ++launched;
        }
        // f32 accumulation of at most Kd terms per phase: |err| <= Kd 2^-24 sum|terms| (x4 margin).
        double worst = 0;
        for (size_t i = 0; i < R.size(); ++i) {
            const double want = R[i] + (onto ? prior[i] : 0.0), mag = A[i] + (onto ? fabs(prior[i]) : 0.0);
            double e = fabs(dx[i] - want) / (1e-6 + 4.0 * (Kd + 1) * ldexp(1.0, -24) * mag);
            if (!(e <= 1)) { printf("conv_bf16_dgrad_phase FAIL at %zu: %f vs %f\n", i, dx[i], want); exit(1); }
            worst = std::max(worst, e);
        }
        printf("conv_bf16_dgrad_phase%s n%d %dx%d c%d k%d(%d) %dx%d s%dx%d p%d,%d d%d %d phases launched cp.async %s%s ok (worst err/tol %.3f, %zu values)\n",
               wide ? "_wide" : "", g.n, g.h, g.w, g.c, g.k, kp, g.r, g.s, g.sh, g.sw, g.pt, g.pl, g.dh, launched, defer ? "deferred" : "immediate",
               onto ? ", onto an earlier gradient" : "", worst, R.size());
    }
    g_cp_async_defer = false;
}

void conv_bf16() {
    conv_bf16_case({3,5,7,16, 24,3,3, 1,1, 1,1,1,1, 1,1, 1}, 16, true);   // M = 105 odd, K < 64, 5 k-tiles
    conv_bf16_case({2,9,11,32, 72,3,3, 2,2, 1,1,1,1, 1,1, 1}, 32, false); // stride 2, two column tiles
    conv_bf16_case({1,9,9,8, 16,3,3, 1,1, 2,0,1,2, 2,2, 1}, 8, true);     // dilation 2, asymmetric padding
    conv_bf16_case({1,13,13,8, 16,7,7, 2,2, 3,3,3,3, 1,1, 1}, 3, true);   // the stem: 3 channels padded to 8
    conv_bf16_case({2,6,7,16, 13,3,3, 1,1, 1,1,1,1, 1,1, 1}, 16, true);   // K = 13: odd rows, unpaired last column
    conv_bf16_case({1,5,6,16, 136,3,3, 1,1, 1,1,1,1, 1,1, 1}, 16, true);  // K = 136: two wide column tiles
    conv_bf16_case({2,8,9,64, 40,1,1, 1,1, 0,0,0,0, 1,1, 1}, 64, false);  // 1x1, M = 144 over two row tiles
    conv_bf16_wgrad_case({3,5,7,16, 24,3,3, 1,1, 1,1,1,1, 1,1, 1}, 16, 1);    // 105 pixels (a partial step), K < 64
    conv_bf16_wgrad_case({2,9,11,32, 136,3,3, 2,2, 1,1,1,1, 1,1, 1}, 32, 3); // stride 2, K over two row tiles, 3 splits
    conv_bf16_wgrad_case({1,9,9,8, 20,3,3, 1,1, 2,0,1,2, 2,2, 1}, 8, 2);     // dilation 2, asymmetric padding, K = 20 padded
    conv_bf16_wgrad_case({2,13,13,8, 16,7,7, 2,2, 3,3,3,3, 1,1, 1}, 3, 4);   // the stem: 3 channels padded to 8, Q = 7 < 32
    conv_bf16_wgrad_case({2,8,9,64, 40,1,1, 1,1, 0,0,0,0, 1,1, 1}, 64, 5);   // 1x1: 144 pixels in 5 splits (one empty)
    conv_bf16_wgrad_case({5,3,2,16, 8,1,1, 1,1, 0,0,0,0, 1,1, 1}, 16, 1);    // 6-pixel images: a step spans 5 images
    conv_bf16_dgrad_case({3,15,13,72, 40,3,3, 2,2, 1,1,1,1, 1,1, 1});   // 3x3/2 pad 1: 4 phases (4, 2, 2, 1 taps), 2x2 tiles
    conv_bf16_dgrad_case({2,8,9,16, 20,1,1, 2,2, 0,0,0,0, 1,1, 1});     // 1x1/2: three phases without taps, K = 20 padded to 24
    conv_bf16_dgrad_case({1,13,13,8, 16,7,7, 2,2, 3,3,3,3, 1,1, 1});    // 7x7/2 pad 3, 8 channels: 16, 12, 12, 9 taps
    conv_bf16_dgrad_case({1,9,7,5, 12,4,4, 2,2, 1,1,1,1, 1,1, 1});      // 4x4/2 pad 1, odd sizes, C = 5, K = 12 padded
    conv_bf16_dgrad_case({1,11,10,3, 8,3,3, 3,2, 1,1,1,1, 1,1, 1});     // stride 3 x 2: 6 phases, C = 3
    conv_bf16_dgrad_case({1,10,9,16, 8,3,3, 2,2, 2,1,1,2, 2,2, 1});     // dilation 2, asymmetric padding: one phase takes all taps
    conv_bf16_dgrad_case({2,9,11,24, 40,3,3, 1,1, 1,1,1,1, 1,1, 1});    // stride 1: one phase, every tap
    conv_bf16_dgrad_case({1,6,7,5, 8,3,3, 1,1, 2,0,1,2, 1,1, 1});       // stride 1, C = 5, asymmetric padding
    conv_bf16_dgrad_case({1,5,6,16, 12,1,1, 1,1, 1,1,1,1, 1,1, 1});     // 1x1 with padding wider than its reach (negative phase padding)
    conv_bf16_dgrad_case({1,7,6,136, 16,3,3, 2,2, 1,1,1,1, 1,1, 1});    // C = 136: two column tiles of the 128-column tiles
}

// dropout_apply per element (group 1) and per sample (drop path, group 15):
// each output is its input scaled or zero, as one draw per group decides.
void dropout_masks() {
    for (u64 group : {1ull, 15ull}) {
        const int n = 40 * 15;
        auto x = randv(n);
        std::vector<float> y(n, NAN);
        DropoutParams p{(u64)n, 0x1234567ull, group, (u32)(0.3 * (1u << 24)), 1.0f / 0.7f};
        launch({1, 1, 1}, {256, 1, 1}, [&] { dropout_apply(p, x.data(), y.data()); });
        std::vector<double> Y(n);
        for (int i = 0; i < n; ++i) Y[i] = dropout_bits(p.seed, i / group) < p.threshold ? 0.0 : x[i] / 0.7;
        check(group == 1 ? "dropout_apply" : "dropout_apply (drop path)", y.data(), Y, 1e-6, 1e-6);
    }
}

// Per-sample token gather [3, 7, 5] -> [3, 4, 5] with repeated and unpicked
// tokens, and its backward from CSR source lists as ops/gather_tokens.rs builds them.
void tokens() {
    const int N = 3, T = 7, K = 4, D = 5;
    std::vector<u32> idx = {6, 0, 6, 3, 2, 2, 2, 2, 0, 1, 4, 5};
    auto x = randv(N * T * D), dy = randv(N * K * D);
    GatherTokensParams p{N, T, K, D};
    std::vector<float> y(N * K * D, NAN), dx(N * T * D, NAN);
    launch({1, 1, 1}, {256, 1, 1}, [&] { gather_tokens_forward(p, idx.data(), x.data(), y.data()); });
    std::vector<u32> offsets(N * T + 1, 0), sources;
    for (int r = 0; r < N * T; ++r) {
        for (int j = 0; j < K; ++j) if ((int)idx[r / T * K + j] == r % T) sources.push_back(j);
        offsets[r + 1] = sources.size();
    }
    launch({1, 1, 1}, {256, 1, 1}, [&] { gather_tokens_backward(p, offsets.data(), sources.data(), dy.data(), dx.data()); });
    std::vector<double> Y(y.size()), DX(dx.size(), 0);
    for (int n = 0; n < N; ++n) for (int j = 0; j < K; ++j) for (int c = 0; c < D; ++c) {
        const int src = (n * T + idx[n * K + j]) * D + c, dst = (n * K + j) * D + c;
        Y[dst] = x[src]; DX[src] += dy[dst];
    }
    check("gather_tokens forward (exact copy)", y.data(), Y, 1e-30, 0); check("gather_tokens backward", dx.data(), DX);
}

int main() {
    se_case(3, 37, 40, 2);
    se_case(2, 50, 5, 3);
    prelu_case(301, 12, 4);
    prelu_case(97, 7, 3);
    prelu_case(1001, 1, 5);
    tiles();
    others();
    elementwise();
    tokens();
    dropout_masks();
    temporal();
    conv_bf16();
    puts("all kernels match their references");
}
