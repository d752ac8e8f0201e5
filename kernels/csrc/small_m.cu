// Small-M 2:4 sparse GEMM on CUDA cores (the decode path):
//   Y[M, N] = X[M, K] . W^T (+ bias[N]),  W 2:4-compressed (values [N, K/2], meta [N, K/16]; common.cuh)
//
// At small M the GEMM is bound by reading W: each kept value and its metadata are read once,
// with one 16-byte load per lane (8 values = 16 dense columns) plus one 16-bit meta word.
// A block is 8 warps; each warp owns one output row n and walks K in tiles of 512 dense
// columns (32 lanes x 16). The block stages X[m0 : m0+MT, tile] in shared memory, chunk by
// chunk with a stride of 18 halves, so lane l's chunk starts in bank 9l mod 32 (no conflicts
// between lanes reading the same offset). Accumulation is fp32; grid.y splits M in tiles of MT.
// Needs K % 16 == 0 and 16-byte aligned values.
#include "common.cuh"

#define SM_WARPS 8
#define SM_TILE 512              // dense columns per K tile
#define SM_CHUNKS (SM_TILE / 16) // 16-column chunks per tile = lanes
#define SM_STRIDE 18             // halves per staged chunk (16 + 2 padding)

template <typename T, int MT>
__device__ __forceinline__ void small_m_gemm(gptr<const u16> __restrict__ x, gptr<const u16> __restrict__ values, gptr<const u16> __restrict__ meta,
                                             gptr<const u16> __restrict__ bias, gptr<u16> __restrict__ y, int M, int N, int K) {
    alignas(16) __shared__ shared_array<u16, MT, SM_CHUNKS * SM_STRIDE> xs;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int n = blockIdx.x * SM_WARPS + warp;
    const int m0 = blockIdx.y * MT;
    const int chunks_per_row = K / 16;
    float acc[MT];
#pragma unroll
    for (int m = 0; m < MT; ++m) acc[m] = 0.f;

    for (int k0 = 0; k0 < K; k0 += SM_TILE) {
        __syncthreads();  // the previous tile is no longer read
        // Stage X[m0 : m0+MT, k0 : k0+SM_TILE] as 32-bit words (2 halves), zero outside X.
        for (int i = threadIdx.x; i < MT * SM_TILE / 2; i += SM_WARPS * 32) {
            const int m = i / (SM_TILE / 2);
            const int word = i % (SM_TILE / 2);
            const int k = k0 + 2 * word;
            u32 pair = 0;
            if (m0 + m < M && k < K) pair = *ptr_cast<const u32>(x + (long long)(m0 + m) * K + k);
            const int chunk = word / 8, within = word % 8;
            *ptr_cast<u32>(&xs[m][chunk * SM_STRIDE + 2 * within]) = pair;
        }
        __syncthreads();
        const int chunk = k0 / 16 + lane;
        if (n < N && chunk < chunks_per_row) {
            const long long c = (long long)n * chunks_per_row + chunk;
            const u32x4 packed = *ptr_cast<const u32x4>(values + c * 8);
            const u32 word = meta[c];
            const u32 lanes[4] = {packed.x, packed.y, packed.z, packed.w};
            float v[8];
            int col[8];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const u32 nibble = (word >> (4 * q)) & 0xfu;
                v[2 * q] = T::to_float((u16)(lanes[q] & 0xffffu));
                v[2 * q + 1] = T::to_float((u16)(lanes[q] >> 16));
                col[2 * q] = lane * SM_STRIDE + 4 * q + (int)(nibble & 3u);
                col[2 * q + 1] = lane * SM_STRIDE + 4 * q + (int)(nibble >> 2);
            }
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                float s = 0.f;
#pragma unroll
                for (int i = 0; i < 8; ++i) s += v[i] * T::to_float(xs[m][col[i]]);
                acc[m] += s;
            }
        }
    }
    if (n >= N) return;
    const float b = bias != nullptr ? T::to_float(bias[n]) : 0.f;
#pragma unroll
    for (int m = 0; m < MT; ++m) {
        float s = acc[m];
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(0xffffffffu, s, offset);
        if (lane == (m & 31) && m0 + m < M) y[(long long)(m0 + m) * N + n] = T::from_float(s + b);
    }
}

#define SPARSE24_SMALL_M(NAME, T, MT)                                                                          \
    extern "C" __global__ void __launch_bounds__(SM_WARPS * 32)                                                \
        NAME(gptr<const u16> x, gptr<const u16> values, gptr<const u16> meta, gptr<const u16> bias, gptr<u16> y, int M, int N, int K) { \
        small_m_gemm<T, MT>(x, values, meta, bias, y, M, N, K);                                              \
    }

SPARSE24_SMALL_M(sparse24_small_m_f16_1, half_t, 1)
SPARSE24_SMALL_M(sparse24_small_m_f16_2, half_t, 2)
SPARSE24_SMALL_M(sparse24_small_m_f16_4, half_t, 4)
SPARSE24_SMALL_M(sparse24_small_m_f16_8, half_t, 8)
SPARSE24_SMALL_M(sparse24_small_m_f16_16, half_t, 16)
SPARSE24_SMALL_M(sparse24_small_m_bf16_1, bf16_t, 1)
SPARSE24_SMALL_M(sparse24_small_m_bf16_2, bf16_t, 2)
SPARSE24_SMALL_M(sparse24_small_m_bf16_4, bf16_t, 4)
SPARSE24_SMALL_M(sparse24_small_m_bf16_8, bf16_t, 8)
SPARSE24_SMALL_M(sparse24_small_m_bf16_16, bf16_t, 16)
