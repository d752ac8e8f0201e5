"""The emulated PTX helpers on their own, against the positions and rules the PTX ISA documents.

Every expectation here is written from the ISA's formulas (groupID g = lane / 4, t = lane % 4),
not from emulate.h, so a wrong fragment layout in the emulation fails here.
"""

from __future__ import annotations

import pytest
import torch

from sparse24.kernels.emulate import KernelFault

from kernel_testing import needs_emulation

pytestmark = needs_emulation


def u16(values: torch.Tensor) -> torch.Tensor:
    return values.view(torch.int16).to(torch.int64) & 0xFFFF


# ---------------------------------------------------------------- cvt


def cvt(probes, values: torch.Tensor, halves: torch.Tensor):
    n = values.numel()
    f16 = torch.empty(n, dtype=torch.int16)
    bf16 = torch.empty(n, dtype=torch.int16)
    widened = torch.empty(n, dtype=torch.float32)
    probes.kernel("probe_cvt").launch(((n + 255) // 256,), (256,), [("ptr", values), ("ptr", halves), ("ptr", f16), ("ptr", bf16), ("ptr", widened), ("i32", n)])
    return f16, bf16, widened


def edge_floats() -> torch.Tensor:
    """f32 values at every rounding edge of f16 and bf16: ties, subnormals, overflow, specials."""
    half_bits = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16).view(torch.float16)
    finite = half_bits[torch.isfinite(half_bits)].float()
    up = torch.nextafter(finite, torch.full_like(finite, float("inf")))
    down = torch.nextafter(finite, torch.full_like(finite, float("-inf")))
    # midpoints between neighbouring f16 values (exact ties in f32) and their neighbours
    ordered = finite.unique().sort().values
    mids = (ordered[1:].double() + ordered[:-1].double()).div(2).float()
    mids = torch.cat([mids, torch.nextafter(mids, mids + 1), torch.nextafter(mids, mids - 1)])
    bf16_bits = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).float()
    bf16_bits = bf16_bits[torch.isfinite(bf16_bits)]
    bf16_ties = (bf16_bits.view(torch.int32) | 0x8000).view(torch.float32)  # exactly half an ulp above
    specials = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 65504.0, 65519.996, 65520.0, 1e-45, -1e-45, 2.0**-25, 2.0**-24, 1.5 * 2.0**-25, 3.4e38])
    return torch.cat([finite, up, down, mids, bf16_ties, specials, torch.randn(20000) * 10.0 ** torch.randint(-8, 6, (20000,)).float()])


def test_cvt_rounds_to_nearest_even_like_ieee(probes) -> None:
    values = edge_floats()
    halves = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16)
    halves = halves.repeat(values.numel() // halves.numel() + 1)[: values.numel()].contiguous()
    f16, bf16, widened = cvt(probes, values, halves)
    nan = torch.isnan(values)
    # torch's casts are IEEE round-to-nearest-even, subnormals and overflow to infinity included
    assert torch.equal(u16(f16)[~nan], u16(values[~nan].half()))
    assert torch.equal(u16(bf16)[~nan], u16(values[~nan].bfloat16()))
    # a NaN stays a NaN (the ISA leaves its payload unspecified; the model gives the canonical 0x7fff)
    assert (u16(f16)[nan] == 0x7FFF).all() and (u16(bf16)[nan] == 0x7FFF).all()
    # cvt.f32.f16 is exact for every one of the 65536 patterns
    expected = halves.view(torch.float16).float()
    finite = ~torch.isnan(expected)
    assert torch.equal(widened[finite].view(torch.int32), expected[finite].view(torch.int32))
    assert torch.isnan(widened[~finite]).all()


def test_cvt_subnormal_ties_and_overflow_by_hand(probes) -> None:
    values = torch.tensor([2.0**-25, 3 * 2.0**-25, 2.0**-25 * 1.0000001, 65519.996, 65520.0, -65520.0, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11])
    f16, _, _ = cvt(probes, values, torch.zeros(values.numel(), dtype=torch.int16))
    # 2^-25 is a tie between 0 and the smallest subnormal: even is 0; 3*2^-25 ties 1 and 2 -> 2;
    # just above 2^-25 rounds up; 65520 is the first value that rounds to infinity.
    assert u16(f16).tolist() == [0x0000, 0x0002, 0x0001, 0x7BFF, 0x7C00, 0xFC00, 0x3C00, 0x3C02]


# ---------------------------------------------------------------- ldmatrix


def ldmatrix(probes, rows: list[int], column: int):
    tile = torch.arange(32 * 16, dtype=torch.int32).to(torch.int16)  # element (r, c) holds 16 r + c
    out = torch.zeros(32 * 4, dtype=torch.int32)
    stats = probes.kernel("probe_ldmatrix").launch((1,), (32,), [("ptr", tile), ("ptr", torch.tensor(rows, dtype=torch.int32)), ("ptr", out), ("i32", column)])
    regs = out.to(torch.int64) & 0xFFFFFFFF
    return [[(int(regs[4 * lane + j]) & 0xFFFF, int(regs[4 * lane + j]) >> 16) for j in range(4)] for lane in range(32)], stats


@pytest.mark.parametrize("column", [0, 8])
def test_ldmatrix_x4_fragment_per_the_isa(probes, column: int) -> None:
    fragments, stats = ldmatrix(probes, list(range(32)), column)  # lanes 8j..8j+7 give rows 8j..8j+7
    for lane in range(32):
        for j in range(4):  # register j: matrix j, row lane/4, columns 2(lane%4) and +1, lower in the low half
            row = 8 * j + lane // 4
            assert fragments[lane][j] == (16 * row + column + 2 * (lane % 4), 16 * row + column + 2 * (lane % 4) + 1)
    # named positions: lane 0 gets row 0 cols 0,1 of each matrix; lane 5 row 1 cols 2,3; lane 31 row 7 cols 6,7
    assert fragments[0][0] == (column, column + 1)
    assert fragments[5][2] == (16 * 17 + column + 2, 16 * 17 + column + 3)
    assert fragments[31][3] == (16 * 31 + column + 6, 16 * 31 + column + 7)
    # rows 32 bytes apart: rows r and r+4 of a matrix share banks, so each of the 4 phases takes 2 wavefronts
    assert (stats.ldmatrix.instructions, stats.ldmatrix.ideal, stats.ldmatrix.wavefronts) == (1, 4, 8)


def test_ldmatrix_rows_come_from_the_addresses_lanes_give(probes) -> None:
    rows = [31 - lane for lane in range(32)]
    fragments, _ = ldmatrix(probes, rows, 0)
    assert fragments[0][0] == (16 * 31, 16 * 31 + 1)  # matrix 0 row 0 is lane 0's row: 31
    assert fragments[4][1] == (16 * rows[9], 16 * rows[9] + 1)  # matrix 1 row 1 is lane 9's row


def test_ldmatrix_misaligned_row_address_is_an_error(probes) -> None:
    with pytest.raises(KernelFault, match=r"probe_ldmatrix.*lane 0 gives shared address 0x2, not 16-byte aligned"):
        ldmatrix(probes, list(range(32)), 1)


def test_ldmatrix_row_outside_the_array_is_an_error(probes) -> None:
    with pytest.raises(KernelFault, match=r"index 32 out of range \[0, 32\) in dimension 1 of shared u16\[32\]\[16\]"):
        ldmatrix(probes, [32] + list(range(1, 32)), 0)


# ---------------------------------------------------------------- mma.sp m16n8k32


def a_position(lane: int, i: int) -> tuple[int, int]:
    """(row, compressed column) of a_i in `lane` (PTX ISA: sparse mma.m16n8k32 .f16/.bf16, matrix A)."""
    g, t = divmod(lane, 4)
    return g + 8 * ((i // 2) % 2), 2 * t + (i % 2) + 8 * (i // 4)


def b_position(lane: int, i: int) -> tuple[int, int]:
    """(k, n) of b_i in `lane`."""
    g, t = divmod(lane, 4)
    return 2 * t + (i % 2) + 8 * (i // 2), g


def c_position(lane: int, i: int) -> tuple[int, int]:
    """(row, column) of c_i / d_i in `lane`."""
    g, t = divmod(lane, 4)
    return g + 8 * (i // 2), 2 * t + (i % 2)


def metadata_lane(row: int, group: int, selector: int) -> tuple[int, int]:
    """(lane, bit offset) of the nibble for `row`, dense columns 4 group .. 4 group + 3."""
    return 4 * (row % 8) + 2 * selector + group // 4, 16 * (row // 8) + 4 * (group % 4)


def pack(halves: torch.Tensor) -> torch.Tensor:
    """[32, 8] fp16/bf16 -> [32, 4] int32 registers, element 2r in the low half of register r."""
    bits = halves.contiguous().view(torch.int16).to(torch.int64) & 0xFFFF
    words = bits[:, 0::2] | (bits[:, 1::2] << 16)
    return torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)  # as int32 bit patterns


def fragments(compressed: torch.Tensor, b: torch.Tensor, c: torch.Tensor, nibbles: torch.Tensor, selector: int, dtype: torch.dtype):
    """Per-lane registers from a compressed A [16, 16], B [32, 8], C [16, 8] and nibbles [16, 8]."""
    a_regs = torch.zeros(32, 8, dtype=dtype)
    b_regs = torch.zeros(32, 8, dtype=dtype)
    c_regs = torch.zeros(32, 4)
    e = [0] * 32
    for lane in range(32):
        for i in range(8):
            a_regs[lane, i] = compressed[a_position(lane, i)]
            b_regs[lane, i] = b[b_position(lane, i)]
        for i in range(4):
            c_regs[lane, i] = c[c_position(lane, i)]
    for row in range(16):
        for group in range(8):
            lane, shift = metadata_lane(row, group, selector)
            e[lane] |= int(nibbles[row, group]) << shift
    e_regs = torch.tensor([v - (1 << 32) if v >= 1 << 31 else v for v in e], dtype=torch.int32)
    return pack(a_regs), pack(b_regs), c_regs.contiguous(), e_regs


def mma(probes, a, b, c, e, kernel: str = "probe_mma_sp_f16_s0") -> torch.Tensor:
    d = torch.full((32, 4), float("nan"))
    probes.kernel(kernel).launch((1,), (32,), [("ptr", a.reshape(-1)), ("ptr", b.reshape(-1)), ("ptr", c.reshape(-1)), ("ptr", e), ("ptr", d.reshape(-1))])
    out = torch.empty(16, 8)
    for lane in range(32):
        for i in range(4):
            out[c_position(lane, i)] = d[lane, i]
    return out


NIBBLES = {0x4: (0, 1), 0x8: (0, 2), 0x9: (1, 2), 0xC: (0, 3), 0xD: (1, 3), 0xE: (2, 3)}


def dense_a(compressed: torch.Tensor, nibbles: torch.Tensor) -> torch.Tensor:
    a = torch.zeros(16, 32, dtype=torch.float64)
    for row in range(16):
        for group in range(8):
            first, second = NIBBLES[int(nibbles[row, group])]
            a[row, 4 * group + first] = float(compressed[row, 2 * group])
            a[row, 4 * group + second] = float(compressed[row, 2 * group + 1])
    return a


@pytest.mark.parametrize(("dtype", "kernel", "selector"), [(torch.float16, "probe_mma_sp_f16_s0", 0), (torch.float16, "probe_mma_sp_f16_s1", 1), (torch.bfloat16, "probe_mma_sp_bf16_s0", 0)])
def test_mma_sp_computes_d_equals_a_times_b_plus_c(probes, dtype: torch.dtype, kernel: str, selector: int) -> None:
    generator = torch.Generator().manual_seed(selector)
    compressed = torch.randint(-8, 9, (16, 16), generator=generator).to(dtype)  # small integers: exact in f32
    b = torch.randint(-8, 9, (32, 8), generator=generator).to(dtype)
    c = torch.randint(-100, 100, (16, 8), generator=generator).float()
    choices = torch.tensor(list(NIBBLES))
    nibbles = choices[torch.randint(0, 6, (16, 8), generator=generator)]
    out = mma(probes, *fragments(compressed, b, c, nibbles, selector, dtype), kernel=kernel)
    expected = dense_a(compressed, nibbles) @ b.double() + c.double()
    assert torch.equal(out.double(), expected)


@pytest.mark.parametrize("lane", [0, 5, 31])
def test_mma_sp_a_fragment_positions_of_lanes_0_5_31(probes, lane: int) -> None:
    # lane 0 holds rows 0/8, columns 0,1 and 8,9; lane 5 rows 1/9, columns 2,3 and 10,11; lane 31 rows 7/15, columns 6,7 and 14,15
    expected_rows = {0: {0, 8}, 5: {1, 9}, 31: {7, 15}}[lane]
    expected_columns = {0: {0, 1, 8, 9}, 5: {2, 3, 10, 11}, 31: {6, 7, 14, 15}}[lane]
    assert {a_position(lane, i)[0] for i in range(8)} == expected_rows
    assert {a_position(lane, i)[1] for i in range(8)} == expected_columns
    b = (torch.arange(32 * 8).reshape(32, 8) + 1).to(torch.float16)  # B[k, n] = 8k + n + 1: identifies k
    nibbles = torch.full((16, 8), 0x4)  # group G keeps dense columns 4G and 4G + 1
    for i in range(8):
        a_regs = torch.zeros(32, 8, dtype=torch.float16)
        a_regs[lane, i] = 1.0  # only this register half is nonzero
        _, b_regs, c_regs, e = fragments(torch.zeros(16, 16), b, torch.zeros(16, 8), nibbles, 0, torch.float16)
        out = mma(probes, pack(a_regs), b_regs, c_regs, e)
        rows = out.abs().sum(1).nonzero().flatten().tolist()
        row, column = a_position(lane, i)
        assert rows == [row]
        k = 4 * (column // 2) + column % 2  # nibble 0x4
        assert out[row].tolist() == (b[k].float()).tolist()


def test_mma_sp_b_and_d_positions(probes) -> None:
    compressed = torch.ones(16, 16, dtype=torch.float16)
    nibbles = torch.full((16, 8), 0x4)  # A dense: ones at columns 4G, 4G + 1
    for lane in (0, 5, 31):
        for i in range(8):
            b_regs = torch.zeros(32, 8, dtype=torch.float16)
            b_regs[lane, i] = 1.0
            a_regs, _, c_regs, e = fragments(compressed, torch.zeros(32, 8), torch.zeros(16, 8), nibbles, 0, torch.float16)
            out = mma(probes, a_regs, pack(b_regs), c_regs, e)
            k, n = b_position(lane, i)
            kept = k % 4 in (0, 1)
            assert out[:, n].tolist() == [1.0 * kept] * 16  # every row reads B[k, n] iff A keeps column k
            assert out.abs().sum() == 16 * kept


def test_mma_sp_metadata_comes_only_from_the_selected_lanes(probes) -> None:
    generator = torch.Generator().manual_seed(3)
    compressed = torch.randint(-8, 9, (16, 16), generator=generator).to(torch.float16)
    b = torch.randint(-8, 9, (32, 8), generator=generator).to(torch.float16)
    nibbles = torch.tensor(list(NIBBLES))[torch.randint(0, 6, (16, 8), generator=generator)]
    a, b_regs, c, e = fragments(compressed, b, torch.zeros(16, 8), nibbles, 0, torch.float16)
    assert {lane % 4 for lane in range(32) if int(e[lane])} <= {0, 1}  # selector 0: threads T0, T1 of each quad
    junk = e.clone()
    junk[2::4] = 0x12345678  # lanes 2, 3 of each quad: ignored by selector 0, whatever they hold
    junk[3::4] = -1
    expected = dense_a(compressed, nibbles) @ b.double()
    assert torch.equal(mma(probes, a, b_regs, c, junk).double(), expected)
    # the same registers under selector 1 read lanes 2, 3: their nibbles are undefined
    with pytest.raises(KernelFault, match=r"mma\.sp .*metadata nibble 0x7 \(lane 2, bits 4-7\) for row 0, columns 4-7: the indices must increase"):
        mma(probes, a, b_regs, c, junk, kernel="probe_mma_sp_f16_s1")


@pytest.mark.parametrize(("nibble", "what"), [(0x0, "an equal pair"), (0x5, "an equal pair"), (0x1, "a decreasing pair"), (0xB, "a decreasing pair")])
def test_mma_sp_undefined_metadata_is_an_error(probes, nibble: int, what: str) -> None:
    nibbles = torch.full((16, 8), 0x4)
    a, b, c, e = fragments(torch.ones(16, 16), torch.ones(32, 8), torch.zeros(16, 8), nibbles, 0, torch.float16)
    lane, shift = metadata_lane(9, 6, 0)  # row 9, columns 24-27: lane 5, bits 24-27
    assert (lane, shift) == (5, 24)
    e[lane] = int(e[lane]) & ~(0xF << shift) | (nibble << shift)
    with pytest.raises(KernelFault, match=rf"lane 5, bits 24-27\) for row 9, columns 24-27: .*{what} is undefined"):
        mma(probes, a, b, c, e)


# ---------------------------------------------------------------- cp.async


def cp_async(probes, mode: int, races: str = "raise"):
    src = torch.arange(1, 25, dtype=torch.int16)
    out = torch.zeros(24, dtype=torch.int16)
    stats = probes.kernel("probe_cp_async").launch((1,), (1,), [("ptr", src), ("ptr", out), ("i32", mode)], races=races)
    return out.tolist(), stats


def test_cp_async_lands_at_the_wait_with_zero_fill(probes) -> None:
    out, stats = cp_async(probes, 0)
    assert out == list(range(1, 21)) + [0, 0, 0, 0]  # src-size 8 of 16: the last 4 halves are zeros
    assert stats.cp_async == 3 and stats.races == 0


def test_a_too_loose_wait_reads_stale_data(probes) -> None:
    out, stats = cp_async(probes, 1, races="report")
    assert out == list(range(1, 9)) + [0x7777] * 16  # group 0 landed; group 1 still in flight: old bytes
    assert stats.races == 16 * 2 and "still copying" in stats.first_race
    with pytest.raises(KernelFault, match=r"probe_cp_async, block \(0,0,0\), thread \(0,0,0\): reads byte 16 of shared u16\[24\] while a cp\.async of thread 0 is still copying"):
        cp_async(probes, 1)


def test_a_missing_wait_reads_stale_data(probes) -> None:
    out, stats = cp_async(probes, 2, races="report")
    assert out == [0x7777] * 24 and stats.races == 24 * 2


# ---------------------------------------------------------------- shuffles, barriers, races, bounds, banks


@pytest.mark.parametrize("schedule", ["forward", "reverse", "random"])
def test_shuffle_butterfly(probes, schedule: str) -> None:
    values = torch.arange(32, dtype=torch.float32)
    out = torch.zeros(32)
    probes.kernel("probe_shuffle").launch((1,), (32,), [("ptr", values), ("ptr", out), ("i32", 0)], schedule=schedule)
    assert out.tolist() == [float(sum(range(32)))] * 32


def test_shuffle_that_not_every_lane_reaches_is_an_error(probes) -> None:
    values, out = torch.zeros(32), torch.zeros(32)
    with pytest.raises(KernelFault, match=r"probe_shuffle.*(exits while lanes 0x[0-9a-f]+ of warp 0 wait for it at __shfl_xor_sync|lanes 0x[0-9a-f]+ of its mask have exited)"):
        probes.kernel("probe_shuffle").launch((1,), (32,), [("ptr", values), ("ptr", out), ("i32", 1)])
    with pytest.raises(KernelFault, match=r"lane \d+ reads lane \d+, which is not in the mask 0x0000ffff"):
        probes.kernel("probe_shuffle").launch((1,), (32,), [("ptr", values), ("ptr", out), ("i32", 2)])


def test_barriers(probes) -> None:
    out = torch.zeros(64, dtype=torch.int32)
    stats = probes.kernel("probe_barrier").launch((1,), (64,), [("ptr", out), ("i32", 0)])
    assert out.tolist() == list(range(64)) and stats.barriers == 1
    for schedule in ("forward", "reverse", "random"):
        with pytest.raises(KernelFault, match=r"probe_barrier.*(every thread of the block must reach it|every thread must reach it)"):
            probes.kernel("probe_barrier").launch((1,), (64,), [("ptr", out), ("i32", 1)], schedule=schedule)
        with pytest.raises(KernelFault, match=r"waits at __syncthreads \(line \d+\) while \d+ threads wait at the one on line \d+"):
            probes.kernel("probe_barrier").launch((1,), (64,), [("ptr", out), ("i32", 2)], schedule=schedule)


@pytest.mark.parametrize("schedule", ["forward", "reverse", "random"])
def test_a_missing_barrier_is_a_race_in_every_schedule(probes, schedule: str) -> None:
    out = torch.zeros(64)
    probes.kernel("probe_neighbour").launch((1,), (64,), [("ptr", out), ("i32", 1)], schedule=schedule)
    assert out.tolist() == [float((t + 1) % 64) for t in range(64)]
    with pytest.raises(KernelFault, match=r"probe_neighbour.*(that thread \d+ wrote with no __syncthreads in between|read with no __syncthreads in between|never written|which no thread of this block has written)"):
        probes.kernel("probe_neighbour").launch((1,), (64,), [("ptr", out), ("i32", 0)], schedule=schedule)


def test_out_of_bounds_and_unwritten_accesses_name_the_kernel(probes) -> None:
    source, out = torch.arange(32, dtype=torch.float32), torch.zeros(32)
    kernel = probes.kernel("probe_bounds")
    kernel.launch((1,), (32,), [("ptr", source), ("ptr", out), ("i32", 32), ("i32", 0), ("i32", 0)])
    assert torch.equal(out, source)
    with pytest.raises(KernelFault, match=r"probe_bounds, block \(0,0,0\), thread \(31,0,0\): out-of-bounds read of 4 bytes at byte offset 128 of argument 0 \(a buffer of 128 bytes\)"):
        kernel.launch((1,), (32,), [("ptr", source), ("ptr", out), ("i32", 32), ("i32", 1), ("i32", 0)])
    with pytest.raises(KernelFault, match=r"probe_bounds.*index 32 out of range \[0, 32\) in dimension 1 of shared float\[32\]"):
        kernel.launch((1,), (32,), [("ptr", source), ("ptr", out), ("i32", 32), ("i32", 0), ("i32", 1)])
    with pytest.raises(KernelFault, match=r"probe_bounds.*thread \(15,0,0\): reads byte 64 of shared float\[32\], which no thread of this block has written"):
        kernel.launch((1,), (32,), [("ptr", source), ("ptr", out), ("i32", 16), ("i32", 0), ("i32", 2)])
    with pytest.raises(KernelFault, match=r"thread \(16,0,0\): out-of-bounds write of 4 bytes at byte offset 64 of argument 1 \(a buffer of 64 bytes\)"):
        kernel.launch((1,), (32,), [("ptr", source), ("ptr", out[:16]), ("i32", 32), ("i32", 0), ("i32", 0)], schedule="forward")


def test_launch_errors_are_named(probes) -> None:
    out = torch.zeros(64, dtype=torch.int32)
    kernel = probes.kernel("probe_barrier")
    with pytest.raises(KernelFault, match=r"probe_barrier takes 2 arguments, the launch passed 1"):
        kernel.launch((1,), (64,), [("ptr", out)])
    with pytest.raises(KernelFault, match=r"argument 1 is a 32-bit integer, the launch passed a pointer"):
        kernel.launch((1,), (64,), [("ptr", out), ("ptr", out)])
    with pytest.raises(KernelFault, match=r"exceeds the CUDA limits"):
        kernel.launch((1,), (2048,), [("ptr", out), ("i32", 0)])
    with pytest.raises(KernelFault, match=r"defines no kernel 'nope'"):
        probes.kernel("nope")


@pytest.mark.parametrize(("stride", "wavefronts"), [(1, 1), (2, 2), (4, 4), (32, 32), (33, 1)])
def test_bank_conflicts_are_counted(probes, stride: int, wavefronts: int) -> None:
    out = torch.zeros(32)
    stats = probes.kernel("probe_banks").launch((1,), (32,), [("ptr", out), ("i32", stride)])
    assert out.tolist() == [float(lane * stride % (32 * 33)) for lane in range(32)]
    assert (stats.shared_loads.instructions, stats.shared_loads.wavefronts, stats.shared_loads.conflicts) == (1, wavefronts, wavefronts - 1)
    assert (stats.shared_stores.instructions, stats.shared_stores.conflicts) == (33, 0)


def test_mma_sp_padding_shows_in_the_bank_conflict_count(tmp_path) -> None:
    """The shipped row padding keeps ldmatrix conflict-free; without it every ldmatrix conflicts."""
    from kernel_testing import two_four

    from sparse24.kernels import emulate, loader, reference

    text = loader.source_text("mma_sp.cu")
    unpadded = text.replace("#define A_STRIDE 24", "#define A_STRIDE 16").replace("#define B_STRIDE 40", "#define B_STRIDE 32")
    assert unpadded != text
    (tmp_path / "mma_sp.cu").write_text(unpadded)
    weight = two_four(128, 64, torch.float16)
    values, meta = reference.compress(weight)
    x = torch.randn(64, 64).half()
    expected = x.double() @ weight.double().t()
    counts = {}
    for name, library in (("padded", emulate.library("mma_sp.cu")), ("unpadded", emulate.library("mma_sp.cu", sources=tmp_path))):
        y = torch.empty(64, 128, dtype=torch.float16)
        args = [("ptr", x), ("ptr", values), ("ptr", meta), ("ptr", None), ("ptr", y), ("i32", 64), ("i32", 128), ("i32", 64)]
        stats = library.kernel("sparse24_mma_sp_f16").launch((1, 1), (128,), args)
        assert float((y.double() - expected).abs().max() / expected.abs().max()) < 1e-2
        counts[name] = stats.ldmatrix
    assert counts["padded"].instructions == counts["unpadded"].instructions == 2 * 4 * 8  # 2 k-blocks x 4 warps x (4 A + 4 B)
    assert counts["padded"].conflicts == 0
    # unpadded, a matrix's 8 rows of 16 bytes sit 32 bytes (A) or 64 bytes (B) apart: 2 or 4 rows per
    # bank, so each of the 4 phases takes 2 or 4 wavefronts instead of 1. Per k-block and warp:
    # 4 A loads x 4 extra + 4 B loads x 12 extra.
    assert counts["unpadded"].conflicts == 2 * 4 * (4 * 4 + 4 * 12)
