"""Data-aware one-shot criteria: the GEMM view of every layer type, Wanda, SparseGPT, and block-by-block calibration."""

from __future__ import annotations

import copy
import logging
import signal
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import sparse24
from sparse24.calibrate import find_blocks
from sparse24 import sparsify as sparsify_module
from sparse24.axes import from_gemm_groups, from_gemm_matrix, gemm_columns, gemm_groups, gemm_matrix, gemm_weights
from sparse24.criteria import sparsegpt, wanda
from sparse24.mask import is_two_four, prune_
from sparse24_testing import LooksUpTable, causal_lm

# ---------------------------------------------------------------- the GEMM view


CONVS = [
    (nn.Conv2d(8, 12, 3, padding=1, groups=2), (2, 8, 6, 5)),
    (nn.Conv2d(8, 12, (3, 2), stride=2, dilation=(2, 1), padding="valid"), (2, 8, 9, 7)),
    (nn.Conv2d(8, 12, 3, padding="same", dilation=2, padding_mode="reflect"), (2, 8, 9, 7)),
    (nn.Conv1d(8, 4, 5, padding=2, stride=2), (2, 8, 11)),
    (nn.Conv3d(4, 8, (2, 3, 3), padding=(0, 1, 1), groups=2), (1, 4, 3, 5, 5)),
]


@pytest.mark.parametrize(("conv", "shape"), CONVS, ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None)
def test_gemm_matrix_times_columns_is_the_convolution(conv: nn.Module, shape: tuple) -> None:
    (weight,) = gemm_weights(conv)
    x = torch.randn(shape)
    matrix = gemm_matrix(weight)
    assert torch.equal(from_gemm_matrix(weight, matrix), conv.weight)
    out = torch.einsum("prd,ptd->ptr", matrix, torch.stack(gemm_columns(weight, (x,))))
    reference = conv(x) - conv.bias.view(1, -1, *[1] * (x.dim() - 2))
    groups, rows = matrix.shape[0], matrix.shape[1]
    reference = reference.reshape(shape[0], groups, rows, -1).permute(1, 0, 3, 2).reshape(groups, -1, rows)
    assert torch.allclose(out, reference, atol=1e-5)


def test_conv_columns_run_along_channels_at_one_kernel_position() -> None:
    conv = nn.Conv2d(8, 4, 3, bias=False)
    (weight,) = gemm_weights(conv)
    index = torch.arange(conv.weight.numel(), dtype=torch.float32).reshape(conv.weight.shape)  # [K, C, R, S]
    matrix = gemm_matrix(weight, index)  # [1, K, R*S*C]
    assert matrix[0, 0, :8].tolist() == index[0, :, 0, 0].tolist()  # columns 0..7: C at (r, s) = (0, 0)
    assert matrix[0, 0, 8:16].tolist() == index[0, :, 0, 1].tolist()


def test_gemm_view_of_conv1d_and_attention() -> None:
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(12, 16)  # weight [in=16, out=12]
    (weight,) = gemm_weights(layer)
    x = torch.randn(3, 5, 16)
    out = torch.einsum("prd,ptd->ptr", gemm_matrix(weight), torch.stack(gemm_columns(weight, (x,))))
    assert torch.allclose(out[0], (layer(x) - layer.bias).reshape(-1, 12), atol=1e-5)
    attention = nn.MultiheadAttention(16, 2, batch_first=True)
    in_proj = next(w for w in gemm_weights(attention) if w.param_name == "in_proj_weight")
    q, k, v = (torch.randn(2, 3, 16) for _ in range(3))
    columns = gemm_columns(in_proj, (q, k, v))
    assert [c.shape for c in columns] == [(6, 16)] * 3 and torch.equal(columns[2], v.reshape(-1, 16))
    assert gemm_matrix(in_proj).shape == (3, 16, 16)


def _group_layers() -> list[tuple[str, nn.Module, str]]:
    from transformers.pytorch_utils import Conv1D

    return [
        ("linear", nn.Linear(16, 6), "weight"),
        ("conv2d-groups", nn.Conv2d(8, 6, 3, groups=2), "weight"),
        ("conv1d", nn.Conv1d(4, 5, 2), "weight"),
        ("transformers-Conv1D", Conv1D(6, 16), "weight"),  # [in=16, out=6], reduced along dim 0
        ("in_proj", nn.MultiheadAttention(8, 2), "in_proj_weight"),
    ]


@pytest.mark.parametrize("case", range(5), ids=[name for name, _, _ in _group_layers()])
def test_gemm_groups_are_the_gemm_matrix_groups_with_dim_0_kept(case: int) -> None:
    """The same groups of 4 as gemm_matrix's column runs, rows following the weight's dim 0, so a shard's rows give its groups."""
    _, layer, param_name = _group_layers()[case]
    (weight,) = [w for w in gemm_weights(layer) if w.param_name == param_name]
    shape = weight.param.shape
    index = torch.arange(weight.param.numel(), dtype=torch.float32).reshape(shape)
    groups = gemm_groups(weight, index)
    matrix = gemm_matrix(weight, index)
    assert groups.shape[-1] == 4 and groups.numel() == index.numel()
    by_matrix = sorted(map(tuple, matrix.reshape(-1, 4).tolist()))
    assert sorted(map(tuple, groups.reshape(-1, 4).tolist())) == by_matrix  # the very same groups, element for element
    assert torch.equal(from_gemm_groups(weight, groups, shape), index)
    step = 4 if weight.axis.reduction == 0 else 1  # a slice of a weight reduced along dim 0 holds whole groups
    rows = groups.shape[0] // 2 * step
    for start, stop in ((0, rows), (rows, shape[0]), (rows, rows)):  # the last: a shard with no rows
        piece = gemm_groups(weight, index[start:stop])
        assert torch.equal(piece, groups[start // step : stop // step])
        assert torch.equal(from_gemm_groups(weight, piece, index[start:stop].shape), index[start:stop])


# ---------------------------------------------------------------- Wanda


def skewed_linear_data(n_batches: int = 4, features: int = 32, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-1, 1, features)[torch.randperm(features, generator=generator)]  # per-feature norms 0.1 .. 10
    mixing = torch.eye(features) + 0.5 * torch.randn(features, features, generator=generator) / features**0.5  # correlated features
    return [(torch.randn(16, features, generator=generator) * scale) @ mixing for _ in range(n_batches)]


def output_error(model: nn.Module, dense: nn.Module, data: list) -> float:
    with torch.no_grad():
        return sum(float((model(x) - dense(x)).norm() / dense(x).norm()) for x in data) / len(data)


def test_wanda_scores_are_weight_times_input_norm() -> None:
    layer = nn.Linear(32, 8)
    data = skewed_linear_data()
    (weight,) = gemm_weights(layer)
    (scores,) = wanda.score(layer, [weight], data=data, progress=False)
    norms = torch.cat(data).norm(dim=0)
    assert torch.allclose(scores, layer.weight.detach().abs() * norms, rtol=1e-5)


def test_wanda_conv_weighs_each_element_by_its_own_input_column() -> None:
    conv = nn.Conv2d(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 5, 5) * torch.tensor([0.1, 1.0, 3.0, 10.0]).view(1, 4, 1, 1)
    (weight,) = gemm_weights(conv)
    (scores,) = wanda.score(conv, [weight], data=[x], progress=False)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for c, r, s in [(0, 0, 0), (3, 1, 2), (2, 2, 1)]:
        column = padded[:, c, r : r + 5, s : s + 5]  # the inputs weight (k, c, r, s) multiplies
        assert torch.allclose(scores[:, c, r, s], conv.weight.detach()[:, c, r, s].abs() * column.norm(), rtol=1e-5)


class _TransposingConv1d(nn.Conv1d):
    """Parakeet's CTC head: a Conv1d whose forward takes ``[batch, length, channels]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


@pytest.mark.parametrize("length", [5, 8])  # 8 == its channels: read as its own input, the statistics are silently wrong
def test_a_conv_class_with_a_forward_of_its_own_is_calibrated_on_its_convolutions_input(length: int) -> None:
    from sparse24.calibrate import gather

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), _TransposingConv1d(8, 12, 3, padding=1))
    data = [torch.randn(2, length, 8) for _ in range(2)]
    (weight,) = [w for w in gemm_weights(model) if w.module_name == "1"]
    stats, counts = gather(model, [weight], "hessian", data, progress=False)
    inputs = [model[0](x).detach().transpose(1, 2) for x in data]  # what torch's Conv1d.forward receives
    columns = torch.cat([gemm_columns(weight, [x])[0] for x in inputs])
    assert counts[id(weight.param)] == 2 * 2 * length
    assert torch.allclose(stats[id(weight.param)][0], columns.T @ columns, rtol=1e-4, atol=1e-4)
    sparse24.sparsify(model, "sparsegpt", data=data, progress=False, policy="any")  # pruned, and the hook taken off
    assert "_conv_forward" not in vars(model[1])
    sparse24.verify(model)


def test_wanda_and_sparsegpt_beat_magnitude_on_skewed_correlated_inputs() -> None:
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    data = skewed_linear_data()
    errors = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        model = copy.deepcopy(dense)
        sparse24.sparsify(model, method, data=None if method == "magnitude" else data, progress=False)
        sparse24.verify(model)
        errors[method] = output_error(model, dense, data)
    assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"], errors


# ---------------------------------------------------------------- SparseGPT


def test_sparsegpt_updates_the_kept_weights_and_keeps_the_axis() -> None:
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=2)
    before = conv.weight.detach().clone()
    x = torch.randn(4, 8, 6, 6)
    report = sparse24.sparsify(conv, "sparsegpt", data=[x], policy="any", progress=False)
    mask = sparse24.enforce.mask_of(conv, "weight")
    assert is_two_four(conv.weight, 1) and is_two_four(mask, 1)  # along C at every kernel position
    kept = conv.weight.detach()[mask]
    assert not torch.equal(kept, before[mask])  # not only masked: the kept weights moved
    assert 0 < report.sparse_layers[0].importance_kept < 1


def optimal_brain_surgeon_2_4(w: torch.Tensor, hessian: torch.Tensor, dampening: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT's 2:4 result the textbook way, as a reference: the Optimal Brain Surgeon update on the explicit
    inverse Hessian, one column at a time, no Cholesky factor and no blocks.

    Columns are fixed left to right. Fixing column ``j`` (pruned or kept) spreads its error
    ``(w_j - q_j) / [H^-1]_jj`` over the columns not yet fixed along ``H^-1[j, :]``, then removes ``j`` from the
    inverse (``H^-1 -= H^-1[:, j] H^-1[j, :] / [H^-1]_jj``). At the first column of every group of 4 each row
    prunes the 2 columns with the smallest OBS saliency ``w_k^2 / [H^-1]_kk``, each ``k`` with the inverse it
    will have when its turn comes (the columns before it removed).
    """
    w, hessian = w.clone(), hessian.clone()
    hessian.diagonal().add_(dampening * hessian.diagonal().mean())
    inverse = torch.linalg.inv(hessian)
    keep = torch.ones_like(w, dtype=torch.bool)

    def remove(inverse: torch.Tensor, j: int) -> torch.Tensor:
        return inverse - torch.outer(inverse[:, j], inverse[j, :]) / inverse[j, j]

    for j in range(w.shape[1]):
        if j % 4 == 0:
            diagonal, ahead = [], inverse
            for k in range(j, j + 4):
                diagonal.append(ahead[k, k])
                ahead = remove(ahead, k)
            saliency = w[:, j : j + 4].square() / torch.stack(diagonal)
            keep[:, j : j + 4].scatter_(1, saliency.topk(2, dim=1, largest=False).indices, False)
        error = w[:, j] * ~keep[:, j] / inverse[j, j]
        w -= torch.outer(error, inverse[j, :])
        inverse = remove(inverse, j)
    return w * keep, keep


@pytest.mark.parametrize("blocksize", [4, 8, 128])
def test_sparsegpt_is_the_optimal_brain_surgeon_update_column_by_column(blocksize: int) -> None:
    # SparseGPT's Cholesky form and lazy block updates are an exact rewriting of sequential OBS (Frantar & Alistarh 2023,
    # section 3): same masks, same weights, whatever the block size
    generator = torch.Generator().manual_seed(0)
    x = torch.cat(skewed_linear_data(n_batches=4, features=24, seed=1)).double()
    w = torch.randn(10, 24, generator=generator, dtype=torch.float64)
    hessian = x.T @ x
    reference, reference_keep = optimal_brain_surgeon_2_4(w, hessian, 0.01)
    solved, keep = sparsegpt._solve_matrix(w, hessian, blocksize, 0.01, "probe")
    assert torch.equal(keep, reference_keep) and is_two_four(keep, 1)
    assert torch.allclose(solved, reference, rtol=0, atol=1e-10)
    # the updates matter: the same mask without them loses more of the output
    assert torch.linalg.norm((w - solved) @ x.T) < 0.9 * torch.linalg.norm((w - w * keep) @ x.T)


def test_sparsegpt_on_a_grouped_conv_is_the_reference_on_its_im2col_columns() -> None:
    # end to end: sparsify's Hessians are X^T X of each group's im2col columns (C at one kernel position
    # in every group of 4), and each group's weights are solved as the reference solves that GEMM
    torch.manual_seed(3)
    conv = nn.Conv2d(8, 12, 3, padding=1, groups=2)
    data = [torch.randn(2, 8, 5, 5) * torch.tensor([0.2, 1, 3, 0.5, 2, 1, 0.1, 4]).view(1, 8, 1, 1) for _ in range(3)]
    (weight,) = gemm_weights(conv)
    matrix = gemm_matrix(weight).double()
    columns = [torch.cat(parts).double() for parts in zip(*(gemm_columns(weight, (x,)) for x in data))]
    solved = [optimal_brain_surgeon_2_4(matrix[g], columns[g].T @ columns[g], 0.01) for g in range(2)]
    sparse24.sparsify(conv, "sparsegpt", data=data, policy="any", progress=False)
    assert torch.equal(gemm_matrix(weight, sparse24.enforce.mask_of(conv, "weight")), torch.stack([keep for _, keep in solved]))
    assert torch.allclose(gemm_matrix(weight).detach().double(), torch.stack([w for w, _ in solved]), rtol=1e-4, atol=1e-5)


def test_sparsegpt_on_uncorrelated_inputs_of_equal_norm_is_magnitude_pruning() -> None:
    # H = c I: OBS's saliency is w^2 / c and an error spreads along H^-1[j, :], which is 0 off the diagonal
    w = torch.randn(6, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    solved, keep = sparsegpt._solve_matrix(w, 3.0 * torch.eye(16, dtype=torch.float64), 8, 0.01, "probe")
    assert torch.equal(keep, prune_(w.clone(), 1)) and torch.equal(solved, w * keep)


def test_sparsegpt_solves_half_precision_in_fp32() -> None:
    torch.manual_seed(0)
    dense = nn.Linear(32, 16)
    data = skewed_linear_data()
    half = copy.deepcopy(dense).half()
    sparse24.sparsify(half, "sparsegpt", data=[x.half() for x in data], loss_fn=lambda m, b: m(b), progress=False)
    full = copy.deepcopy(dense)
    sparse24.sparsify(full, "sparsegpt", data=data, progress=False)
    assert half.weight.dtype == torch.float16 and torch.isfinite(half.weight).all()
    sparse24.verify(half)
    # solved in fp32 from fp16 inputs: as good as the fp32 solve, up to fp16 rounding
    half_error = output_error(half.float(), dense, data)
    assert half_error < output_error(full, dense, data) + 0.01 and half_error < output_error(nn.Linear(32, 16), dense, data)


def test_sparsegpt_raises_the_dampening_of_an_indefinite_hessian(caplog) -> None:
    from sparse24.errors import Sparse24Error

    hessian = torch.diag(torch.tensor([1.0, -0.5, 1.0, 1.0]))  # not positive definite at dampening 0.01
    with caplog.at_level("WARNING", logger="sparse24.criteria.sparsegpt"):
        upper = sparsegpt._inverse_factor(hessian, 0.01, "probe")
    assert torch.isfinite(upper).all() and "needed dampening 1" in caplog.text
    with pytest.raises(Sparse24Error, match="probe: the input Hessian is not positive definite even with dampening"):
        sparsegpt._inverse_factor(torch.diag(torch.tensor([1.0, -1e9, 1.0, 1.0])), 0.01, "probe")
    # a subnormal X^T X handed to solve (sparsify's own are summed in float32's range: the test below), which no
    # relative dampening mends
    with pytest.raises(Sparse24Error, match=r"probe: the layer's inputs are too small for a float32 Hessian \(mean of diag X\^T X = 1e-40\)"):
        sparsegpt._inverse_factor(torch.diag(torch.full((4,), 1e-40)), 0.01, "probe")
    # a non-finite one (sparsify's are refused as they are gathered: the test below), which no dampening mends
    with pytest.raises(Sparse24Error, match="probe: the layer's inputs hold NaN or Inf"):
        sparsegpt._inverse_factor(torch.diag(torch.tensor([1.0, float("inf"), 1.0, 1.0])), 0.01, "probe")


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize("sequential", [False, True])
def test_nan_inputs_are_named_and_change_nothing(method: str, sequential: bool, caplog) -> None:
    """A calibration batch holding a NaN: the first layer it reaches is named at once (SparseGPT said "not positive
    definite even with dampening 1e+03; more calibration data may help" after six dampenings, Wanda "importance
    scores contain NaN or Inf"), and the model is unchanged."""
    torch.manual_seed(0)
    model = Blocks()
    before = copy.deepcopy(model.state_dict())
    data = skewed_linear_data(features=32)
    data[1] = data[1].clone()
    data[1][0, 0] = float("nan")
    kind = "norms" if method == "wanda" else "hessian"
    with caplog.at_level("INFO", logger="sparse24"), pytest.raises(sparse24.Sparse24Error, match=rf"^{kind} calibration: blocks\.0\.0\.weight: the layer's inputs hold NaN or Inf"):
        sparse24.sparsify(model, method, data=data, sequential=sequential, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not sparse24.masked_weights(model)
    assert "dampening" not in caplog.text and "good range" not in caplog.text  # no dampening tried, no scale logged


def _homogeneous_cnn() -> nn.Module:
    """Bias-free convs, ReLU, average pooling and a Linear: inputs times 2**k give every layer's inputs times 2**k."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(16, 16, 3, bias=False), nn.ReLU(), nn.Conv2d(16, 32, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 16, bias=False)
    ).eval()


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize("power", [-75, 70])
def test_inputs_far_from_one_give_the_masks_and_weights_of_inputs_near_one(method: str, power: int) -> None:
    """Wanda's norms and SparseGPT's Hessians are summed in units of the largest input's power of two: inputs 2**-75
    times as large (X^T X below float32's smallest subnormal: a deep random-init CNN's last layers) or 2**70 (X^T X
    past float32's largest) give, bit for bit, the masks and weights the same inputs give near 1. SparseGPT refused
    both before; Wanda gave the small ones magnitude's mask ("inputs zero on every batch") and the large ones NaN."""
    torch.manual_seed(1)
    data = [torch.randn(2, 16, 6, 6) for _ in range(3)]
    near_one, far = _homogeneous_cnn(), _homogeneous_cnn()
    sparse24.sparsify(near_one, method, data=data, progress=False)
    report = sparse24.sparsify(far, method, data=[x * 2.0**power for x in data], progress=False)
    assert len(report.sparse_layers) == 3 and not any("inputs were zero" in note for note in report.notes)
    for (name, expected), got in zip(near_one.state_dict().items(), far.state_dict().values()):
        assert torch.equal(got, expected), name


def test_gather_near_one_is_plain_float32_bit_for_bit() -> None:
    """Inputs near 1: the Hessians are bit for bit plain float32 ``X^T X`` sums and the norms the ``sqrt`` of plain
    float32 sums of squares, batch by batch in the same order (the power-of-two units are exact)."""
    from sparse24.calibrate import gather

    torch.manual_seed(0)
    layer = nn.Linear(32, 16).eval()
    data = [torch.randn(8, 32) * scale for scale in (0.5, 3.0, 1.0)]  # the largest input grows: the sums are rescaled
    (weight,) = gemm_weights(layer)
    hessian, squares = torch.zeros(32, 32), torch.zeros(32)
    for x in data:
        hessian.addmm_(x.T, x)
        squares.add_(x.square().sum(0))
    hessians, _ = gather(layer, [weight], "hessian", data, progress=False)
    norms, _ = gather(layer, [weight], "norms", data, progress=False)
    assert torch.equal(hessians[id(weight.param)][0], hessian) and torch.equal(norms[id(weight.param)][0], squares.sqrt())


def test_scaled_sums_scale_brings_the_largest_value_seen_near_2_to_the_31() -> None:
    """``scale`` is ``2**31`` over the power of two at or below the largest ``|v|`` any call has held (in any part),
    kept within ``[2**-95, 2**125]``; zeros, subnormals and empty parts change nothing; the sums are rescaled as it
    grows and, times ``unit() ** 2``, are the true sums of squares (to float32's precision beside the largest)."""
    import math

    from sparse24.calibrate import ScaledSums

    sums, true, seen = ScaledSums([torch.zeros(3)], power=2), torch.zeros(3, dtype=torch.float64), 2.0**-95
    calls = [
        [torch.zeros(2, 3)],
        [torch.full((2, 3), 1e-40)],  # float32 subnormals
        [torch.empty(0, 3)],
        [torch.tensor([[2.0**-80, -3.0 * 2.0**-80, 2.0**-81]])],  # squares below float32's smallest subnormal
        [torch.tensor([[0.75, -3.0, 1.0]])],
        [torch.tensor([[-(2.0**-60), 0.0, 5.0]]), torch.empty(0, 3), torch.tensor([[1e-30, 7.0, -100.0]])],
        [torch.tensor([[1.0, 2.0, 3.0]])],
        [torch.tensor([[2.0**126, 0.0, 0.0]])],  # past the highest power of two kept
    ]
    for values in calls:
        for v in values:
            if v.numel() and float(v.abs().max()) > 0:
                seen = max(seen, 2.0 ** (math.frexp(float(v.abs().max()))[1] - 1))
        scale = sums.scale(values)
        assert float(scale) == 2.0**31 / min(seen, 2.0**125)
        for v in values:
            sums.tensors[0].add_((v * scale).square().sum(0))
            true += v.double().square().sum(0)
        assert torch.allclose(sums.tensors[0].double() * float(sums.unit()) ** 2, true, rtol=1e-6, atol=1e-6 * float(true.max())), values
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:  # the unit stays a float32 whatever torch's default dtype
        assert ScaledSums([torch.zeros(3, dtype=torch.float32)], power=1).scale([torch.ones(2, 3)]).dtype == torch.float32
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_all_finite_finds_any_nan_or_inf(dtype: torch.dtype) -> None:
    from sparse24.calibrate import all_finite

    values = torch.randn(7, 9).to(dtype) * 1000
    assert all_finite(values) and all_finite(values[:0]) and all_finite(values.T[2:5])
    for bad in (float("nan"), float("inf"), float("-inf")):
        for index in ((0, 0), (3, 4), (6, 8)):
            spoiled = values.clone()
            spoiled[index] = bad
            assert not all_finite(spoiled) and not all_finite(spoiled.T), (bad, index)


def test_gather_returns_norms_and_hessians_of_tiny_inputs() -> None:
    """Inputs 2**-75 as large: the norms exactly 2**-75 times theirs near 1; the Hessian (its true values below float32's
    smallest subnormal) a power of 4 times theirs, which SparseGPT's solution does not depend on."""
    from sparse24.calibrate import gather

    model = _homogeneous_cnn()
    torch.manual_seed(1)
    data = [torch.randn(2, 16, 6, 6) for _ in range(3)]
    weights = gemm_weights(model)
    tiny = [x * 2.0**-75 for x in data]
    norms, _ = gather(model, weights, "norms", data, progress=False)
    tiny_norms, _ = gather(model, weights, "norms", tiny, progress=False)
    hessians, _ = gather(model, weights, "hessian", data, progress=False)
    tiny_hessians, _ = gather(model, weights, "hessian", tiny, progress=False)
    for weight in weights:
        key = id(weight.param)
        assert torch.equal(tiny_norms[key], norms[key] * 2.0**-75) and norms[key].min() > 0
        h, tiny_h = hessians[key], tiny_hessians[key]
        assert torch.equal(tiny_h / tiny_h.diagonal(dim1=1, dim2=2).max(), h / h.diagonal(dim1=1, dim2=2).max())
        assert tiny_h.diagonal(dim1=1, dim2=2).max() >= 0.25  # scaled up (its true values are ~1e-45)


def test_sparsegpt_on_dead_and_rank_deficient_inputs_gives_finite_weights() -> None:
    layer = nn.Linear(32, 8)
    x = torch.randn(3, 32)  # 3 tokens: H has rank 3
    x[:, :8] = 0  # dead columns
    sparse24.sparsify(layer, "sparsegpt", data=[x], progress=False)
    assert torch.isfinite(layer.weight).all() and is_two_four(layer.weight, 1)
    assert (layer.weight[:, :8] == 0).all()


def test_sparsegpt_options_are_checked() -> None:
    with pytest.raises(ValueError, match="blocksize must be a positive multiple of 4"):
        sparse24.sparsify(nn.Linear(32, 8), "sparsegpt", data=[torch.randn(4, 32)], blocksize=6, progress=False)
    with pytest.raises(ValueError, match=r"dampening must be in \(0, 1\)"):
        sparse24.sparsify(nn.Linear(32, 8), "sparsegpt", data=[torch.randn(4, 32)], dampening=2.0, progress=False)


# ---------------------------------------------------------------- block by block


class Blocks(nn.Module):
    """Three residual MLP blocks in a ModuleList, then a head; optionally a scale between blocks."""

    def __init__(self, between: bool = False) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)) for _ in range(3))
        self.head = nn.Linear(32, 16)
        self.between = between

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
            if self.between:
                x = x * 0.5
        return self.head(x)


class Scaled(nn.Module):
    """An MLP block called with a second input, as Swin's stages take their own ``input_dimensions``."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(32, 64), nn.Linear(64, 32)

    def forward(self, x: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.nn.functional.gelu(self.up(x * scale)))


class ScaledBlocks(nn.Module):
    """Blocks whose second input differs from block to block: the next block's inputs are not the last one's."""

    def __init__(self, tensor: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Scaled() for _ in range(3))
        self.head = nn.Linear(32, 16)
        self.scales = [torch.rand(32) * 4 for _ in range(3)] if tensor else [0.5, 2.0, 8.0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, scale in zip(self.blocks, self.scales):
            x = block(x, scale)  # the block's output is the next block's first input
        return self.head(x)


def manual_sequential(model: nn.Module, method: str, data: list) -> dict[str, torch.Tensor]:
    """What sequential calibration must equal: each block decided on the model with the blocks before it pruned."""
    model = copy.deepcopy(model)
    for index in range(3):
        sparse24.sparsify(model, method, data=data, include=f"blocks.{index}.*", progress=False)
    sparse24.sparsify(model, method, data=data, include="head", progress=False)
    return {k: v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize(
    "build",
    [lambda: Blocks(False), lambda: Blocks(True), lambda: ScaledBlocks(False), lambda: ScaledBlocks(True)],
    ids=["chained", "recaptured", "own-float-input", "own-tensor-input"],  # the last two: once replayed block 0's scale for block 1
)
def test_sequential_equals_pruning_block_after_block(method: str, build: Callable[[], nn.Module]) -> None:
    torch.manual_seed(0)
    model = build()
    data = skewed_linear_data(features=32)
    expected = manual_sequential(model, method, data)
    sparse24.sparsify(model, method, data=data, sequential=True, progress=False)
    actual = model.state_dict()
    for key, value in expected.items():
        assert torch.allclose(actual[key].float(), value.float(), atol=1e-5), key


def test_sequential_differs_from_one_pass_and_offload_changes_nothing() -> None:
    torch.manual_seed(0)
    dense = Blocks()
    data = skewed_linear_data(features=32)
    sequential, offloaded, one_pass = copy.deepcopy(dense), copy.deepcopy(dense), copy.deepcopy(dense)
    sparse24.sparsify(sequential, "sparsegpt", data=data, sequential="blocks", progress=False)
    sparse24.sparsify(offloaded, "sparsegpt", data=data, sequential=["blocks.0", "blocks.1", "blocks.2"], offload=True, progress=False)
    sparse24.sparsify(one_pass, "sparsegpt", data=data, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(sequential.state_dict().values(), offloaded.state_dict().values()))
    assert not torch.equal(sequential.blocks[2][0].weight, one_pass.blocks[2][0].weight)  # block 2 saw pruned inputs


def test_sequential_failure_and_interrupt_leave_the_weights_unchanged(monkeypatch) -> None:
    torch.manual_seed(0)
    model = Blocks()
    before = copy.deepcopy(model.state_dict())
    data = skewed_linear_data(features=32)
    real = sparsegpt.solve
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # block 1's first weight: block 0 was already rewritten
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sparsegpt, "solve", failing)
    with pytest.raises(KeyboardInterrupt):
        sparse24.sparsify(model, "sparsegpt", data=data, sequential=True, progress=False)
    assert len(calls) == 4
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not sparse24.masked_weights(model)


def test_sequential_taylor_and_refusals() -> None:
    torch.manual_seed(0)
    model = Blocks()
    data = [(x, torch.randn(16, 16)) for x in skewed_linear_data(features=32)]
    loss = lambda m, batch: torch.nn.functional.mse_loss(m(batch[0]), batch[1])  # noqa: E731
    report = sparse24.sparsify(model, "taylor", data=data, loss_fn=loss, sequential=True, progress=False)
    assert len(report.sparse_layers) == 7
    sparse24.verify(model)
    with pytest.raises(ValueError, match="sequential calibration applies to the data-aware methods"):
        sparse24.sparsify(Blocks(), "magnitude", sequential=True)
    with pytest.raises(sparse24.Sparse24Error, match="sequential='head' is not a ModuleList or Sequential"):
        sparse24.sparsify(Blocks(), "wanda", data=data, loss_fn=loss, sequential="head")
    with pytest.raises(sparse24.Sparse24Error, match="found no list of repeated blocks"):
        sparse24.sparsify(nn.Sequential(nn.Linear(32, 32)), "wanda", data=[torch.randn(2, 32)], sequential=True)


def test_sequential_taylor_with_the_models_labels_runs_the_model_through_logits_fn() -> None:
    """Block by block, the model Fisher orders the blocks with the same call it scores with: ``logits_fn``, which
    picks the inputs out of an ``(inputs, labels)`` batch the model itself cannot take."""
    torch.manual_seed(0)
    model = Blocks()
    data = [(x, torch.randint(0, 16, (16,))) for x in skewed_linear_data(features=32)]
    picked = []

    def logits(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        picked.append(batch[0].shape)
        return m(batch[0])

    options = {"squared": True, "per_sample": True, "labels": "model", "logits_fn": logits, "pairs": True}
    report = sparse24.sparsify(model, "taylor", data=data, sequential=True, progress=False, **options)
    assert len(report.sparse_layers) == 7
    sparse24.verify(model)
    assert len(picked) > len(data)  # the order's forward, then the scoring passes


def test_sequential_finds_a_one_layer_transformer() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    assert [name for name, _ in find_blocks(model, True)] == ["model.layers.0"]
    report = sparse24.sparsify(model, "wanda", data=[torch.randint(0, 96, (2, 16)) for _ in range(2)], sequential=True, progress=False)
    assert len(report.sparse_layers) == 8  # 7 projections and the untied lm_head
    sparse24.verify(model)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_transformers_causal_lms_block_by_block_with_their_default_cache(architecture: str, method: str) -> None:
    model = causal_lm(architecture)
    assert model.config.use_cache  # the default a user has
    data = [torch.randint(0, 96, (2, 16)) for _ in range(3)]
    expected = copy.deepcopy(model)
    for index in range(2):  # the reference: block after block, each on the pruned model
        layers = "model.layers" if architecture == "llama" else "transformer.h"
        sparse24.sparsify(expected, method, data=data, include=f"{layers}.{index}.*", progress=False)
    report = sparse24.sparsify(model, method, data=data, sequential=True, exclude="lm_head", progress=False)
    sparse24.verify(model)
    assert len(report.sparse_layers) == (14 if architecture == "llama" else 8)
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-5), name


def _other_inputs_differ(architecture: str) -> tuple[nn.Module, list, str, list[str]]:
    import transformers

    if architecture == "gemma2":  # a sliding-window layer, then a full-attention one: their masks differ in a batch longer than the window
        config = transformers.Gemma2Config(
            vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=4
        )
        data = [torch.randint(0, 96, (2, 4))] + [torch.randint(0, 96, (2, 16)) for _ in range(2)]  # the first batch fits the window
        return transformers.Gemma2ForCausalLM(config), data, "model.layers", ["lm_head"]
    if architecture == "t5":  # block 0 computes the relative position bias that later blocks take as an input
        config = transformers.T5Config(vocab_size=96, d_model=64, d_ff=128, d_kv=16, num_layers=2, num_heads=4)
        data = [{"input_ids": torch.randint(0, 96, (2, 12)), "decoder_input_ids": torch.randint(0, 96, (2, 5))} for _ in range(3)]
        return transformers.T5ForConditionalGeneration(config), data, "encoder.block", ["decoder.*", "lm_head"]
    config = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=32, depths=[1, 1], num_heads=[2, 4], window_size=4, num_labels=10)
    data = [{"pixel_values": torch.randn(2, 3, 32, 32)} for _ in range(3)]  # each stage takes its own input_dimensions
    return transformers.SwinForImageClassification(config), data, "swin.encoder.layers", ["classifier"]


@pytest.mark.parametrize("architecture", ["t5", "swin", "gemma2"])
def test_blocks_whose_other_inputs_differ_are_recaptured(architecture: str) -> None:
    torch.manual_seed(0)
    model, data, layers, exclude = _other_inputs_differ(architecture)
    model.eval()
    pruned = [w for w in gemm_weights(model) if w.name.startswith(f"{layers}.")]  # what sparsify prunes with exclude=
    assert [name for name, _ in find_blocks(model, True, pruned)] == [f"{layers}.0", f"{layers}.1"]
    expected = copy.deepcopy(model)
    for index in range(2):
        sparse24.sparsify(expected, "sparsegpt", data=data, include=f"{layers}.{index}.*", policy="any", progress=False)
    # replaying block 0's other inputs for block 1 was a shape error in Swin, a silently wrong bias in T5, and in
    # Gemma 2 the sliding-window mask for the full-attention layer in the batches longer than the first
    sparse24.sparsify(model, "sparsegpt", data=data, sequential=True, exclude=exclude, policy="any", progress=False)
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-5), name


def test_sequential_true_takes_every_stack_in_order_encoder_then_decoder() -> None:
    """An encoder-decoder's two stacks both go block by block, the encoder's first: the decoder's blocks are
    calibrated on the pruned encoder's outputs, as pruning them one after the other does (once, the decoder was
    calibrated all at once after the encoder, or the other way round, whichever stack was longer)."""
    import transformers

    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=96, d_model=64, d_ff=128, d_kv=16, num_layers=2, num_heads=4)
    model = transformers.T5ForConditionalGeneration(config).eval()
    data = [{"input_ids": torch.randint(0, 96, (2, 12)), "decoder_input_ids": torch.randint(0, 96, (2, 5))} for _ in range(3)]
    blocks = ["encoder.block.0", "encoder.block.1", "decoder.block.0", "decoder.block.1"]
    assert [name for name, _ in find_blocks(model, True)] == blocks
    expected = copy.deepcopy(model)
    for block in blocks:  # lm_head is tied to the embedding: T5 has no weight outside the blocks to prune
        sparse24.sparsify(expected, "sparsegpt", data=data, include=f"{block}*", policy="any", progress=False)
    report = sparse24.sparsify(model, "sparsegpt", data=data, sequential=True, policy="any", progress=False)
    assert len(report.sparse_layers) == 32  # 6 per encoder block, 10 per decoder block
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-5), name


def _llava() -> nn.Module:
    import transformers

    text = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=16, patch_size=4)
    return transformers.LlavaForConditionalGeneration(transformers.LlavaConfig(text_config=text, vision_config=vision, image_token_id=95))


def test_sequential_true_takes_the_stacks_that_hold_the_weights_pruned() -> None:
    """A vision-language model calibrated on text with its vision tower excluded goes block by block through its
    language model's layers, though the vision tower's list is longer (it once chose the tower, whose blocks the text
    never runs: an error); with the tower included, both stacks, the tower's first."""
    torch.manual_seed(0)
    model = _llava().eval()
    tower, layers = "model.vision_tower.encoder.layers", "model.language_model.layers"
    assert [name for name, _ in find_blocks(model, True)] == [f"{tower}.{i}" for i in range(3)] + [f"{layers}.{i}" for i in range(2)]
    text = [w for w in gemm_weights(model) if not w.name.startswith("model.vision_tower.")]
    assert [name for name, _ in find_blocks(model, True, text)] == [f"{layers}.0", f"{layers}.1"]
    data = [{"input_ids": torch.randint(0, 90, (2, 12))} for _ in range(2)]
    expected = copy.deepcopy(model)
    exclude = ["model.vision_tower.*", "model.multi_modal_projector.*"]
    for block in [f"{layers}.0", f"{layers}.1", "lm_head"]:
        sparse24.sparsify(expected, "sparsegpt", data=data, include=f"{block}*", policy="any", progress=False)
    report = sparse24.sparsify(model, "sparsegpt", data=data, sequential=True, exclude=exclude, policy="any", progress=False)
    assert len(report.sparse_layers) == 15  # each layer's 7 projections, and lm_head
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-5), name


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_out_proj_sees_the_attention_values(batch_first: bool) -> None:
    """MultiheadAttention applies out_proj.weight itself; its inputs are recomputed from the MHA's inputs."""
    from sparse24.calibrate import _attention_values, gather

    attention = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
    q = torch.randn(2, 5, 16) if batch_first else torch.randn(5, 2, 16)
    mask = torch.tensor([[False] * 5, [False, False, False, True, True]])
    values = _attention_values(attention, (q, q, q), {"key_padding_mask": mask})
    expected, _ = attention(q, q, q, key_padding_mask=mask)
    assert torch.allclose(attention.out_proj(values), expected, atol=1e-6)
    out_proj = next(w for w in gemm_weights(attention) if w.module is attention.out_proj)
    stats, counts = gather(attention, [out_proj], "norms", [q], loss_fn=lambda m, b: m(b, b, b, key_padding_mask=mask), progress=False)
    assert counts[id(out_proj.param)] == 10
    assert torch.allclose(stats[id(out_proj.param)][0], values.reshape(-1, 16).norm(dim=0), rtol=1e-5)


def _wavlm() -> nn.Module:
    import transformers

    config = transformers.WavLMConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2),
        conv_kernel=(10, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_buckets=16, max_bucket_distance=32,
    )
    return transformers.WavLMModel(config).eval()


def _called_projections(self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, gated_position_bias: torch.Tensor) -> tuple:
    """WavLM's attention with its four projections called as modules (torch's attention given identities): the same
    function, whose projections' inputs the calibration's ordinary hooks see."""
    identity, zero = torch.eye(self.embed_dim), torch.zeros(self.embed_dim)
    q, k, v = (proj(hidden_states).transpose(0, 1) for proj in (self.q_proj, self.k_proj, self.v_proj))
    values, _ = F.multi_head_attention_forward(
        q, k, v, self.embed_dim, self.num_heads, torch.empty([0]), torch.cat((zero, zero, zero)), None, None, False, 0.0,
        identity, None, False, attention_mask.ne(1) if attention_mask is not None else None, need_weights=False,
        attn_mask=gated_position_bias, use_separate_proj_weight=True, q_proj_weight=identity, k_proj_weight=identity, v_proj_weight=identity,
    )
    return self.out_proj(values.transpose(0, 1)), None


@pytest.mark.parametrize("kind", ["norms", "hessian"])
def test_wavlm_attention_projections_are_calibrated_on_their_inputs(kind: str) -> None:
    """WavLM's attention hands its q/k/v/out projections' weights to ``F.multi_head_attention_forward`` and never calls
    them (Wanda and SparseGPT once left them dense: no inputs); their statistics are those of the inputs each
    projection has when called as a module, padded frames left out."""
    import types

    from sparse24.calibrate import gather

    original = F.multi_head_attention_forward
    torch.manual_seed(0)
    model = _wavlm()
    reference = copy.deepcopy(model)
    for layer in reference.encoder.layers:
        layer.attention.torch_multi_head_self_attention = types.MethodType(_called_projections, layer.attention)
    mask = torch.ones(2, 800, dtype=torch.long)
    mask[1, 600:] = 0
    data = [{"input_values": torch.randn(2, 800), "attention_mask": mask}, {"input_values": torch.randn(2, 800)}]
    with torch.no_grad():
        assert torch.allclose(model(**data[0]).last_hidden_state, reference(**data[0]).last_hidden_state, atol=1e-5)
    names = [f"encoder.layers.{i}.attention.{p}.weight" for i in range(2) for p in ("q_proj", "k_proj", "v_proj", "out_proj")]
    stats, counts = [], []
    for m in (model, reference):
        weights = [w for w in gemm_weights(m) if w.name in names]
        assert len(weights) == 8
        found, seen = gather(m, weights, kind, data, progress=False)
        stats.append([found[id(w.param)] for w in weights])
        counts.append([seen[id(w.param)] for w in weights])
    assert counts[0] == counts[1] and min(counts[0]) > 0
    for got, expected in zip(*stats):
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    report = sparse24.sparsify(model, "sparsegpt", data=data, include="encoder.layers.*.attention.*_proj", policy="any", progress=False)
    assert sorted(layer.name for layer in report.sparse_layers) == sorted(names)
    assert F.multi_head_attention_forward is original  # torch's own function back


class _AttentionPooling(nn.Module):
    """A learned probe attending over the tokens (SigLIP's pooling head): the query is 1 token, key and value are 7."""

    def __init__(self) -> None:
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, 16))
        self.attention = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.probe.expand(x.shape[0], -1, -1), x, x)[0]


def test_cross_attention_in_proj_parts_see_their_own_inputs() -> None:
    """in_proj's q part is calibrated on the query, its k and v parts on the longer key/value sequence."""
    from sparse24.calibrate import gather

    torch.manual_seed(0)
    model = _AttentionPooling().eval()
    data = [torch.randn(2, 7, 16) for _ in range(3)]
    in_proj = next(w for w in gemm_weights(model) if w.param_name == "in_proj_weight")
    hessians, counts = gather(model, [in_proj], "hessian", data, progress=False)
    tokens = torch.cat([x.reshape(-1, 16) for x in data])
    probe = model.probe.detach().reshape(1, 16).expand(6, -1)
    expected = torch.stack([probe.T @ probe, tokens.T @ tokens, tokens.T @ tokens])
    assert torch.allclose(hessians[id(in_proj.param)], expected, rtol=1e-5, atol=1e-5)
    assert counts[id(in_proj.param)] == 6  # the query's tokens
    for method in ("wanda", "sparsegpt"):
        candidate = copy.deepcopy(model)
        report = sparse24.sparsify(candidate, method, data=data, policy="any", progress=False)
        assert {layer.name for layer in report.sparse_layers} == {"attention.in_proj_weight", "attention.out_proj.weight"}
        sparse24.verify(candidate)


def test_demo_transformer_one_shot_and_block_by_block() -> None:
    from sparse24 import demo

    torch.manual_seed(0)
    model = demo.DigitsTransformer().eval()
    data = demo.calibration_batches(4)
    for method in ("wanda", "sparsegpt"):
        for sequential in (None, True):
            candidate = copy.deepcopy(model)
            report = sparse24.sparsify(candidate, method, data=data, loss_fn=demo.loss_fn, policy="any", sequential=sequential, progress=False)
            assert len(report.sparse_layers) == 10  # embed, 2 x (in_proj, out_proj, linear1, linear2), head
            sparse24.verify(candidate)


def test_cli_prune_with_sparsegpt_block_by_block(tmp_path, capsys) -> None:
    from sparse24.cli import main

    out = tmp_path / "sparse.safetensors"
    common = ["prune", "sparse24.demo:DigitsTransformer", "--data", "sparse24.demo:calibration_batches", "--loss", "sparse24.demo:loss_fn", "--policy", "any", "--num-batches", "4"]
    assert main([*common, "--method", "sparsegpt", "--sequential", "--dampening", "0.05", "--out", str(out)]) == 0
    assert "sparsegpt" in capsys.readouterr().out
    assert main(["verify", str(out)]) == 0
    assert main([*common, "--method", "wanda", "--sequential", "encoder.layers", "--offload", "--out", str(tmp_path / "w.safetensors")]) == 0
    assert main([*common, "--method", "sparsegpt", "--blocksize", "6", "--out", str(tmp_path / "bad.safetensors")]) == 2
    assert "blocksize must be a positive multiple of 4" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()


def test_taylor_per_sample_is_the_empirical_fisher() -> None:
    """per_sample=True, squared=True: w^2 * sum_i g_i^2 over single samples (not the batch gradient squared)."""
    from sparse24.batch import split_samples
    from sparse24.criteria import taylor

    torch.manual_seed(0)
    layer = nn.Linear(8, 4)
    batch = (torch.randn(6, 8), torch.randn(6, 4))
    loss = lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1])  # noqa: E731
    (weight,) = gemm_weights(layer)
    (scores,) = taylor.score(layer, [weight], data=[batch], loss_fn=loss, squared=True, per_sample=True, progress=False)
    expected = torch.zeros(4, 8)
    for sample in split_samples(batch):
        (grad,) = torch.autograd.grad(loss(layer, sample), [layer.weight])
        expected += (layer.weight.detach() * grad).square()
    assert torch.allclose(scores, expected, rtol=1e-5)
    (batch_scores,) = taylor.score(layer, [weight], data=[batch], loss_fn=loss, squared=True, progress=False)
    assert not torch.allclose(batch_scores, expected)
    with pytest.raises(sparse24.Sparse24Error, match="leading sizes"):
        split_samples((torch.randn(6, 8), torch.randn(5, 4)))


@pytest.mark.parametrize("options", [{}, {"squared": True, "per_sample": True}, {"squared": True, "pairs": True}])
def test_taylor_scores_of_gradients_far_below_float32_keep_their_order(options: dict) -> None:
    """A loss 2**-64 as large gives gradients 2**-64 as large, whose (w * g)**2 (~1e-45) is below float32 (a deep
    random-init CNN's: "every importance score is 0" before). Taylor's scores are summed in units of a power of two
    per weight, then in one unit for all: the same masks, and every weight's scores the same multiple (one power of
    two) of those of the loss near 1, so they stay comparable across weights (channel permutation adds them up)."""
    from sparse24.criteria import taylor
    from sparse24.criteria._pairs import PairCosts

    model = _homogeneous_cnn()
    torch.manual_seed(1)
    data = [torch.randn(2, 16, 6, 6) for _ in range(3)]
    weights = gemm_weights(model)

    def scores(power: int) -> list[torch.Tensor]:
        found = taylor.score(model, weights, data=data, loss_fn=lambda m, x: m(x).square().mean() * 2.0**power, progress=False, **options)
        return [s.scores if isinstance(s, PairCosts) else s for s in found]

    near_one, far = scores(0), scores(-64)
    largest, far_largest = max(s.max() for s in near_one), max(s.max() for s in far)
    assert far_largest > 1  # kept in a unit that holds them (their true values are below 1e-30)
    for expected, got in zip(near_one, far):
        assert torch.equal(got / far_largest, expected / largest)
    pruned = []
    for power in (0, -64):
        pruned.append(_homogeneous_cnn())
        sparse24.sparsify(pruned[-1], "taylor", data=data, loss_fn=lambda m, x, power=power: m(x).square().mean() * 2.0**power, progress=False, **options)
    for (name, expected), got in zip(pruned[0].state_dict().items(), pruned[1].state_dict().values()):
        assert torch.equal(got, expected), name


def test_packed_images_split_by_their_grid() -> None:
    """A vision model's packed patches (Qwen2-VL's processor: one tensor of every image's patches, grid_thw one row per
    image) split image by image; a tensor fitting neither count is an error that says so."""
    from sparse24.batch import split_samples

    patches, grid = torch.randn(7, 12), torch.tensor([[1, 1, 3], [1, 2, 2]])
    samples = split_samples({"hidden_states": patches, "grid_thw": grid, "merge_sizes": torch.tensor([1, 2])})
    assert [tuple(s["hidden_states"].shape) for s in samples] == [(3, 12), (4, 12)]
    assert torch.equal(torch.cat([s["hidden_states"] for s in samples]), patches)
    assert [s["grid_thw"].tolist() for s in samples] == [[[1, 1, 3]], [[1, 2, 2]]] and [s["merge_sizes"].tolist() for s in samples] == [[1], [2]]
    with pytest.raises(sparse24.Sparse24Error, match=r"leading sizes \[2, 6\] \(not one per image of its grid nor one per patch: 2 images, 7 patches\)"):
        split_samples({"hidden_states": torch.randn(6, 12), "grid_thw": grid})


def test_taylor_per_sample_on_a_vision_tower_of_packed_images() -> None:
    """Qwen2.5-VL's vision tower on two packed images: per-sample Taylor scores each image on its own, as scoring
    one-image batches and summing does."""
    pytest.importorskip("transformers")
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    from sparse24.criteria import taylor

    torch.manual_seed(0)
    config = Qwen2_5_VLVisionConfig(depth=1, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32, patch_size=2, temporal_patch_size=2, spatial_merge_size=2, in_channels=3, window_size=8, fullatt_block_indexes=[0])
    model = Qwen2_5_VisionTransformerPretrainedModel._from_config(config).eval()
    images = [{"hidden_states": torch.randn(16 * n, 24), "grid_thw": torch.tensor([[1, 4, 4 * n]])} for n in (1, 2)]
    packed = {"hidden_states": torch.cat([i["hidden_states"] for i in images]), "grid_thw": torch.cat([i["grid_thw"] for i in images])}
    loss = lambda m, b: m(**b).last_hidden_state.square().mean()  # noqa: E731
    weights = gemm_weights(model)
    per_sample = taylor.score(model, weights, data=[packed], loss_fn=loss, squared=True, per_sample=True, progress=False)
    one_by_one = taylor.score(model, weights, data=images, loss_fn=loss, squared=True, progress=False)
    for got, expected in zip(per_sample, one_by_one, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-12)
    whole = taylor.score(model, weights, data=[packed], loss_fn=loss, squared=True, progress=False)
    assert not all(torch.allclose(a, b) for a, b in zip(whole, one_by_one))


# ---------------------------------------------------------------- channel permutation inside sparsify


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_sparsify_with_permutation_keeps_more_and_reports_the_gain(method: str) -> None:
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 16))
    data = None if method == "magnitude" else skewed_linear_data()
    plain, permuted = copy.deepcopy(dense), copy.deepcopy(dense)
    before = sparse24.sparsify(plain, method, data=data, progress=False)
    after = sparse24.sparsify(permuted, method, data=data, permute=True, progress=False)
    sparse24.verify(permuted)
    assert any(note.startswith("permuted 2: kept importance") for note in after.notes), after.notes
    assert "channel permutation: 2 groups permuted" in after.notes[-1]
    if method != "sparsegpt":  # the searched importance is what the masks keep
        kept = {layer.name: layer.importance_kept for layer in after.sparse_layers}
        kept_before = {layer.name: layer.importance_kept for layer in before.sparse_layers}
        assert kept["2.weight"] >= kept_before["2.weight"] and kept["4.weight"] >= kept_before["4.weight"]


def test_a_failure_after_the_permutation_puts_the_model_back() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    before = copy.deepcopy(model.state_dict())
    calls = []

    def loss(m, batch):
        calls.append(1)
        if len(calls) > 2:  # wanda's scoring for the permutation runs 2 batches; the criterion's pass fails
            raise RuntimeError("broken batch")
        return m(batch).sum()

    with pytest.raises(RuntimeError, match="broken batch"):
        sparse24.sparsify(model, "wanda", data=skewed_linear_data(2), loss_fn=loss, permute=True, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not sparse24.masked_weights(model)


# ---------------------------------------------------------------- Taylor with the model's Fisher


def _classifier_batch(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    return nn.Linear(8, 3), (torch.randn(5, 8), torch.randint(0, 3, (5,)))


def _logits(model: nn.Module, batch: tuple) -> torch.Tensor:
    return model(batch[0])


def test_taylor_model_fisher_draws_match_a_hand_computation() -> None:
    """labels='model': (w * d<u, z>/dw)^2 summed over draws, u = sqrt(p) e - p <sqrt(p), e>, e ~ N(0, I) from the seeded generator."""
    from sparse24.criteria import taylor

    layer, batch = _classifier_batch()
    (weight,) = gemm_weights(layer)
    (scores,) = taylor.score(layer, [weight], data=[batch, batch], labels="model", logits_fn=_logits, samples=2, seed=7, squared=True, progress=False)
    generator = torch.Generator().manual_seed(7)
    expected = torch.zeros(3, 8)
    for _ in range(2):  # two batches
        z = layer(batch[0])
        p = torch.softmax(z.detach(), 1)
        for _ in range(2):  # two draws each
            e = torch.randn(p.shape, generator=generator)
            u = p.sqrt() * e - p * (p.sqrt() * e).sum(1, keepdim=True)
            (grad,) = torch.autograd.grad((z * u).sum(), [layer.weight], retain_graph=True)
            expected += (layer.weight.detach() * grad).square()
    assert torch.allclose(scores, expected, rtol=1e-5)
    assert layer.weight.grad is None and all(p.requires_grad for p in layer.parameters())


def test_taylor_model_fisher_is_the_true_fisher_in_expectation() -> None:
    """The mean over many draws approaches w^2 * sum_n sum_c p_nc (d log p_nc / dw)^2, the Fisher of the model's own labels."""
    from sparse24.criteria import taylor

    layer, batch = _classifier_batch(1)
    (weight,) = gemm_weights(layer)
    draws = 3000
    (scores,) = taylor.score(layer, [weight], data=[batch], labels="model", logits_fn=_logits, samples=draws, per_sample=True, squared=True, progress=False)
    exact = torch.zeros(3, 8)
    for n in range(5):
        log_p = torch.log_softmax(layer(batch[0][n : n + 1]), 1)[0]
        for c in range(3):
            (grad,) = torch.autograd.grad(log_p[c], [layer.weight], retain_graph=True)
            exact += log_p[c].exp().detach() * (layer.weight.detach() * grad).square()
    assert torch.allclose(scores / draws, exact, rtol=0.15, atol=1e-3 * float(exact.max()))
    # the data's labels give a different score: the empirical Fisher, not the model's
    loss = lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1], reduction="sum")  # noqa: E731
    (empirical,) = taylor.score(layer, [weight], data=[batch], loss_fn=loss, per_sample=True, squared=True, progress=False)
    assert not torch.allclose(empirical, exact, rtol=0.15)


def test_taylor_model_fisher_options_are_checked() -> None:
    from sparse24.criteria import taylor

    layer, batch = _classifier_batch()
    weights = gemm_weights(layer)
    with pytest.raises(ValueError, match="labels must be one of"):
        taylor.score(layer, weights, data=[batch], labels="true", progress=False)
    with pytest.raises(ValueError, match="samples must be a positive int"):
        taylor.score(layer, weights, data=[batch], labels="model", samples=0, progress=False)
    with pytest.raises(ValueError, match="apply to labels='model' only"):
        taylor.score(layer, weights, data=[batch], loss_fn=lambda m, b: m(b[0]).sum(), logits_fn=_logits, progress=False)
    with pytest.raises(sparse24.Sparse24Error, match="logits_fn must return float logits"):
        taylor.score(layer, weights, data=[batch], labels="model", logits_fn=lambda m, b: b[1], progress=False)
    # without logits_fn: the model's own output on the batch (a tensor here)
    (scores,) = taylor.score(layer, weights, data=[batch[0]], labels="model", squared=True, progress=False)
    assert scores.shape == layer.weight.shape and bool((scores > 0).all())


def test_sparsify_passes_the_model_fisher_through() -> None:
    layer, batch = _classifier_batch()
    report = sparse24.sparsify(layer, "taylor", data=[batch], labels="model", logits_fn=_logits, squared=True, policy="any", progress=False)
    assert len(report.sparse_layers) == 1 and is_two_four(layer.weight.detach(), 1)


class SideBranch(nn.Module):
    """Residual blocks and the head the loss reads, then two layers it never reads (as a base model's pooler):
    one trained, one zero-initialized."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)) for _ in range(2))
        self.head = nn.Linear(32, 16)
        self.pooler = nn.Linear(32, 32)
        self.zeroed = nn.Linear(32, 32)
        nn.init.zeros_(self.zeroed.weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.blocks:
            x = x + block(x)
        return self.head(x), self.zeroed(self.pooler(x))


def _magnitude_mask(weight: torch.Tensor) -> torch.Tensor:
    mask = torch.empty(weight.shape, dtype=torch.bool)
    prune_(weight.detach().clone(), 1, None, out=mask)
    return mask


@pytest.mark.parametrize("sequential", [None, True], ids=["at-once", "block-by-block"])
@pytest.mark.parametrize("labels", ["data", "model"])
def test_taylor_gives_a_layer_no_gradient_reaches_magnitudes_mask_and_says_so(labels: str, sequential: bool | None) -> None:
    """The pooler's scores are all 0 (the loss never reads it): its mask is magnitude's, not the first two of every
    group that ties would keep, the report says so, and block by block it is not an error either."""
    torch.manual_seed(0)
    model = SideBranch()
    expected = _magnitude_mask(model.pooler.weight)
    if labels == "model":
        options = {"labels": "model", "logits_fn": lambda m, x: m(x)[0], "pairs": True}
    else:
        options = {"loss_fn": lambda m, x: m(x)[0].square().mean()}
    report = sparse24.sparsify(model, "taylor", data=skewed_linear_data(features=32), squared=True, per_sample=True, sequential=sequential, policy="any", progress=False, **options)
    assert len(report.sparse_layers) == 7  # the zero-initialized layer too: all its weights are 0 already
    assert torch.equal(model.pooler.weight != 0, expected)
    assert not bool(expected.view(32, 8, 4)[..., :2].all())  # what ties would have kept
    assert [n for n in report.notes if "no gradient reached" in n] == [
        "some layers got no importance from the calibration (taylor: no gradient reached them on any batch; the loss, or "
        "logits_fn's output, does not depend on them): magnitude's mask there: pooler.weight"
    ]
    pooler = next(layer for layer in report.layers if layer.name == "pooler.weight")
    assert 0.5 < pooler.importance_kept < 1.0  # of its squared magnitude, not 0 / 0


def test_taylor_fills_each_part_no_gradient_reaches_on_its_own() -> None:
    """One-token sequences: the attention weights are 1 whatever the query and key, so ``in_proj_weight``'s q and k
    thirds get no gradient (magnitude's mask) while its v third keeps Taylor's."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(32, 4, batch_first=True)
    expected = _magnitude_mask(attention.in_proj_weight)
    data = [x.unsqueeze(1) for x in skewed_linear_data(features=32)]
    report = sparse24.sparsify(
        attention, "taylor", data=data, loss_fn=lambda m, x: m(x, x, x)[0].square().mean(), squared=True, policy="any", progress=False
    )
    mask = attention.in_proj_weight != 0
    assert torch.equal(mask[:64], expected[:64]) and not torch.equal(mask[64:], expected[64:])
    assert any(n.endswith("magnitude's mask there: in_proj_weight 2 of 3 parts") for n in report.notes)


@pytest.mark.parametrize("sequential", [None, True], ids=["at-once", "block-by-block"])
def test_taylor_with_a_loss_that_reaches_none_of_the_weights_is_an_error(sequential: bool | None) -> None:
    """A loss that reads the pruned blocks only through the zero-initialized layer has a gradient of 0 at every
    pruned weight: one error, at once and block by block, the model untouched; a loss detached from every weight,
    and logits of one class (a constant softmax: no Fisher), are errors too."""
    torch.manual_seed(0)
    model = SideBranch()
    before = copy.deepcopy(model.state_dict())
    where = "taylor, block by block" if sequential else "taylor"
    options = {"data": skewed_linear_data(features=32), "sequential": sequential, "policy": "any", "progress": False}
    with pytest.raises(sparse24.Sparse24Error, match=f"^{where}: every importance score is 0: no gradient reached any of the weights"):
        sparse24.sparsify(model, "taylor", loss_fn=lambda m, x: m(x)[1].square().mean(), include="blocks.*", **options)
    with pytest.raises(sparse24.Sparse24Error, match="no gradient|does not depend on any trainable weight"):
        sparse24.sparsify(model, "taylor", loss_fn=lambda m, x: m(x)[0].detach().sum(), **options)
    with pytest.raises(sparse24.Sparse24Error, match=r"logits of 2 or more classes .* got a torch.float32 tensor of shape \[16, 1\]"):
        sparse24.sparsify(model, "taylor", labels="model", logits_fn=lambda m, x: m(x)[0][:, :1], **options)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not sparse24.masked_weights(model)


def _padded_text(lengths: list[list[int]], length: int = 16, vocab: int = 96) -> tuple[list[dict], list[dict]]:
    """Right-padded batches (``attention_mask`` 0 on the pads) and the same sequences unpadded, one per batch."""
    generator = torch.Generator().manual_seed(0)
    padded, unpadded = [], []
    for sizes in lengths:
        ids = torch.randint(3, vocab, (len(sizes), length), generator=generator)
        mask = torch.zeros(len(sizes), length, dtype=torch.long)
        for row, size in enumerate(sizes):
            mask[row, :size] = 1
            ids[row, size:] = 0  # the pad token
            unpadded.append({"input_ids": ids[row : row + 1, :size]})
        padded.append({"input_ids": ids, "attention_mask": mask})
    return padded, unpadded


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
@pytest.mark.parametrize("method, sequential", [("wanda", False), ("sparsegpt", False), ("sparsegpt", True)])
def test_padding_is_left_out_of_the_statistics(architecture: str, method: str, sequential: bool) -> None:
    """Padded batches give the masks and weights of the same sequences unpadded: pads are not calibration data."""
    model = causal_lm(architecture)
    padded, unpadded = _padded_text([[16, 5, 9], [12, 16, 3]])
    expected = copy.deepcopy(model)
    sparse24.sparsify(expected, method, data=unpadded, sequential=sequential, progress=False)
    report = sparse24.sparsify(model, method, data=padded, sequential=sequential, progress=False)
    assert "the input statistics leave out padding: 35 of 96 token positions (attention_mask == 0)" in report.notes
    _same_masks_and_weights(model, expected)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_the_model_fisher_leaves_the_padded_positions_out(architecture: str, per_sample: bool) -> None:
    """A right pad is no prediction: with its draw 0, what the pads hold (another token id, which the causal model's
    real positions never attend to) changes no score, and the report says how many positions were left out."""
    from sparse24.criteria import taylor

    model = causal_lm(architecture)
    padded, _ = _padded_text([[16, 5, 9], [12, 16, 3]])
    other = [{**batch, "input_ids": batch["input_ids"].where(batch["attention_mask"].bool(), 7)} for batch in padded]
    weights = [w for w in gemm_weights(model) if w.name != "lm_head.weight" and "wte" not in w.name]
    options = {"labels": "model", "squared": True, "per_sample": per_sample, "progress": False}
    first = taylor.score(model, weights, data=padded, **options)
    second = taylor.score(model, weights, data=other, **options)
    for weight, a, b in zip(weights, first, second):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=0, msg=weight.name)
    report = sparse24.sparsify(model, "taylor", data=padded, **options)
    counted = 64 if per_sample else 96  # the positions of the batches with padding: per sample, of the 4 padded sequences
    assert f"the model Fisher's draws leave out padding: 35 of {counted} token positions (attention_mask == 0)" in report.notes


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_padding_is_left_out_beside_the_words_boxes(method: str) -> None:
    """A document's batch (LayoutLM's: each token's word box, ``bbox``, beside the tokens) adds no positions: its
    padding is left out as a text's (it kept every position before)."""
    from transformers import LayoutLMConfig, LayoutLMModel

    torch.manual_seed(0)
    model = LayoutLMModel(LayoutLMConfig(vocab_size=96, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128)).eval()
    padded, unpadded = _padded_text([[16, 5, 9], [12, 16, 3]])
    generator, rows = torch.Generator().manual_seed(1), iter(unpadded)
    for batch in padded:
        corners = torch.randint(0, 1000, (*batch["input_ids"].shape, 2, 2), generator=generator).sort(dim=-2).values
        batch["bbox"] = corners.flatten(-2)  # x0, y0, x1, y1
        for row in range(len(batch["input_ids"])):
            alone = next(rows)
            alone["bbox"] = batch["bbox"][row : row + 1, : alone["input_ids"].shape[1]]
    expected = copy.deepcopy(model)
    sparse24.sparsify(expected, method, data=unpadded, progress=False)
    report = sparse24.sparsify(model, method, data=padded, progress=False)
    assert "the input statistics leave out padding: 35 of 96 token positions (attention_mask == 0)" in report.notes
    _same_masks_and_weights(model, expected)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_padding_is_left_out_beside_flags_and_a_language_per_sequence(method: str) -> None:
    """Batch values that hold no rows (a flag, ``use_cache=False``; X-MOD's ``lang_ids``, one per sequence) leave the
    padding out as in a plain text batch: each kept every position in every layer before (taken for another input,
    such as pixels, that the layers read)."""
    from transformers import XmodConfig, XmodModel

    padded, unpadded = _padded_text([[16, 5, 9], [12, 16, 3]])
    model = causal_lm("llama")
    expected = copy.deepcopy(model)
    sparse24.sparsify(expected, method, data=unpadded, progress=False)
    flagged = [{**batch, "use_cache": False, "output_hidden_states": False} for batch in padded]
    report = sparse24.sparsify(model, method, data=flagged, progress=False)
    assert "the input statistics leave out padding: 35 of 96 token positions (attention_mask == 0)" in report.notes
    _same_masks_and_weights(model, expected)

    torch.manual_seed(0)
    sizes = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64}
    model = XmodModel(XmodConfig(**sizes, vocab_size=96, languages=["en_XX", "de_DE"])).eval()
    expected = copy.deepcopy(model)
    one_language = lambda batches: [{**b, "lang_ids": torch.ones(len(b["input_ids"]), dtype=torch.long)} for b in batches]  # noqa: E731
    other = "*.adapter_modules.en_XX.*"  # the other language's adapter, which no batch runs
    sparse24.sparsify(expected, method, data=one_language(unpadded), exclude=other, progress=False)
    report = sparse24.sparsify(model, method, data=one_language(padded), exclude=other, progress=False)
    assert "the input statistics leave out padding: 35 of 96 token positions (attention_mask == 0)" in report.notes
    assert any(".adapter_modules.de_DE." in layer.name and layer.sparse for layer in report.layers)  # the language's adapter, calibrated
    _same_masks_and_weights(model, expected)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_padding_is_left_out_in_the_text_tower_beside_pixels(method: str) -> None:
    """A dual encoder's batch (SigLIP: text and images) leaves the text's padding out in the text tower only: the
    vision tower's rows ``[3, 16, 32]`` (16 patches) have the text mask's shape, and keep every row. Every mask is
    that of the same texts unpadded, each with its image, but the text head's: it reads the last position, a pad in
    a padded text. (Every position counted in both towers before.)"""
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(0)
    tower = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64}
    config = SiglipConfig(text_config={**tower, "vocab_size": 96, "max_position_embeddings": 16}, vision_config={**tower, "image_size": 32, "patch_size": 8})
    model = SiglipModel(config).eval()
    padded, unpadded = _padded_text([[16, 5, 9], [12, 16, 3]])
    generator, alone = torch.Generator().manual_seed(2), iter(unpadded)
    for batch in padded:
        batch["pixel_values"] = torch.randn(len(batch["input_ids"]), 3, 32, 32, generator=generator)
        for row in range(len(batch["input_ids"])):
            next(alone)["pixel_values"] = batch["pixel_values"][row : row + 1]
    expected = copy.deepcopy(model)
    sparse24.sparsify(expected, method, data=unpadded, progress=False)
    report = sparse24.sparsify(model, method, data=padded, progress=False)
    assert "the input statistics leave out padding: 35 of 96 token positions (attention_mask == 0)" in report.notes
    masks = [name for name in expected.state_dict() if name.endswith(sparse24.MASK_SUFFIX)]
    assert any(name.startswith("vision_model.encoder.") for name in masks) and any(name.startswith("text_model.encoder.") for name in masks)
    differing = [name for name in masks if not torch.equal(model.state_dict()[name], expected.state_dict()[name])]
    assert differing == ["text_model.head.weight" + sparse24.MASK_SUFFIX]


def test_the_text_tower_is_the_language_model_and_its_head() -> None:
    """A VLM's text tower is its language model (image tokens among its positions, under the mask) and its LM head,
    not the vision tower or the projector; a dual encoder's, its text model (not its vision model, whose encoder
    takes ``inputs_embeds`` too); where the layers take the other input (X-MOD's per-language adapters read
    ``lang_ids``), only the embeddings (no layer to calibrate) are."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, XmodConfig, XmodModel

    from sparse24.calibrate import text_tower

    sizes = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64}
    config = LlavaConfig(vision_config=CLIPVisionConfig(**sizes, image_size=32, patch_size=8), text_config=LlamaConfig(**sizes, vocab_size=96), image_token_index=95)
    vlm = LlavaForConditionalGeneration(config)
    tower = text_tower(vlm, frozenset({"pixel_values"}))
    linears = {name for name, module in vlm.named_modules() if isinstance(module, nn.Linear) and id(module) in tower}
    assert linears == {name for name, module in vlm.named_modules() if isinstance(module, nn.Linear) and name.startswith(("model.language_model.", "lm_head"))}
    assert "lm_head" in linears and None in tower  # the logits too (the model Fisher's draws)
    clip = CLIPModel(CLIPConfig(text_config={**sizes, "vocab_size": 96}, vision_config={**sizes, "image_size": 32, "patch_size": 8}))
    tower = text_tower(clip, frozenset({"pixel_values"}))  # CLIPModel has no get_input_embeddings: its forwards' input_ids say
    linears = {name for name, module in clip.named_modules() if isinstance(module, nn.Linear) and id(module) in tower}
    assert linears == {name for name, module in clip.named_modules() if isinstance(module, nn.Linear) and name.startswith("text_model.")} and None not in tower
    xmod = XmodModel(XmodConfig(**sizes, vocab_size=96, languages=["en_XX", "de_DE"]))
    tower = text_tower(xmod, frozenset({"lang_ids"}))
    assert {name for name, module in xmod.named_modules() if id(module) in tower} == {name for name, _ in xmod.embeddings.named_modules(prefix="embeddings")}


def _same_masks_and_weights(model: nn.Module, expected: nn.Module) -> None:
    """The same masks and weights, up to float32 sums taken in another order: a padded batch adds the same rows in
    other groupings, so the statistics differ in their last bits. SparseGPT's weights can then differ in the fifth
    decimal, and where two of a group's saliencies are that near a tie (seen with one thread, not two), the other
    pair is pruned in one GEMM row, whose later groups follow it. So at most one row of a layer may differ; every
    other row has the same mask bit for bit and the same weights, and every other tensor is the same."""
    masked = {weight.name: (weight, mask) for weight, mask in sparse24.masked_weights(model)}
    expected_masked = sparse24.masked_weights(expected)
    assert sorted(masked) == sorted(weight.name for weight, _ in expected_masked)
    for want, want_mask in expected_masked:
        weight, mask = masked[want.name]
        differ = (gemm_matrix(weight, mask) != gemm_matrix(want, want_mask)).any(-1)
        assert int(differ.sum()) <= 1, f"{want.name}: the masks of {int(differ.sum())} rows differ"
        same = ~differ
        got, wanted = (gemm_matrix(w, w.param.detach())[same] for w in (weight, want))
        assert torch.allclose(got, wanted, rtol=1e-4, atol=1e-4), want.name
    state = model.state_dict()
    for name, value in expected.state_dict().items():
        if name.endswith(sparse24.MASK_SUFFIX) or name in masked:  # compared above, row by row
            continue
        assert torch.allclose(state[name], value, rtol=1e-4, atol=1e-4), name


def _padded_seq2seq(lengths: list[list[tuple[int, int]]], vocab: int = 96) -> tuple[list[dict], list[dict]]:
    """Right-padded encoder-decoder batches (both masks) and the same pairs unpadded, one per batch."""
    generator = torch.Generator().manual_seed(0)
    padded, unpadded = [], []
    for sizes in lengths:
        ids, decoder = torch.randint(3, vocab, (len(sizes), 12), generator=generator), torch.randint(3, vocab, (len(sizes), 7), generator=generator)
        mask, decoder_mask = torch.zeros_like(ids), torch.zeros_like(decoder)
        for row, (size, decoder_size) in enumerate(sizes):
            mask[row, :size], decoder_mask[row, :decoder_size] = 1, 1
            ids[row, size:], decoder[row, decoder_size:] = 0, 0
            unpadded.append({"input_ids": ids[row : row + 1, :size], "decoder_input_ids": decoder[row : row + 1, :decoder_size]})
        padded.append({"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder, "decoder_attention_mask": decoder_mask})
    return padded, unpadded


@pytest.mark.parametrize("architecture", ["t5", "bart"])
@pytest.mark.parametrize("method, sequential", [("wanda", False), ("sparsegpt", False), ("sparsegpt", True)])
def test_encoder_decoder_padding_is_left_out_of_the_statistics(architecture: str, method: str, sequential: bool) -> None:
    """Each sequence's mask drops its own pads: the encoder's rows (and the cross-attention keys/values read from
    them) by attention_mask, the decoder's by decoder_attention_mask."""
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    if architecture == "t5":
        model = T5ForConditionalGeneration(T5Config(vocab_size=96, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4, decoder_start_token_id=0))
    else:
        model = BartForConditionalGeneration(BartConfig(vocab_size=96, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                                        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32))
    padded, unpadded = _padded_seq2seq([[(12, 7), (5, 3), (9, 6)], [(4, 7), (12, 2), (7, 5)]])
    expected = copy.deepcopy(model)
    sparse24.sparsify(expected, method, data=unpadded, sequential=sequential, policy="any", progress=False)
    report = sparse24.sparsify(model, method, data=padded, sequential=sequential, policy="any", progress=False)
    assert "the input statistics leave out padding: 35 of 114 token positions (attention_mask and decoder_attention_mask == 0)" in report.notes
    _same_masks_and_weights(model, expected)


@pytest.mark.parametrize("architecture", ["xlnet", "fsmt"])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_time_first_padding_is_left_out_of_the_statistics(architecture: str, method: str) -> None:
    """XLNet's and FSMT's layers read ``[length, batch, d]``: each sequence's pads are left out there too, the
    statistics those of the sequences unpadded."""
    from transformers import FSMTConfig, FSMTForConditionalGeneration, XLNetConfig, XLNetLMHeadModel

    torch.manual_seed(0)
    if architecture == "xlnet":
        model = XLNetLMHeadModel(XLNetConfig(vocab_size=96, d_model=32, n_layer=2, n_head=4, d_head=8, d_inner=64))
        padded, unpadded = _padded_text([[16, 5, 9], [12, 16, 3]])
        note = "35 of 96 token positions (attention_mask == 0)"
    else:
        model = FSMTForConditionalGeneration(FSMTConfig(
            langs=["en", "de"], src_vocab_size=96, tgt_vocab_size=96, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32,
        ))
        padded, unpadded = _padded_seq2seq([[(12, 7), (5, 3), (9, 6)], [(4, 7), (12, 2), (7, 5)]])
        note = "35 of 114 token positions (attention_mask and decoder_attention_mask == 0)"
    expected = copy.deepcopy(model)
    sparse24.sparsify(expected, method, data=unpadded, policy="any", progress=False)
    report = sparse24.sparsify(model, method, data=padded, policy="any", progress=False)
    assert f"the input statistics leave out padding: {note}" in report.notes
    _same_masks_and_weights(model, expected)


def test_encoder_decoder_rows_by_their_sequence() -> None:
    from sparse24.calibrate import Padding

    seq2seq = nn.Linear(4, 4)
    seq2seq.config = type("Config", (), {"is_encoder_decoder": True})()
    mask, decoder_mask = torch.tensor([[1, 1, 0], [1, 0, 0]]), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    encoder_rows, decoder_rows = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    batch = {"input_ids": torch.zeros(2, 3, dtype=torch.long), "attention_mask": mask, "decoder_input_ids": torch.zeros(2, 5, dtype=torch.long)}
    padding = Padding(seq2seq)
    padding.batch({**batch, "decoder_attention_mask": decoder_mask})
    assert torch.equal(padding.rows(encoder_rows), encoder_rows[mask.bool()])
    assert torch.equal(padding.rows(decoder_rows), decoder_rows[decoder_mask.bool()])
    assert (padding.left_out, padding.seen, padding.keys) == (3 + 3, 6 + 10, {"attention_mask", "decoder_attention_mask"})
    padding.batch(batch)  # no decoder mask: the decoder's rows all count, the encoder's still lose their pads
    assert torch.equal(padding.rows(encoder_rows), encoder_rows[mask.bool()]) and padding.rows(decoder_rows) is decoder_rows
    same_length = {"input_ids": torch.zeros(2, 3, dtype=torch.long), "attention_mask": mask}
    for decoder in ({}, {"labels": torch.zeros(2, 3, dtype=torch.long)}, {"decoder_input_ids": torch.zeros(2, 3, dtype=torch.long), "decoder_attention_mask": 1 - mask}):
        padding.batch({**same_length, **decoder})  # two sequences of one length, other masks: which rows are whose is unknown
        assert padding.rows(encoder_rows) is encoder_rows, decoder
    padding.batch({**same_length, "decoder_input_ids": torch.zeros(2, 3, dtype=torch.long), "decoder_attention_mask": mask})  # one mask for both
    assert torch.equal(padding.rows(encoder_rows), encoder_rows[mask.bool()])


def _speech_model(architecture: str) -> nn.Module:
    """A tiny wav2vec 2.0-style CTC model whose valid frames do not depend on the padding (layer-normed
    feature encoder): padded and unpadded audio give the same outputs there."""
    from transformers import HubertConfig, HubertForCTC, Wav2Vec2Config, Wav2Vec2ForCTC

    config, model = (Wav2Vec2Config, Wav2Vec2ForCTC) if architecture == "wav2vec2" else (HubertConfig, HubertForCTC)
    torch.manual_seed(0)
    return model(config(vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_dim=(16, 16, 16),
                        conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                        feat_extract_norm="layer", do_stable_layer_norm=True)).eval()


def _padded_audio(lengths: list[list[int]], samples: int = 400) -> tuple[list[dict], list[dict]]:
    """Right-padded speech batches (``attention_mask`` 0 on the pads) and the same clips unpadded, one per batch."""
    generator = torch.Generator().manual_seed(0)
    padded, unpadded = [], []
    for sizes in lengths:
        values, mask = torch.randn(len(sizes), samples, generator=generator), torch.zeros(len(sizes), samples, dtype=torch.long)
        for row, size in enumerate(sizes):
            mask[row, :size], values[row, size:] = 1, 0
            unpadded.append({"input_values": values[row : row + 1, :size]})
        padded.append({"input_values": values, "attention_mask": mask})
    return padded, unpadded


@pytest.mark.parametrize("architecture", ["wav2vec2", "hubert"])
@pytest.mark.parametrize("method, sequential", [("wanda", False), ("sparsegpt", False), ("sparsegpt", True)])
def test_speech_padding_is_left_out_of_the_statistics(architecture: str, method: str, sequential: bool) -> None:
    """Padded speech batches give the masks and weights of the same clips unpadded: the encoder's Linear layers
    drop the padded frames (the model's own frames' mask), the feature encoder's and the positional
    convolutions the windows the unpadded clip does not have."""
    model = _speech_model(architecture)
    padded, unpadded = _padded_audio([[400, 250, 333], [170, 400, 290]])
    with torch.no_grad():  # the premise: the valid frames' outputs do not depend on the padding
        assert torch.allclose(model(**padded[1]).logits[0, :7], model(**unpadded[3]).logits[0], atol=1e-5)
    expected = copy.deepcopy(model)
    sparse24.sparsify(expected, method, data=unpadded, sequential=sequential, policy="any", progress=False)
    report = sparse24.sparsify(model, method, data=padded, sequential=sequential, policy="any", progress=False)
    convs = [layer.name for layer in report.sparse_layers if layer.module_type == "Conv1d"]
    assert len(convs) == 2, report.sparse_layers  # the feature encoder's second and third (the first has one input channel)
    assert "the input statistics leave out padding: 30 of 114 frames (attention_mask == 0); the convolutions' windows over padded samples too" in report.notes
    _same_masks_and_weights(model, expected)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # the kernel of 4 pads unevenly: checked on purpose
def test_speech_padding_only_for_right_padded_audio_batches() -> None:
    from sparse24.axes import conv1d_output_length
    from sparse24.calibrate import Padding

    padding = Padding(_speech_model("wav2vec2"))
    values, mask = torch.zeros(2, 400), torch.tensor([[1] * 400, [1] * 250 + [0] * 150])
    padding.batch({"input_values": values, "attention_mask": mask})
    frames, conv = torch.randn(2, 19, 32), nn.Conv1d(16, 16, 3, stride=2)
    kept = padding.rows(frames)  # 400 samples -> 79 -> 39 -> 19 frames; 250 -> 49 -> 24 -> 11
    assert kept.shape == (19 + 11, 32) and torch.equal(kept[19:], frames[1, :11]) and padding.unit == "frames"
    keep = padding.windows_kept(conv, torch.randn(2, 16, 79))  # the second convolution's input: 39 outputs, 24 real
    assert keep is not None and torch.equal(keep.view(2, 39).sum(1), torch.tensor([39, 24]))
    pointwise = padding.windows_kept(nn.Conv1d(32, 64, 1), frames.transpose(1, 2))  # over the frames (a Conformer's convolution module)
    assert pointwise is not None and torch.equal(pointwise.view(2, 19).sum(1), torch.tensor([19, 11]))
    assert padding.windows_kept(conv, torch.randn(2, 16, 80)) is None and padding.windows_kept(nn.Conv2d(16, 16, 3), torch.randn(2, 16, 79, 3)) is None
    for batch in (
        {"input_values": values, "attention_mask": mask.flip(1)},  # left padding: not the frames the model masks
        {"input_values": values},  # no mask
        {"input_values": values, "attention_mask": mask, "pixel_values": torch.zeros(2, 3)},  # another input
    ):
        padding.batch(batch)
        assert padding.rows(frames) is frames and padding.windows_kept(conv, torch.randn(2, 16, 79)) is None, batch
    for other in (nn.Conv1d(2, 2, 5, stride=3, padding=2, dilation=2), nn.Conv1d(2, 2, 4, padding="same"), nn.Conv1d(2, 2, 4, padding="valid")):
        for length in (1, 7, 8, 30):  # the positions the convolution gives for an input of that length (none: shorter than its window)
            try:
                positions = other(torch.zeros(1, 2, length)).shape[-1]
            except RuntimeError:
                positions = 0
            assert int(conv1d_output_length(other, torch.tensor(length))) == positions, (other, length)
    configured = nn.Linear(4, 4)  # a config of those kernels, but no model that derives its frames by them
    configured.config = type("Config", (), {"conv_kernel": (10, 3, 3), "conv_stride": (5, 2, 2)})()
    for model in (nn.Linear(4, 4), configured):  # no feature encoder: an audio batch's mask is not read
        other = Padding(model)
        other.batch({"input_values": values, "attention_mask": mask})
        assert other.rows(frames) is frames and other.windows_kept(conv, torch.randn(2, 16, 79)) is None


def test_padding_rows_only_where_they_are_the_masks_tokens() -> None:
    from sparse24.calibrate import Padding

    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    text = {"input_ids": torch.zeros(2, 3, dtype=torch.long), "attention_mask": mask}
    x = torch.arange(2 * 3 * 4.0).reshape(2, 3, 4)
    padding = Padding(nn.Linear(4, 4))
    padding.batch(text)
    assert torch.equal(padding.rows(x), x[mask.bool()])
    assert torch.equal(padding.rows(x.reshape(6, 4)), x[mask.bool()])  # flattened [batch * length, d] (an MoE block's shared expert)
    time_first = x.transpose(0, 1)  # [length, batch, d]: XLNet's, FSMT's layers
    assert torch.equal(padding.rows(time_first), time_first[mask.bool().T]) and padding.rows(time_first).shape == (3, 4)
    for other in (x[:, :2], x.reshape(6, 4)[:5], x.reshape(1, 6, 4), time_first[:2]):  # other shapes: every row
        assert padding.rows(other) is other
    assert (padding.left_out, padding.seen) == (3, 6)  # counted once per batch
    for batch in (
        {**text, "pixel_values": torch.zeros(2, 3, 8, 8)},  # another input, and no text tower (no input embeddings)
        {**text, "decoder_input_ids": torch.zeros(2, 3, dtype=torch.long)},
        {"input_ids": torch.zeros(3, 3, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 0]] * 3)},  # batch == length
        {"input_ids": torch.zeros(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3)},  # no padding
        {"input_ids": torch.zeros(2, 4, dtype=torch.long), "attention_mask": mask},  # not the tokens' mask
        {"input_ids": torch.zeros(2, 3, dtype=torch.long), "attention_mask": mask * 2.0},  # not 0/1
        (torch.zeros(2, 3, dtype=torch.long), mask),  # not a mapping
    ):
        padding.batch(batch)
        assert padding.rows(x) is x, batch
    encoder_decoder = nn.Linear(4, 4)
    encoder_decoder.config = type("Config", (), {"is_encoder_decoder": True})()
    padding = Padding(encoder_decoder)
    padding.batch(text)
    assert padding.rows(x) is x


class _ReadsItsWeight(nn.Module):
    """Uses ``proj.weight`` without calling ``proj`` on one path (like a fused kernel path), calls it on the other."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.proj, self.out, self.fused = nn.Linear(16, 16), nn.Linear(16, 8), fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.proj.weight.t() + self.proj.bias if self.fused else self.proj(x)
        return self.out(torch.relu(h))


def test_a_layer_whose_weight_is_used_without_calling_it_has_no_statistics() -> None:
    """A parent that computes with a layer's weight itself (``x @ proj.weight.t()``, as fused kernels are handed
    weights) leaves that layer without input statistics: wanda/sparsegpt leave it dense with the reason; where the
    code also calls the layer on another path, one forward of the first batch tells, and where that cannot run
    (a one-pass iterator) the calibration's error says why and what to exclude."""
    fused = nn.Sequential(_ReadsItsWeight(fused=True))
    report = sparse24.sparsify(copy.deepcopy(fused), "wanda", data=[torch.randn(4, 16)], policy="any", progress=False)
    assert [layer.name for layer in report.sparse_layers] == ["0.out.weight"]
    assert report.layers[0].reason == (
        "_ReadsItsWeight uses proj.weight without calling proj in this forward (the first calibration batch): "
        "no input statistics for wanda (magnitude or taylor can prune it)"
    )
    report = sparse24.sparsify(nn.Sequential(_ReadsItsWeight(fused=False)), "wanda", data=[torch.randn(4, 16)], policy="any", progress=False)
    assert len(report.sparse_layers) == 2  # the path that calls proj: calibrated as usual
    with pytest.raises(sparse24.Sparse24Error, match=r"never ran 0\.proj\.weight \(_ReadsItsWeight uses proj\.weight without calling proj here\).*exclude='\*\.proj'"):
        sparse24.sparsify(fused, "wanda", data=iter([torch.randn(4, 16)]), policy="any", progress=False)
    report = sparse24.sparsify(fused, "wanda", data=iter([torch.randn(4, 16)]), policy="any", exclude="*.proj", progress=False)
    assert [layer.name for layer in report.sparse_layers] == ["0.out.weight"]


def test_a_layer_handed_to_a_helper_that_reads_its_weight_is_left_dense_with_the_reason() -> None:
    """The helper's read of the layer's weight is found through the argument it was passed as: Wanda and SparseGPT
    leave the layer dense with the reason (they raised before: the calibration forward never ran it)."""
    for method in ("wanda", "sparsegpt"):
        report = sparse24.sparsify(nn.Sequential(LooksUpTable(16)), method, data=[torch.randn(4, 16)], policy="any", progress=False)
        assert [layer.name for layer in report.sparse_layers] == ["0.proj.weight"]
        assert report.layers[0].reason == f"LooksUpTable uses table.weight without calling table: no input statistics for {method} (magnitude or taylor can prune it)"


class _TwoTowers(nn.Module):
    """A text tower and an image tower of the same layers; its forward on text runs the text tower only."""

    def __init__(self) -> None:
        super().__init__()
        self.text, self.image = (nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16)) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.text(x)


def test_the_layers_the_calibration_never_ran_are_named_with_the_exclude_that_leaves_them_out() -> None:
    """The error's ``exclude`` names every layer the forward never ran, an index in a list as ``*``, and none that ran
    (``*.0`` would also leave the text tower's first layer out); with it, the rest is calibrated."""
    data = [torch.randn(4, 16)]
    with pytest.raises(sparse24.Sparse24Error, match=r"never ran image\.0\.weight, image\.2\.weight: .*exclude='image\.\*'"):
        sparse24.sparsify(_TwoTowers(), "wanda", data=data, policy="any", progress=False)
    report = sparse24.sparsify(_TwoTowers(), "wanda", data=data, policy="any", exclude="image.*", progress=False)
    assert [layer.name for layer in report.sparse_layers] == ["text.0.weight", "text.2.weight"]


class _HandsItOver(nn.Module):
    """Hands ``proj`` to a helper that uses its weight on one path (a fused kernel's) and calls it on the other."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.proj, self.out, self.fused = nn.Linear(16, 16), nn.Linear(16, 8), fused

    def _apply(self, x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
        return x @ layer.weight.t() + layer.bias if self.fused else layer(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self._apply(x, self.proj)))


def test_a_helper_that_may_call_the_layer_it_is_handed_is_settled_by_the_first_batch() -> None:
    """Where the helper both calls the layer and uses its weight, one forward of the first batch tells which: the
    path that calls it is calibrated as usual, the other leaves it dense with the reason."""
    report = sparse24.sparsify(nn.Sequential(_HandsItOver(fused=False)), "wanda", data=[torch.randn(4, 16)], policy="any", progress=False)
    assert len(report.sparse_layers) == 2
    report = sparse24.sparsify(nn.Sequential(_HandsItOver(fused=True)), "wanda", data=[torch.randn(4, 16)], policy="any", progress=False)
    assert [layer.name for layer in report.sparse_layers] == ["0.out.weight"]
    assert report.layers[0].reason.startswith("_HandsItOver uses proj.weight without calling proj in this forward (the first calibration batch)")


def _falcon_mamba() -> nn.Module:
    from transformers import FalconMambaConfig, FalconMambaForCausalLM

    config = FalconMambaConfig(vocab_size=96, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4, time_step_rank=16, use_mambapy=False)
    return FalconMambaForCausalLM(config).eval()


@pytest.mark.parametrize("kind", ["norms", "hessian"])
def test_mambas_dt_proj_is_calibrated_on_the_time_step_its_weight_multiplies(kind: str) -> None:
    """Mamba-family mixers compute ``dt_proj.weight @ time_step.transpose(1, 2)`` instead of calling ``dt_proj``
    (Wanda and SparseGPT once left it dense: no inputs). Its statistics are those of the input it has when called
    as a module (Falcon-Mamba's code calls it for quantized models), padded tokens left out."""
    from sparse24.calibrate import gather

    torch.manual_seed(0)
    model = _falcon_mamba()
    reference = copy.deepcopy(model)
    reference.config._is_quantized = True  # the mixers' other path: (self.dt_proj(time_step) - self.dt_proj.bias)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :5] = 0
    data = [{"input_ids": torch.randint(0, 96, (2, 12)), "attention_mask": mask}, {"input_ids": torch.randint(0, 96, (2, 12))}]
    with torch.no_grad():
        assert torch.allclose(model(**data[0]).logits, reference(**data[0]).logits, atol=1e-5)
    names = [f"backbone.layers.{i}.mixer.dt_proj.weight" for i in range(2)]
    stats, counts = [], []
    for m in (model, reference):
        weights = [w for w in gemm_weights(m) if w.name in names]
        found, seen = gather(m, weights, kind, data, progress=False)
        stats.append([found[id(w.param)] for w in weights])
        counts.append([seen[id(w.param)] for w in weights])
    assert counts[0] == counts[1] == [43, 43]  # 48 tokens, 5 of them padding
    for got, expected in zip(*stats):
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5) and got.abs().sum() > 0


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_every_layer_of_a_mamba_is_pruned_by_the_data_aware_methods(method: str) -> None:
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    mamba = MambaForCausalLM(MambaConfig(vocab_size=96, hidden_size=64, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4, time_step_rank=8))
    data = [torch.randint(0, 96, (2, 16)) for _ in range(2)]
    for model in (mamba, _falcon_mamba()):
        for sequential in (False, True):
            report = sparse24.sparsify(copy.deepcopy(model), method, data=data, sequential=sequential, policy="any", progress=False)
            expected = {f"backbone.layers.{i}.mixer.{p}.weight" for i in range(2) for p in ("in_proj", "x_proj", "dt_proj", "out_proj")}
            assert {layer.name for layer in report.sparse_layers} == expected, (type(model).__name__, sequential)


def test_reading_only_a_weights_dtype_is_not_computing_with_it() -> None:
    """T5's feed-forward casts its hidden states to ``wo.weight.dtype`` before calling ``wo``: for the calibration
    that is no use of the weight (once it took one forward of the first batch to tell, and an expert module no token
    reached, SwitchTransformers' with the same code, was left dense for it); the runtime, which replaces the Linear,
    still counts it; Mamba's ``dt_proj.weight @ x`` counts for both."""
    from transformers import MambaConfig, MambaForCausalLM, T5Config, T5ForConditionalGeneration

    from sparse24.source import weight_reader

    t5 = T5ForConditionalGeneration(T5Config(vocab_size=96, d_model=32, d_ff=64, d_kv=8, num_layers=1, num_heads=4))
    wo = "encoder.block.0.layer.1.DenseReluDense.wo"
    assert weight_reader(t5, wo, metadata=False) is None
    assert weight_reader(t5, wo) == (t5.get_submodule(wo.rpartition(".")[0]), "wo")
    mamba = MambaForCausalLM(MambaConfig(vocab_size=96, hidden_size=32, state_size=8, num_hidden_layers=1, expand=2, conv_kernel=4, time_step_rank=8))
    assert weight_reader(mamba, "backbone.layers.0.mixer.dt_proj", metadata=False) is not None


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "taylor"])
def test_calibration_builds_no_kv_cache_and_restores_use_cache(method: str) -> None:
    """Calibration runs without a KV cache (config.use_cache off, as it was after): RWKV's cached state is updated in
    place, which broke Taylor's backward in eval mode; and an LLM's cache is memory for nothing."""
    from transformers import GPT2Config, GPT2LMHeadModel, RwkvConfig, RwkvForCausalLM

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=32))
    data = [{"input_ids": ids, "labels": ids} for ids in (torch.randint(0, 96, (2, 16)) for _ in range(2))]
    seen = []
    model.transformer.register_forward_pre_hook(lambda module, args: seen.append(module.config.use_cache))
    sparse24.sparsify(model, method, data=data, progress=False)
    assert seen and not any(seen) and model.config.use_cache is True
    rwkv = RwkvForCausalLM(RwkvConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, attention_hidden_size=64, intermediate_size=128, context_length=32))
    report = sparse24.sparsify(rwkv, method, data=data, progress=False)
    assert len(report.sparse_layers) == 15 and rwkv.config.use_cache is True


def test_sequential_finds_the_layers_of_a_hybrid_model() -> None:
    """Jamba's layers are Mamba and attention layers in one ModuleList: sequential=True takes that list."""
    from transformers import JambaConfig, JambaForCausalLM

    torch.manual_seed(0)
    config = JambaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        num_experts=2, num_experts_per_tok=1, expert_layer_period=2, expert_layer_offset=1, attn_layer_period=2, attn_layer_offset=1,
        mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=8, use_mamba_kernels=False,
    )
    model = JambaForCausalLM(config)
    assert {type(layer).__name__ for layer in model.model.layers} == {"JambaMambaDecoderLayer", "JambaAttentionDecoderLayer"}
    assert [name for name, _ in find_blocks(model, True)] == ["model.layers.0", "model.layers.1"]
    data = [torch.randint(0, 96, (2, 16)) for _ in range(2)]
    report = sparse24.sparsify(model, "sparsegpt", data=data, sequential=True, policy="any", progress=False)
    assert len(report.sparse_layers) == 14  # dt_proj too: the mixer multiplies by its weight
    assert {"model.layers.1.feed_forward.experts.gate_up_proj", "model.layers.1.feed_forward.experts.down_proj", "model.layers.0.mamba.dt_proj.weight"} <= {
        l.name for l in report.sparse_layers
    }
    sparse24.verify(model)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_a_layer_whose_inputs_are_always_zero_gets_magnitudes_mask_and_says_why(method: str, caplog) -> None:
    """Dead activations (a ReLU that never fires, as in some random initializations) leave a layer without input
    statistics: magnitude's mask, and the note says the inputs were zero, not that no expert token was routed."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # the ReLU never fires: model[2] reads zeros
    expected = model[2].weight.detach().clone()
    prune_(expected, 1)
    with caplog.at_level(logging.WARNING, logger="sparse24"):
        report = sparse24.sparsify(model, method, data=[torch.randn(4, 16) for _ in range(2)], policy="any", progress=False)
    assert torch.equal(model[2].weight.detach(), expected)  # magnitude's mask, no update
    assert "some layers' inputs were zero on every calibration batch (dead activations: a random initialization, or a layer that never fires): magnitude's mask there: 2.weight" in report.notes
    assert not any("experts no token was routed to" in note for note in report.notes)
    assert "2.weight: its inputs were zero on every calibration batch (1 of 1 parts): magnitude's mask" in caplog.text
