// Multiply a row-major [rows, cols] CPU tensor in place by its 2:4 mask, packed at 1 bit per element.
//
// The packing is sparse24.mask.pack_bits: each row's bits in row_bytes = ceil(cols / 8) bytes,
// least significant bit first; the padding bits of a row's last byte are never read. This is the
// CPU fast path of the training gradient hook (sparse24.enforce): one pass over the tensor, no
// temporary, where the torch path makes an index tensor and an expanded mask for every call.
// Pure-PyTorch reference: sparse24.mask.mask_rows_ (tensor.mul_(0/1 mask in its dtype)).
//
// Built by the host C++ compiler (sparse24.kernels.loader.host_library), loaded with ctypes.

#include <stdint.h>
#include <string.h>

namespace {

// Row b holds the bits of b, least significant first, as 0/1 in T: a byte of mask is one row.
template <typename T>
struct BitTable {
  T value[256][8];
  BitTable() {
    for (int b = 0; b < 256; ++b)
      for (int k = 0; k < 8; ++k) value[b][k] = static_cast<T>((b >> k) & 1);
  }
};

// float and double: the multiply itself, so x * 0 is a zero with x's sign, or NaN for inf and NaN.
// Eight elements per mask byte, multiplied as one vector (GCC/Clang vector extension: SSE2 or
// better, whatever the target has) by the byte's row of the table; then the row's last cols % 8
// elements one bit at a time.
template <typename T>
void mask_float(T* data, const uint8_t* packed, int64_t rows, int64_t cols, int64_t row_bytes) {
  typedef T Eight __attribute__((vector_size(8 * sizeof(T))));
  static const BitTable<T> table;
  const int64_t whole = cols / 8;
  for (int64_t r = 0; r < rows; ++r) {
    T* row = data + r * cols;
    const uint8_t* bits = packed + r * row_bytes;
    for (int64_t i = 0; i < whole; ++i) {
      Eight values, keep;
      memcpy(&values, row + 8 * i, sizeof values);  // unaligned loads and store: the tensor's rows need not be
      memcpy(&keep, table.value[bits[i]], sizeof keep);
      values *= keep;
      memcpy(row + 8 * i, &values, sizeof values);
    }
    for (int64_t j = 8 * whole; j < cols; ++j) row[j] *= static_cast<T>((bits[j >> 3] >> (j & 7)) & 1);
  }
}

// float16 and bfloat16, on their bit patterns, with the values of the float multiply that torch's
// CPU kernels round back: x * 1 is x; x * 0 is a zero with x's sign when x is finite, and a NaN when
// x is inf or NaN (a NaN keeps its payload, made quiet; an infinity gives x86's default NaN; torch's
// own NaN bits differ between its scalar and vector paths, so only NaN-ness is part of the contract).
template <uint16_t kExponent, uint16_t kQuiet>
inline uint16_t times_zero(uint16_t x) {
  if ((x & kExponent) != kExponent) return x & 0x8000u;
  return (x & (kExponent ^ 0x7fffu)) ? static_cast<uint16_t>(x | kQuiet) : static_cast<uint16_t>(0x8000u | kExponent | kQuiet);
}

template <uint16_t kExponent, uint16_t kQuiet>
void mask_half(uint16_t* data, const uint8_t* packed, int64_t rows, int64_t cols, int64_t row_bytes) {
  for (int64_t r = 0; r < rows; ++r) {
    uint16_t* row = data + r * cols;
    const uint8_t* bits = packed + r * row_bytes;
    for (int64_t j = 0; j < cols; ++j) {
      if (!((bits[j >> 3] >> (j & 7)) & 1)) row[j] = times_zero<kExponent, kQuiet>(row[j]);
    }
  }
}

}  // namespace

// dtype: 0 float32, 1 float64, 2 float16, 3 bfloat16. Returns 0, or 1 for an unknown dtype code.
extern "C" __attribute__((visibility("default"))) int sparse24_mask_rows(void* data, int dtype, const uint8_t* packed, int64_t rows, int64_t cols,
                                                                         int64_t row_bytes) {
  switch (dtype) {
    case 0:
      mask_float(static_cast<float*>(data), packed, rows, cols, row_bytes);
      return 0;
    case 1:
      mask_float(static_cast<double*>(data), packed, rows, cols, row_bytes);
      return 0;
    case 2:
      mask_half<0x7c00u, 0x0200u>(static_cast<uint16_t*>(data), packed, rows, cols, row_bytes);
      return 0;
    case 3:
      mask_half<0x7f80u, 0x0040u>(static_cast<uint16_t*>(data), packed, rows, cols, row_bytes);
      return 0;
    default:
      return 1;
  }
}
