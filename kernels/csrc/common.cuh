// sparse24 kernels: shared types and helpers. Header-free on purpose (no cuda_fp16.h / <cstdint>),
// so the same sources compile with NVRTC at run time, with nvcc in CI, and with the host C++
// compiler for the CPU emulation (kernels/emulate.py defines SPARSE24_EMULATE and force-includes
// emulate.h).
//
// - Every PTX instruction the kernels use is one helper below: inline asm on the GPU, the PTX
//   ISA semantics in emulate.h (emu::ptx) on the CPU.
// - Kernels reach global memory only through gptr<T> (their pointer arguments and pointers
//   derived from them) and shared memory only through shared_array<T, dims...>: a plain
//   pointer and a plain array on the GPU, checked ones on the CPU. ptr_cast<T>(p) is the one
//   way to reinterpret either for a vector access. Declare shared arrays as
//   `alignas(N) __shared__ shared_array<T, D0, D1> name;` (alignas first: __shared__ is `static` on the CPU).
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

#ifdef SPARSE24_EMULATE

template <typename T>
using gptr = emu::gptr<T>;
template <typename T, int... D>
using shared_array = emu::shared_array<T, D...>;
template <typename To, typename From>
emu::gptr<To> ptr_cast(emu::gptr<From> p) {
    return emu::global_cast<To>(p);
}
template <typename To, typename From>
emu::sptr<To> ptr_cast(emu::sptr<From> p) {
    return emu::shared_cast<To>(p);
}

#else

template <typename T>
using gptr = T*;

template <typename T, int... D>
struct array_of;
template <typename T>
struct array_of<T> {
    typedef T type;
};
template <typename T, int D0, int... D>
struct array_of<T, D0, D...> {
    typedef typename array_of<T, D...>::type type[D0];
};
template <typename T, int... D>
using shared_array = typename array_of<T, D...>::type;  // T[D0][D1]...

template <typename To, typename From>
__device__ __forceinline__ To* ptr_cast(From* p) {
    return reinterpret_cast<To*>(p);
}

#endif

// ---- PTX helpers. Each: the asm on the GPU, emu::ptx (PTX ISA semantics) on the CPU.

// cvt.f32.f16 (PTX ISA 9.7.9.21)
__device__ __forceinline__ float cvt_f32_f16(u16 h) {
#ifdef SPARSE24_EMULATE
    return emu::ptx::cvt_f32_f16(h);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

// cvt.rn.f16.f32 (PTX ISA 9.7.9.21)
__device__ __forceinline__ u16 cvt_rn_f16_f32(float f) {
#ifdef SPARSE24_EMULATE
    return emu::ptx::cvt_rn_f16_f32(f);
#else
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}

// cvt.rn.bf16.f32 (PTX ISA 9.7.9.21)
__device__ __forceinline__ u16 cvt_rn_bf16_f32(float f) {
#ifdef SPARSE24_EMULATE
    return emu::ptx::cvt_rn_bf16_f32(f);
#else
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}

// cvta.to.shared (PTX ISA 9.7.9.18): the 32-bit shared-window address of a __shared__ element.
#ifdef SPARSE24_EMULATE
template <typename T>
u32 shared_address(emu::sptr<T> pointer) {
    return emu::ptx::cvta_to_shared(pointer);
}
#else
__device__ __forceinline__ u32 shared_address(const void* pointer) {
    u32 address;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(address) : "l"(pointer));
    return address;
}
#endif

// cp.async.cg.shared.global [dst], [src], 16, src_bytes (PTX ISA 9.7.9.25): 16 bytes, of which
// the last 16 - src_bytes are zero-filled; lands at a covering cp_async_wait.
__device__ __forceinline__ void cp_async_cg16(u32 dst, gptr<const u16> src, int src_bytes) {
#ifdef SPARSE24_EMULATE
    emu::ptx::cp_async(dst, src, 16, src_bytes, true);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
#endif
}

// cp.async.ca.shared.global [dst], [src], 4, src_bytes (PTX ISA 9.7.9.25)
__device__ __forceinline__ void cp_async_ca4(u32 dst, gptr<const u16> src, int src_bytes) {
#ifdef SPARSE24_EMULATE
    emu::ptx::cp_async(dst, src, 4, src_bytes, false);
#else
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
#endif
}

// cp.async.commit_group (PTX ISA 9.7.9.26)
__device__ __forceinline__ void cp_async_commit() {
#ifdef SPARSE24_EMULATE
    emu::ptx::cp_async_commit();
#else
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// cp.async.wait_group N (PTX ISA 9.7.9.27): all but the N most recent groups have landed.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef SPARSE24_EMULATE
    emu::ptx::cp_async_wait(N);
#else
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 (PTX ISA 9.7.14.5.15): lanes 8j..8j+7 give the rows of
// matrix j; lane l gets row l/4, columns 2(l%4), 2(l%4)+1 of matrix j in r[j].
#ifdef SPARSE24_EMULATE
inline void ldmatrix_x4(u32* r, u32 address, int line = __builtin_LINE()) {
    emu::ptx::ldmatrix_x4(r, address, line);
}
#else
__device__ __forceinline__ void ldmatrix_x4(u32* r, u32 address) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
}
#endif

// ::ordered_metadata needs PTX ISA 8.5 (CUDA 12.5+); older NVRTC (torch <= 2.6 pins 12.1/12.4)
// only knows the plain form, which gives the same cubin where both exist.
#if defined(__CUDACC_VER_MAJOR__) && (__CUDACC_VER_MAJOR__ * 100 + __CUDACC_VER_MINOR__ >= 1205)
#define SPARSE24_MMA_SP "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32."
#else
#define SPARSE24_MMA_SP "mma.sp.sync.aligned.m16n8k32.row.col.f32."
#endif

// mma.sp m16n8k32, f16 or bf16 inputs, f32 accumulate in place (PTX ISA 9.7.14.6): d += A . B with
// A 2:4 (a: the compressed 16 x 16 fragment, e: the metadata), sparsity selector SELECTOR.
#ifdef SPARSE24_EMULATE
template <bool BF16, int SELECTOR = 0>
inline void mma_sp_16832(float* d, const u32* a, const u32* b, u32 e, int line = __builtin_LINE()) {
    emu::ptx::mma_sp_m16n8k32(d, a, b, e, SELECTOR, BF16, line);
}
#else
template <bool BF16, int SELECTOR = 0>
__device__ __forceinline__ void mma_sp_16832(float* d, const u32* a, const u32* b, u32 e) {
    if (BF16) {
        asm volatile(
            SPARSE24_MMA_SP "bf16.bf16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, %13;\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e), "n"(SELECTOR));
    } else {
        asm volatile(
            SPARSE24_MMA_SP "f16.f16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, %13;\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e), "n"(SELECTOR));
    }
}
#endif

// fp16 / bf16 <-> fp32.
struct half_t {
    static __device__ __forceinline__ float to_float(u16 h) { return cvt_f32_f16(h); }
    static __device__ __forceinline__ u16 from_float(float f) { return cvt_rn_f16_f32(f); }
};

struct bf16_t {
    static __device__ __forceinline__ float to_float(u16 h) { return __uint_as_float(((u32)h) << 16); }
    static __device__ __forceinline__ u16 from_float(float f) { return cvt_rn_bf16_f32(f); }
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
