// Multiply a row-major [rows, cols] tensor in place by its 2:4 mask, packed at 1 bit per element:
// the training gradient hook's step on a GPU (sparse24.enforce), one launch per layer and no
// temporary, where torch ops make an index tensor and an expanded mask per block of rows.
//
// The packing is sparse24.mask.pack_bits: each row's bits in row_bytes = ceil(cols / 8) bytes,
// least significant bit first; the padding bits of a row's last byte are never read. One thread
// per mask byte, i.e. up to 8 elements of one row. Pure-PyTorch reference: sparse24.mask.mask_rows_
// (tensor.mul_(0/1 mask in its dtype)); the host twin is csrc/mask_cpu.cpp.
#include "common.cuh"

// One mask byte: its bits, the offset of its first element in the tensor, and how many elements it
// covers (8, or fewer in a padded row's last byte).
struct MaskByte {
    u32 bits;
    long long offset;
    int count;
};

// This thread's mask byte; false past the last one.
__device__ bool this_byte(gptr<const unsigned char> packed, int rows, int cols, int row_bytes, MaskByte* byte) {
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= (long long)rows * row_bytes) return false;
    const long long row = index / row_bytes;
    const int first = 8 * (int)(index - row * row_bytes);
    byte->bits = packed[index];
    byte->offset = row * cols + first;
    byte->count = cols - first < 8 ? cols - first : 8;
    return true;
}

// float and double: the multiply itself, so x * 0 is a zero with x's sign, or NaN for inf and NaN.
template <typename T>
__device__ void mask_byte_float(gptr<T> data, gptr<const unsigned char> packed, int rows, int cols, int row_bytes) {
    MaskByte byte;
    if (!this_byte(packed, rows, cols, row_bytes, &byte)) return;
    const gptr<T> out = data + byte.offset;
    for (int k = 0; k < byte.count; ++k) out[k] = out[k] * (T)((byte.bits >> k) & 1u);
}

// float16 and bfloat16, on their bit patterns, with the values of the float multiply: x * 1 is x;
// x * 0 is a zero with x's sign when x is finite, and a NaN when x is inf or NaN (a NaN keeps its
// payload, made quiet; an infinity gives the default NaN). Only NaN-ness is part of the contract.
template <u32 kExponent, u32 kQuiet>
__device__ u16 times_zero(u16 x) {
    if ((x & kExponent) != kExponent) return (u16)(x & 0x8000u);
    return (x & (kExponent ^ 0x7fffu)) ? (u16)(x | kQuiet) : (u16)(0x8000u | kExponent | kQuiet);
}

template <u32 kExponent, u32 kQuiet>
__device__ void mask_byte_half(gptr<u16> data, gptr<const unsigned char> packed, int rows, int cols, int row_bytes) {
    MaskByte byte;
    if (!this_byte(packed, rows, cols, row_bytes, &byte)) return;
    const gptr<u16> out = data + byte.offset;
    for (int k = 0; k < byte.count; ++k) {
        if (!((byte.bits >> k) & 1u)) out[k] = times_zero<kExponent, kQuiet>(out[k]);
    }
}

extern "C" __global__ void sparse24_mask_rows_f32(gptr<float> data, gptr<const unsigned char> packed, int rows, int cols, int row_bytes) {
    mask_byte_float<float>(data, packed, rows, cols, row_bytes);
}

extern "C" __global__ void sparse24_mask_rows_f64(gptr<double> data, gptr<const unsigned char> packed, int rows, int cols, int row_bytes) {
    mask_byte_float<double>(data, packed, rows, cols, row_bytes);
}

extern "C" __global__ void sparse24_mask_rows_f16(gptr<u16> data, gptr<const unsigned char> packed, int rows, int cols, int row_bytes) {
    mask_byte_half<0x7c00u, 0x0200u>(data, packed, rows, cols, row_bytes);
}

extern "C" __global__ void sparse24_mask_rows_bf16(gptr<u16> data, gptr<const unsigned char> packed, int rows, int cols, int row_bytes) {
    mask_byte_half<0x7f80u, 0x0040u>(data, packed, rows, cols, row_bytes);
}
