// 2:4 compress / decompress between dense [N, K] and (values [N, K/2], meta [N, K/16]); layout in common.cuh.
#include "common.cuh"

// One thread per 16-column chunk. *bad counts groups with more than 2 nonzeros (the caller
// refuses such weights); nothing else is undefined for them.
__device__ void compress_chunk(gptr<const u16> dense, gptr<u16> values, gptr<u16> meta, gptr<int> bad, int N, int K) {
    const long long chunks = (long long)N * (K / 16);
    const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= chunks) return;
    const gptr<const u16> src = dense + c * 16;
    u16 in[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) in[i] = src[i];
    u16 out[8];
    u32 word = 0;
    int too_many_groups = 0;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        bool too_many;
        const u32 nibble = group_nibble(nonzero_bits(in[4 * q]), nonzero_bits(in[4 * q + 1]), nonzero_bits(in[4 * q + 2]),
                                        nonzero_bits(in[4 * q + 3]), &too_many);
        too_many_groups += too_many;
        out[2 * q] = in[4 * q + (nibble & 3u)];
        out[2 * q + 1] = in[4 * q + (nibble >> 2)];
        word |= nibble << (4 * q);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) values[c * 8 + i] = out[i];
    meta[c] = (u16)word;
    if (too_many_groups) atomicAdd(bad, too_many_groups);
}

__device__ void decompress_chunk(gptr<const u16> values, gptr<const u16> meta, gptr<u16> dense, int N, int K) {
    const long long chunks = (long long)N * (K / 16);
    const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= chunks) return;
    const u32 word = meta[c];
    u16 out[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) out[i] = 0;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        const u32 nibble = (word >> (4 * q)) & 0xfu;
        out[4 * q + (nibble & 3u)] = values[c * 8 + 2 * q];
        out[4 * q + (nibble >> 2)] = values[c * 8 + 2 * q + 1];
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) dense[c * 16 + i] = out[i];
}

// The bit pattern is all that matters here, so one kernel serves fp16 and bf16.
extern "C" __global__ void sparse24_compress_16bit(gptr<const u16> dense, gptr<u16> values, gptr<u16> meta, gptr<int> bad, int N, int K) {
    compress_chunk(dense, values, meta, bad, N, K);
}

extern "C" __global__ void sparse24_decompress_16bit(gptr<const u16> values, gptr<const u16> meta, gptr<u16> dense, int N, int K) {
    decompress_chunk(values, meta, dense, N, K);
}
