"""Parity inputs: integer inputs are drawn over their real range, and parity fails where the graph is wrong."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from export_models import MaskedSum, TokenModel
from onnx import numpy_helper

import sparse24
from sparse24.cli import main
from sparse24.trt_export import export_onnx
from sparse24.trt_export.export import _check_parity
from sparse24.trt_export.inspection import embedding_ranges
from sparse24.trt_export.parity import fresh_inputs, integer_ranges

IDS = torch.zeros(2, 12, dtype=torch.long)  # what `--input-shape int64:2x12` used to feed: token 0 only


def test_integer_ranges_in_order_given_inferred_example() -> None:
    names, examples = ["x", "ids", "mask", "flag"], [torch.randn(2, 3), IDS, torch.tensor([[0, 1]]), torch.tensor([True])]
    ranges, notes = integer_ranges(names, examples, {"mask": (0, 2)}, {"ids": (100, "embed.weight")})
    assert ranges == [None, (0, 100), (0, 2), None]
    assert notes == [
        "integer input ids: values drawn from [0, 100), the rows of the embedding table embed.weight it indexes",
        "integer input mask: values drawn from [0, 2) as given",
    ]
    ranges, notes = integer_ranges(names, examples, {1: (5, 9)})  # by position; mask from its own example
    assert ranges[1:3] == [(5, 9), (0, 2)] and "the example's own range [0, 2)" in notes[1]


def test_a_constant_integer_example_without_a_range_is_refused() -> None:
    with pytest.raises(sparse24.Sparse24Error, match=r"integer input ids is constant \(0\) in the example .* --input-range ids=LOW:HIGH"):
        integer_ranges(["ids"], [IDS])


@pytest.mark.parametrize(
    ("given", "message"),
    [({"idz": (0, 5)}, r"input range for 'idz': the graph's inputs are ids"), ({3: (0, 5)}, "positions 0..0"), ({"ids": (5, 5)}, r"empty range \[5, 5\)"), ({"ids": 7}, "a range is")],
)
def test_bad_ranges(given, message) -> None:
    with pytest.raises(ValueError, match=message):
        integer_ranges(["ids"], [IDS], given)


def test_fresh_inputs_cover_the_range() -> None:
    generator = torch.Generator().manual_seed(0)
    (ids,) = fresh_inputs([IDS], 4, generator, [(0, 100)])
    assert ids.shape == (4, 12) and ids.dtype == torch.long and 0 <= int(ids.min()) and int(ids.max()) < 100
    assert len(ids.unique()) > 20
    with pytest.raises(ValueError, match="integer input 0 has no value range"):
        fresh_inputs([IDS], None, generator)


def test_embedding_ranges_from_real_exports(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    path = tmp_path / "tokens.onnx"
    with torch.no_grad():
        torch.onnx.export(TokenModel().eval(), (IDS,), dynamo=True, verbose=False).save(path)
    assert embedding_ranges(onnx.load(str(path))) == {"ids": (100, "embed.weight")}
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
    bert = transformers.BertModel(config, add_pooling_layer=False).eval()
    ones = torch.ones(2, 8, dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(bert, (IDS[:, :8], ones, 0 * ones), dynamo=True, verbose=False).save(tmp_path / "bert.onnx")
    ranges = embedding_ranges(onnx.load(str(tmp_path / "bert.onnx")))
    assert ranges == {"input_ids": (64, "embeddings.word_embeddings.weight"), "token_type_ids": (2, "embeddings.token_type_embeddings.weight")}


def test_parity_on_token_ids_fails_when_any_id_but_0_is_wrong(tmp_path) -> None:
    """The hole: all-zero ids checked token 0 only. Break every embedding row but row 0 in the ONNX."""
    model = TokenModel().eval()
    report = export_onnx(model, IDS, tmp_path / "tokens.onnx")
    assert report.parity.passed and "[0, 100), the rows of the embedding table embed.weight" in str(report.parity)
    proto = onnx.load(report.path)
    table = next(t for t in proto.graph.initializer if t.name == "embed.weight")
    values = numpy_helper.to_array(table).copy()
    values[1:] += 0.5
    table.CopyFrom(numpy_helper.from_array(values, "embed.weight"))
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    parity = _check_parity(broken, embedding_ranges(proto), model, (IDS,), "fp32", True, None, 1e-4, 0, None)
    assert not parity.passed and not any(output.passed for output in parity.outputs)


def test_export_refuses_a_constant_integer_input_it_cannot_range(tmp_path, capsys) -> None:
    inputs = (torch.randn(2, 8, 16), torch.zeros(2, 8, dtype=torch.long))
    with pytest.raises(sparse24.Sparse24Error, match=r"integer input mask is constant \(0\)"):
        export_onnx(MaskedSum(), inputs, tmp_path / "masked.onnx")
    assert list(tmp_path.iterdir()) == []
    report = export_onnx(MaskedSum(), inputs, tmp_path / "masked.onnx", input_ranges={"mask": (0, 2)})
    assert report.parity.passed and report.parity.notes == ("integer input mask: values drawn from [0, 2) as given",)


MODELS = str(Path(__file__).with_name("export_models.py"))


def _one_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


def test_cli_ranges_in_the_spec_and_by_name(tmp_path, capsys) -> None:
    out = tmp_path / "masked.onnx"
    argv = ["export", f"{MODELS}:MaskedSum", "--input-shape", "2x8x16", "--input-shape", "int64:2x8", "--out", str(out)]
    assert main(argv) == 2
    _one_line(capsys.readouterr().err, "integer input mask is constant (0)", "--input-range mask=LOW:HIGH")
    assert not out.exists()
    assert main([*argv, "--input-range", "mask=0:2"]) == 0
    assert "integer input mask: values drawn from [0, 2) as given" in capsys.readouterr().out
    argv[5] = "int64:2x8:0:2"  # the range in the spec
    assert main(argv) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--input-shape", "int64:2x8:5:5"], ["empty range [5, 5)"]),
        (["--input-shape", "2x8:0:5"], ["a value range is for integer inputs"]),
        (["--input-shape", "int65:2x8"], ["dtype must be one of"]),
        (["--input-shape", "int64:2x8:0"], ["expected [DTYPE:]D0xD1x...[:LOW:HIGH]"]),
        (["--input-shape", "int64:2x8", "--input-range", "mask"], ["--input-range mask: expected NAME=LOW:HIGH"]),
        (["--input-shape", "int64:2x8", "--input-range", "mask=0:x"], ["--input-range mask=0:x"]),
        (["--input-shape", "int64:2x8", "--input-range", "mask=0:2", "--input-range", "maks=0:2"], ["'maks'", "the graph's inputs are x, mask"]),
    ],
)
def test_cli_bad_ranges_are_one_line(tmp_path, capsys, extra, words) -> None:
    out = tmp_path / "masked.onnx"
    assert main(["export", f"{MODELS}:MaskedSum", "--input-shape", "2x8x16", *extra, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, *words)
    assert not out.exists()


def test_integer_ranges_need_one_name_per_input() -> None:
    with pytest.raises(ValueError, match="2 graph inputs for 1 example inputs"):
        integer_ranges(["ids", "mask"], [IDS])


def test_compare_fails_on_a_difference_a_nan_a_shape_and_a_count() -> None:
    from sparse24.trt_export.parity import ParityReport, compare

    reference = [torch.tensor([1.0, -2.0, 4.0])]
    (close,) = compare(["y"], [reference[0] + 1e-6], reference, 1e-4)
    assert close.passed and 0 < close.relative_error < 1e-6
    (off,) = compare(["y"], [reference[0] * 1.01], reference, 1e-4)
    assert not off.passed and off.relative_error == pytest.approx(0.01)
    (nan,) = compare(["y"], [torch.tensor([1.0, float("nan"), 4.0])], reference, 1e-4)
    assert not nan.passed  # a NaN where PyTorch has a number never passes
    report = ParityReport("onnxruntime", "PyTorch", (2,), (close, nan))
    assert not report.passed and report.worst is nan and "FAILED" in str(report)
    assert not ParityReport("onnxruntime", "PyTorch", (2,), ()).passed  # no outputs compared is no pass
    with pytest.raises(ValueError, match=r"output y has shape \[2\], PyTorch gives \[3\]"):
        compare(["y"], [torch.ones(2)], reference, 1e-4)
    with pytest.raises(ValueError, match="2 outputs to compare with 1 reference outputs"):
        compare(["y", "z"], [torch.ones(3), torch.ones(3)], reference, 1e-4)


def test_a_near_zero_reference_passes_only_an_exact_match() -> None:
    from sparse24.trt_export.parity import OutputDiff

    assert OutputDiff("y", (2,), 1e-27, 1e-27, 1e-2).passed is False, "an output below 1e-12 matched with any error used to pass"
    assert OutputDiff("y", (2,), 0.0, 0.0, 1e-2).passed is True  # all zeros on both sides: an exact match
    assert OutputDiff("y", (2,), 1e-6, 1.0, 1e-4).passed is True and OutputDiff("y", (2,), 1e-3, 1.0, 1e-4).passed is False
    assert OutputDiff("y", (2,), float("nan"), 1.0, 1e-2).passed is False
