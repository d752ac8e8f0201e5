// Probe kernels for the tests: each exercises one helper of kernels/csrc/common.cuh, or one thing the
// CPU emulation must catch, so the helper's result can be checked against the positions the PTX ISA
// documents (and, on a GPU, against the hardware). Valid CUDA: test_build compiles it with nvcc.
#include "common.cuh"

// cvt: f32 -> f16 and bf16 (round to nearest even), and f16 -> f32.
extern "C" __global__ void probe_cvt(gptr<const float> in, gptr<const u16> halves, gptr<u16> f16, gptr<u16> bf16, gptr<float> widened, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    f16[i] = cvt_rn_f16_f32(in[i]);
    bf16[i] = cvt_rn_bf16_f32(in[i]);
    widened[i] = cvt_f32_f16(halves[i]);
}

// ldmatrix.x4 on a 32 x 16 tile of halves staged in shared memory: lane l gives the address of row
// rows[l], column `column`; out[4 l + j] is its register j.
extern "C" __global__ void probe_ldmatrix(gptr<const u16> tile, gptr<const int> rows, gptr<u32> out, int column) {
    __shared__ shared_array<u16, 32, 16> s;
    const int lane = threadIdx.x;
    for (int i = 0; i < 16; ++i) s[lane][i] = tile[lane * 16 + i];
    __syncthreads();
    u32 r[4];
    ldmatrix_x4(r, shared_address(&s[rows[lane]][column]));
    for (int j = 0; j < 4; ++j) out[lane * 4 + j] = r[j];
}

// One mma.sp m16n8k32 from per-lane registers: a, b, c, d are [32 lanes][4], e is [32 lanes].
template <bool BF16, int SELECTOR>
__device__ __forceinline__ void probe_mma(gptr<const u32> a, gptr<const u32> b, gptr<const float> c, gptr<const u32> e, gptr<float> d) {
    const int lane = threadIdx.x;
    u32 ra[4], rb[4];
    float acc[4];
    for (int i = 0; i < 4; ++i) {
        ra[i] = a[lane * 4 + i];
        rb[i] = b[lane * 4 + i];
        acc[i] = c[lane * 4 + i];
    }
    mma_sp_16832<BF16, SELECTOR>(acc, ra, rb, e[lane]);
    for (int i = 0; i < 4; ++i) d[lane * 4 + i] = acc[i];
}

extern "C" __global__ void probe_mma_sp_f16_s0(gptr<const u32> a, gptr<const u32> b, gptr<const float> c, gptr<const u32> e, gptr<float> d) {
    probe_mma<false, 0>(a, b, c, e, d);
}
extern "C" __global__ void probe_mma_sp_f16_s1(gptr<const u32> a, gptr<const u32> b, gptr<const float> c, gptr<const u32> e, gptr<float> d) {
    probe_mma<false, 1>(a, b, c, e, d);
}
extern "C" __global__ void probe_mma_sp_bf16_s0(gptr<const u32> a, gptr<const u32> b, gptr<const float> c, gptr<const u32> e, gptr<float> d) {
    probe_mma<true, 0>(a, b, c, e, d);
}

// cp.async by one thread: two 16-byte copies of src[0:8] and src[8:16] into s[0:8] and s[8:16] (which
// hold 0x7777 before), in two groups; then s[16:24] gets src[16:24] with src-size 8 (the last 4 halves
// zero-filled). mode 0 waits for everything, mode 1 waits with N = 1 (the last group may be in
// flight), mode 2 never waits. out[0:24] is what the thread then reads.
extern "C" __global__ void probe_cp_async(gptr<const u16> src, gptr<u16> out, int mode) {
    alignas(16) __shared__ shared_array<u16, 24> s;
    for (int i = 0; i < 24; ++i) s[i] = 0x7777;
    cp_async_cg16(shared_address(&s[0]), src, 16);
    cp_async_commit();
    cp_async_cg16(shared_address(&s[8]), src + 8, 16);
    cp_async_cg16(shared_address(&s[16]), src + 16, 8);
    cp_async_commit();
    if (mode == 0) cp_async_wait<0>();
    if (mode == 1) cp_async_wait<1>();
    for (int i = 0; i < 24; ++i) out[i] = s[i];
}

// Each thread writes s[t] and reads its neighbour's: needs the barrier (`barrier` = 1).
extern "C" __global__ void probe_neighbour(gptr<float> out, int barrier) {
    __shared__ shared_array<float, 64> s;
    const int t = threadIdx.x;
    s[t] = (float)t;
    if (barrier) __syncthreads();
    out[t] = s[(t + 1) % 64];
}

// Barriers: mode 0 all threads, mode 1 threads >= 16 only (the rest exit), mode 2 two call sites.
extern "C" __global__ void probe_barrier(gptr<int> out, int mode) {
    const int t = threadIdx.x;
    if (mode == 1 && t < 16) return;
    if (mode == 2 && (t & 1)) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[t] = t;
}

// Butterfly sum over the warp: mode 0 all lanes; mode 1 lanes 16..31 skip the shuffles;
// mode 2 the mask holds lanes 0..15 but the xor reaches lane + 16.
extern "C" __global__ void probe_shuffle(gptr<const float> in, gptr<float> out, int mode) {
    const int lane = threadIdx.x;
    float v = in[lane];
    if (mode == 1 && lane >= 16) return;
    if (mode == 2) {
        if (lane < 16) v += __shfl_xor_sync(0x0000ffffu, v, 16);
    } else {
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    out[lane] = v;
}

// out[i] = in[i + shift] for i < n (shift 1 reads past the end); mode 1 also indexes shared memory
// one past the end, mode 2 reads a shared element no thread wrote.
extern "C" __global__ void probe_bounds(gptr<const float> in, gptr<float> out, int n, int shift, int mode) {
    __shared__ shared_array<float, 32> s;
    const int i = threadIdx.x;
    if (i < n) s[i] = in[i + shift];
    __syncthreads();
    const int j = mode == 1 ? i + 1 : mode == 2 ? (i + 1) % 32 : i;
    if (i < n) out[i] = s[j];
}

// Lane l reads word l * stride of shared memory (a bank-conflict probe).
extern "C" __global__ void probe_banks(gptr<float> out, int stride) {
    __shared__ shared_array<float, 32 * 33> s;
    const int lane = threadIdx.x;
    for (int i = lane; i < 32 * 33; i += 32) s[i] = (float)i;
    __syncthreads();
    out[lane] = s[(lane * stride) % (32 * 33)];
}
