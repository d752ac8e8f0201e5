// sparse24 kernels: shared helpers. Header-free on purpose (no cuda_fp16.h / <cstdint>), so the
// same sources compile with NVRTC at run time and with nvcc in CI.
//
// 2:4 compressed layout (the one layout every kernel here reads; kernels/reference.py is its
// pure-PyTorch twin):
//   dense W [N, K] (K % 16 == 0), 2 nonzeros at most in every group of 4 along K
//   values  [N, K/2]  the 2 kept values of each group, lower index first
//   meta    [N, K/16] 16-bit words; word (n, c) covers dense columns 16c .. 16c+15 of row n;
//                     bits 4q..4q+3 describe group q (columns 16c+4q .. 16c+4q+3):
//                     bits 0-1 = index of the first kept value, bits 2-3 = index of the second,
//                     first < second (valid nibbles 0x4 0x8 0x9 0xC 0xD 0xE, as mma.sp wants).
//   A group with fewer than 2 nonzeros keeps its nonzero positions plus the lowest unused ones.
#pragma once

typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

struct alignas(16) u32x4 {  // one 16-byte load: 8 halves
    u32 x, y, z, w;
};

// fp16 / bf16 <-> fp32 through PTX, so no headers are needed.
struct half_t {
    static __device__ __forceinline__ float to_float(u16 h) {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
    }
    static __device__ __forceinline__ u16 from_float(float f) {
        u16 h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
        return h;
    }
};

struct bf16_t {
    static __device__ __forceinline__ float to_float(u16 h) { return __uint_as_float(((u32)h) << 16); }
    static __device__ __forceinline__ u16 from_float(float f) {
        u16 h;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
        return h;
    }
};

// Nonzero test on the raw bits: +0 and -0 are both zero.
__device__ __forceinline__ bool nonzero_bits(u16 h) { return (h & 0x7fffu) != 0; }

// The 2 kept indices of a group of 4 from its nonzero flags, per the layout above. Returns the
// nibble (first | second << 2) and sets *too_many when more than 2 are nonzero.
__device__ __forceinline__ u32 group_nibble(bool n0, bool n1, bool n2, bool n3, bool* too_many) {
    const bool nz[4] = {n0, n1, n2, n3};
    int count = (int)n0 + (int)n1 + (int)n2 + (int)n3;
    *too_many = count > 2;
    int first = -1, second = -1;
#pragma unroll
    for (int i = 0; i < 4; ++i) {  // nonzero positions first
        if (nz[i]) {
            if (first < 0) first = i;
            else if (second < 0) second = i;
        }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {  // then the lowest unused positions
        if (!nz[i]) {
            if (first < 0) first = i;
            else if (second < 0 && i != first) second = i;
        }
    }
    if (first > second) { int t = first; first = second; second = t; }
    return (u32)first | ((u32)second << 2);
}

__device__ __forceinline__ u32 shared_address(const void* pointer) {
    u32 address;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(address) : "l"(pointer));
    return address;
}
