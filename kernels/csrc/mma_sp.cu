// Large-M 2:4 sparse GEMM on sparse tensor cores (sm_80+):
//   Y[M, N] = X[M, K] . W^T (+ bias[N]),  W 2:4-compressed (values [N, K/2], meta [N, K/16]; common.cuh)
//
// W is the sparse operand A of mma.sp::ordered_metadata.m16n8k32.row.col (rows = output
// features, K contiguous); X is operand B in "col" layout (each token's K contiguous), so the
// kernel computes Y^T tile by tile and stores it transposed.
//
// Block tile 128 W-rows x 64 tokens, 32 dense K per stage (one mma k32), 4-stage cp.async
// pipeline, 4 warps in 2 x 2, each 64 rows x 32 tokens = 4 x 4 mma tiles. Per stage, shared
// memory holds the compressed values (128 x 16 halves, rows padded to 24), X (64 x 32 halves,
// rows padded to 40: both make the 8 rows of every ldmatrix land in distinct banks) and 2 meta
// words per W-row (47 KB for 4 stages). Fragments come from ldmatrix: the compressed A tile is a dense m16n8k16 A fragment.
// Metadata (sparsity selector 0): lane 4g+j, j in {0,1}, holds meta16[g][j] | meta16[g+8][j] << 16,
// meta16[r][j] covering dense columns 16j .. 16j+15 of tile row r.
// Needs K % 32 == 0; M and N are free (bounds are predicated).
#include "common.cuh"

#define BN 128  // W rows per block
#define BM 64   // tokens per block
#define BKC 16  // compressed halves per stage (= 32 dense K)
#define BKX 32  // dense halves of X per stage
#define STAGES 4
#define A_STRIDE 24  // halves per staged W row: 16 + 8 padding, so ldmatrix rows hit distinct banks
#define B_STRIDE 40  // halves per staged X row: 32 + 8 padding
#define META_PAD 0x44444444u  // a valid nibble (first 0, second 1) for rows past N: 0 is undefined for mma.sp

template <typename T, bool BF16>
__device__ __forceinline__ void mma_sp_gemm(gptr<const u16> __restrict__ x, gptr<const u16> __restrict__ values, gptr<const u16> __restrict__ meta,
                                            gptr<const u16> __restrict__ bias, gptr<u16> __restrict__ y, int M, int N, int K) {
    alignas(128) __shared__ shared_array<u16, STAGES, BN, A_STRIDE> As;
    alignas(128) __shared__ shared_array<u16, STAGES, BM, B_STRIDE> Bs;
    alignas(16) __shared__ shared_array<u32, STAGES, BN> Ms;

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int warp_row = warp >> 1;  // 0..1: 64 W-rows each
    const int warp_col = warp & 1;   // 0..1: 32 tokens each
    const int m0 = blockIdx.x * BM;
    const int n0 = blockIdx.y * BN;
    const int k_blocks = K / 32;
    const long long value_stride = K / 2, meta_stride = K / 16;

    // Loads of one stage: 128 threads; W values: row tid, 2 x 16 B; X: row tid/2, 2 x 16 B; meta: row tid, 4 B.
    auto load_stage = [&](int stage, int kb) {
        const int n = n0 + tid;
        const bool n_ok = n < N;
        const gptr<const u16> w_src = values + (n_ok ? (long long)n * value_stride + kb * BKC : 0);
        cp_async_cg16(shared_address(&As[stage][tid][0]), w_src, n_ok ? 16 : 0);  // zero-fill outside W
        cp_async_cg16(shared_address(&As[stage][tid][8]), w_src + 8, n_ok ? 16 : 0);
        const int row = tid >> 1, half = (tid & 1) * 16;
        const int m = m0 + row;
        const bool m_ok = m < M;
        const gptr<const u16> x_src = x + (m_ok ? (long long)m * K + kb * BKX + half : 0);
        cp_async_cg16(shared_address(&Bs[stage][row][half]), x_src, m_ok ? 16 : 0);  // zero-fill outside X
        cp_async_cg16(shared_address(&Bs[stage][row][half + 8]), x_src + 8, m_ok ? 16 : 0);
        if (n_ok) {
            cp_async_ca4(shared_address(&Ms[stage][tid]), meta + (long long)n * meta_stride + kb * 2, 4);
        } else {
            Ms[stage][tid] = META_PAD;  // this stage is not being read; the next barrier publishes it
        }
    };

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < k_blocks) load_stage(s, s);
        cp_async_commit();
    }

    const int g = lane >> 2, q = lane & 3;
    const int mat = lane >> 3, mat_row = lane & 7;
    for (int kb = 0; kb < k_blocks; ++kb) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int next = kb + STAGES - 1;
        if (next < k_blocks) load_stage(next % STAGES, next);
        cp_async_commit();

        const int stage = kb % STAGES;
        u32 a[4][4], b[4][4], e[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int row = warp_row * 64 + i * 16;
            // matrices: (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15)
            ldmatrix_x4(a[i], shared_address(&As[stage][row + mat_row + 8 * (mat & 1)][8 * (mat >> 1)]));
            const u32 top = Ms[stage][row + g], bottom = Ms[stage][row + g + 8];
            const int j = q & 1;  // lanes with q >= 2 are ignored by selector 0
            e[i] = ((top >> (16 * j)) & 0xffffu) | (((bottom >> (16 * j)) & 0xffffu) << 16);
        }
#pragma unroll
        for (int jn = 0; jn < 4; ++jn) {
            const int token = warp_col * 32 + jn * 8;
            // matrices: tokens 0-7 with k 0-7, 8-15, 16-23, 24-31 -> b0..b3
            ldmatrix_x4(b[jn], shared_address(&Bs[stage][token + mat_row][8 * mat]));
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int jn = 0; jn < 4; ++jn) mma_sp_16832<BF16>(acc[i][jn], a[i], b[jn], e[i]);
    }
    cp_async_wait<0>();

    // acc[i][jn]: d0, d1 = (W-row g, tokens 2q, 2q+1), d2, d3 = (W-row g+8, same tokens).
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int n = n0 + warp_row * 64 + i * 16 + g + 8 * half;
            if (n >= N) continue;
            const float b = bias != nullptr ? T::to_float(bias[n]) : 0.f;
#pragma unroll
            for (int jn = 0; jn < 4; ++jn) {
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const int m = m0 + warp_col * 32 + jn * 8 + 2 * q + c;
                    if (m < M) y[(long long)m * N + n] = T::from_float(acc[i][jn][2 * half + c] + b);
                }
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(128)
    sparse24_mma_sp_f16(gptr<const u16> x, gptr<const u16> values, gptr<const u16> meta, gptr<const u16> bias, gptr<u16> y, int M, int N, int K) {
    mma_sp_gemm<half_t, false>(x, values, meta, bias, y, M, N, K);
}

extern "C" __global__ void __launch_bounds__(128)
    sparse24_mma_sp_bf16(gptr<const u16> x, gptr<const u16> values, gptr<const u16> meta, gptr<const u16> bias, gptr<u16> y, int M, int N, int K) {
    mma_sp_gemm<bf16_t, true>(x, values, meta, bias, y, M, N, K);
}
