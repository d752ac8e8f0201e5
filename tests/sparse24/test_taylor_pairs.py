"""Taylor with ``pairs=True``: each group of 4 prunes the pair whose joint first-order change has the least energy.

The reference here never uses the GEMM view: for every group (written out with the weight's own
indices, so the axis rule is checked too) and each of its 6 pairs, the cost is
``sum_n (g_n . d)^2`` where ``d`` zeroes that pair (``d = -w`` there, 0 elsewhere) and ``g_n``
is one sample's gradient -- the loss change of pruning the pair, to first order, squared.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

import sparse24
from sparse24.batch import split_samples
from sparse24.criteria import taylor
from sparse24.criteria._pairs import PairCosts
from sparse24.axes import gemm_weights
from sparse24.mask import is_two_four


def _sum_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch).sum()


def _per_sample_grads(model: nn.Module, param: nn.Parameter, batch: torch.Tensor, loss_fn=_sum_loss) -> list[torch.Tensor]:
    return [torch.autograd.grad(loss_fn(model, sample), [param])[0] for sample in split_samples(batch)]


def _reference_keep(weight: torch.Tensor, grads: list[torch.Tensor], groups: list[list[tuple[int, ...]]]) -> torch.Tensor:
    """The keep mask: in each group (4 index tuples of ``weight``), the pair of least ``sum_n (g_n . d)^2`` pruned (first on ties)."""
    keep = torch.ones(weight.shape, dtype=torch.bool)
    for group in groups:
        costs = []
        for j, k in itertools.combinations(range(4), 2):
            costs.append(sum(float(g[group[j]] * weight[group[j]] + g[group[k]] * weight[group[k]]) ** 2 for g in grads))
        j, k = list(itertools.combinations(range(4), 2))[min(range(6), key=costs.__getitem__)]
        keep[group[j]] = keep[group[k]] = False
    return keep


def test_pairs_prune_the_pair_whose_changes_cancel() -> None:
    """Two perfectly correlated inputs with opposite weights: per-weight scores keep them, their pair costs nothing."""
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0, 1.0, 1.0]]))
    torch.manual_seed(0)
    shared = 2 * torch.randn(16, 1)
    data = [torch.cat([shared, shared, torch.randn(16, 2)], dim=1)]  # x0 = x1, large; x2, x3 small
    per_weight, by_pairs = copy.deepcopy(layer), copy.deepcopy(layer)
    sparse24.sparsify(per_weight, "taylor", data=data, loss_fn=_sum_loss, policy="any", squared=True, per_sample=True, progress=False)
    sparse24.sparsify(by_pairs, "taylor", data=data, loss_fn=_sum_loss, policy="any", squared=True, per_sample=True, pairs=True, progress=False)
    assert per_weight.weight.tolist() == [[1.0, -1.0, 0.0, 0.0]]
    assert by_pairs.weight.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert torch.allclose(by_pairs(data[0]), layer(data[0]))  # w0 x0 + w1 x1 = 0 on this data: the pruned pair changed nothing


def _linear_groups(shape: torch.Size) -> list[list[tuple[int, ...]]]:
    """[out, in]: 4 consecutive inputs of one output."""
    rows, cols = shape
    return [[(r, c + i) for i in range(4)] for r in range(rows) for c in range(0, cols, 4)]


def _conv_groups(shape: torch.Size) -> list[list[tuple[int, ...]]]:
    """[K, C, R, S]: 4 consecutive input channels at one kernel position."""
    k, c, r, s = shape
    return [[(o, ch + i, y, x) for i in range(4)] for o in range(k) for y in range(r) for x in range(s) for ch in range(0, c, 4)]


def _conv1d_groups(shape: torch.Size) -> list[list[tuple[int, ...]]]:
    """transformers Conv1D, weight [in, out]: 4 consecutive inputs of one output."""
    d_in, d_out = shape
    return [[(c + i, o) for i in range(4)] for o in range(d_out) for c in range(0, d_in, 4)]


def _conv1d_layer() -> nn.Module:
    from transformers.pytorch_utils import Conv1D

    return Conv1D(6, 16)


CASES = {
    "Linear": (lambda: nn.Linear(16, 6), lambda: torch.randn(3, 5, 16), _linear_groups),
    "Conv2d": (lambda: nn.Conv2d(8, 3, 3, padding=1), lambda: torch.randn(3, 8, 5, 5), _conv_groups),
    "Conv1D": (_conv1d_layer, lambda: torch.randn(3, 5, 16), _conv1d_groups),
}


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("labels", ["data", "model"])
def test_pairs_match_the_joint_first_order_change_along_the_reduction_axis(kind: str, labels: str) -> None:
    make, inputs, groups_of = CASES[kind]
    torch.manual_seed(1)
    layer = make()
    mixing = torch.randn(16 if kind != "Conv2d" else 8, 16 if kind != "Conv2d" else 8)  # correlated inputs: cross terms matter
    batches = []
    for _ in range(3):
        x = inputs()
        batches.append(x @ mixing if kind != "Conv2d" else torch.einsum("nchw,cd->ndhw", x, mixing))
    if labels == "model":  # the Fisher draws need the logits; compare with the same draws through the plain loss
        options = {"labels": "model", "logits_fn": lambda m, b: m(b).reshape(b.shape[0], -1), "seed": 3}
    else:
        options = {}
    pruned = copy.deepcopy(layer)
    report = sparse24.sparsify(pruned, "taylor", data=batches, loss_fn=None if options else _sum_loss, policy="any", squared=True, per_sample=True, pairs=True, progress=False, **options)
    (name,) = [layer_report.name for layer_report in report.sparse_layers]
    sparse24.verify(pruned)
    grads = []
    if labels == "model":
        generator = torch.Generator().manual_seed(3)
        for batch in batches:
            for sample in split_samples(batch):
                z = layer(sample).reshape(1, -1).float()
                p = torch.softmax(z.detach(), -1)
                u = p.sqrt() * torch.randn(p.shape, generator=generator)
                u -= p * u.sum(1, keepdim=True)
                grads.append(torch.autograd.grad((z * u).sum(), [layer.weight])[0])
    else:
        for batch in batches:
            grads += _per_sample_grads(layer, layer.weight, batch)
    weight = layer.weight.detach()
    expected = _reference_keep(weight, grads, groups_of(weight.shape))
    got = pruned.weight.detach() != 0
    assert torch.equal(got, expected)
    assert torch.equal(pruned.weight.detach(), torch.where(expected, weight, torch.zeros_like(weight)))
    assert not torch.signbit(pruned.weight.detach()[~expected]).any()  # pruned elements are +0.0
    axis = 0 if kind == "Conv1D" else 1
    assert is_two_four(pruned.weight.detach(), dim=axis)


def test_pairs_differ_from_per_weight_scores_on_correlated_inputs_and_report_kept_importance() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 8))
    base = torch.randn(64, 4)
    data = list((base @ torch.randn(4, 32) + 0.1 * torch.randn(64, 32)).split(8))  # 32 features from 4: strongly correlated
    per_weight, by_pairs = copy.deepcopy(model), copy.deepcopy(model)
    sparse24.sparsify(per_weight, "taylor", data=data, loss_fn=_sum_loss, policy="any", squared=True, per_sample=True, progress=False)
    report = sparse24.sparsify(by_pairs, "taylor", data=data, loss_fn=_sum_loss, policy="any", squared=True, per_sample=True, pairs=True, progress=False)
    assert not torch.equal(per_weight[0].weight != 0, by_pairs[0].weight != 0)
    for layer in report.sparse_layers:  # the per-weight (diagonal) importance the chosen patterns keep
        assert 0.0 < layer.importance_kept <= 1.0
    (scores,) = taylor.score(model, [gemm_weights(model)[0]], data=data, loss_fn=_sum_loss, squared=True, per_sample=True, pairs=True, progress=False)
    assert isinstance(scores, PairCosts) and scores.cross.shape == (32, 8, 6)


def test_pairs_with_permutation_and_sequential_blocks() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))
    data = [torch.randn(8, 32) for _ in range(3)]
    permuted = copy.deepcopy(model)
    report = sparse24.sparsify(permuted, "taylor", data=data, loss_fn=_sum_loss, squared=True, pairs=True, permute=True, example_inputs=(data[0],), progress=False)
    sparse24.verify(permuted)
    assert any(note.startswith("channel permutation") for note in report.notes)
    sequential = copy.deepcopy(model)
    sparse24.sparsify(sequential, "taylor", data=data, loss_fn=_sum_loss, squared=True, pairs=True, sequential=["0", "2"], progress=False)
    sparse24.verify(sequential)


def test_pairs_options_are_checked_and_a_failure_leaves_the_model() -> None:
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8))
    before = copy.deepcopy(model.state_dict())
    data = [torch.randn(4, 16)]
    with pytest.raises(ValueError, match="pairs=True .* needs squared=True"):
        sparse24.sparsify(model, "taylor", data=data, loss_fn=_sum_loss, pairs=True, progress=False)
    # (inputs of 1e30 gave infinite squared scores here before; summed in units of a power of two they are finite)
    with pytest.raises(sparse24.Sparse24Error, match="calibration batch 1: the loss is nan"):
        sparse24.sparsify(model, "taylor", data=[torch.full((4, 16), 1e30), torch.full((4, 16), float("nan"))], loss_fn=_sum_loss, squared=True, pairs=True, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not sparse24.masked_weights(model)
