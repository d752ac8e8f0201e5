"""The one-shot benchmark's evaluation models: the corpus split, metrics, batches, the cache, 2:4 eligibility.

Tiny recipes only (seconds of training); the full models are trained by ``python -m sparse24.bench.oneshot_models``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

import sparse24
from sparse24.bench import oneshot_models as om
from sparse24.bench._common import environment

LM = "gpt2-stdlib"
TINY_LM = om.TINY[LM]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("oneshot-cache")


@pytest.fixture(scope="module")
def tiny_lm(cache) -> torch.nn.Module:
    """The tiny LM, trained once into the module's cache."""
    return om.load(LM, recipe=TINY_LM, directory=cache)


def _fake_stdlib(root, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def test_the_corpus_split_is_by_file_deterministic_and_disjoint() -> None:
    files = om.corpus_files()
    assert files == sorted(files) == om.corpus_files()
    assert not any(part in om._SKIP_DIRS for path in files for part in path.split("/")[:-1])
    corpus = om.stdlib_corpus()
    splits = {split: set(corpus.files[split]) for split in om.SPLITS}
    assert splits["train"].isdisjoint(splits["val"]) and splits["train"].isdisjoint(splits["test"]) and splits["val"].isdisjoint(splits["test"])
    assert set().union(*splits.values()) == set(files)
    assert 0.05 < len(splits["test"]) / len(files) < 0.15 and 0.02 < len(splits["val"]) / len(files) < 0.1
    assert all(om.split_of(path) == split for split, paths in splits.items() for path in paths)
    # each split's bytes are its own files joined by the separator, nothing else
    test_bytes = sum(len((Path(corpus.root) / path).read_bytes()) for path in corpus.files["test"])
    assert len(corpus.data["test"]) == test_bytes + len(corpus.files["test"]) - 1
    assert int((corpus.data["test"] == om.SEPARATOR).sum()) == len(corpus.files["test"]) - 1


def test_the_split_depends_on_the_path_alone_and_the_fingerprint_on_the_content(tmp_path) -> None:
    files = {f"pkg{i % 3}/mod{i}.py": f"x = {i}\n" for i in range(80)}
    files |= {"site-packages/numpy/core.py": "no\n", "test/test_x.py": "no\n", "lib2to3/tests/t.py": "no\n", "notes.txt": "no\n"}
    for root in (tmp_path / "a", tmp_path / "b"):
        _fake_stdlib(root, files)
    (tmp_path / "b" / "pkg0" / "mod0.py").write_text("x = 'changed'\n")
    a, b = om.stdlib_corpus(str(tmp_path / "a")), om.stdlib_corpus(str(tmp_path / "b"))
    assert om.corpus_files(tmp_path / "a") == sorted(path for path in files if path.startswith("pkg"))
    assert a.files == b.files and all(a.files.values())
    assert a.fingerprint != b.fingerprint


def test_an_untrained_lm_has_about_the_vocabulary_as_perplexity_and_training_lowers_it(tiny_lm) -> None:
    before = om.evaluate(LM, om.build(LM, recipe=TINY_LM), split="val", recipe=TINY_LM)
    assert before["metric"] == "perplexity" and before["higher_is_better"] is False
    assert before["tokens"] == TINY_LM.eval_windows * (TINY_LM.context - 1)
    assert 0.8 * om.VOCAB < before["value"] < 1.2 * om.VOCAB
    assert before["bits_per_byte"] == pytest.approx(math.log2(before["value"]))
    after = om.evaluate(LM, tiny_lm, split="val", recipe=TINY_LM)
    assert after["value"] < 0.5 * before["value"]
    unigram = om.baseline(LM, split="val", recipe=TINY_LM)
    assert unigram["tokens"] == before["tokens"] and 10 < unigram["value"] < 60


def test_the_cache_round_trips_and_a_changed_recipe_misses(tiny_lm, cache) -> None:
    path = om.cache_path(LM, recipe=TINY_LM, directory=cache)
    assert path.is_file() and [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no temporary left
    again = om.load(LM, recipe=TINY_LM, directory=cache, train_if_missing=False)
    assert not again.training and next(again.parameters()).dtype == torch.float32
    expected = tiny_lm.state_dict()
    assert again.state_dict().keys() == expected.keys() and all(torch.equal(again.state_dict()[k], v) for k, v in expected.items())
    record = om.info(LM, recipe=TINY_LM, directory=cache)
    assert record["recipe"] == dataclasses.asdict(TINY_LM) and record["code_version"] == om.CODE_VERSION
    assert record["data"] == om.stdlib_corpus().fingerprint and record["steps"] == TINY_LM.steps and record["train_seconds"] > 0
    for changed in (dataclasses.replace(TINY_LM, n_embd=48), dataclasses.replace(TINY_LM, seed=1), dataclasses.replace(TINY_LM, steps=TINY_LM.steps + 1)):
        assert om.cache_path(LM, recipe=changed, directory=cache) != path
        with pytest.raises(FileNotFoundError, match="no cached gpt2-stdlib weights"):
            om.load(LM, recipe=changed, directory=cache, train_if_missing=False)


def test_the_cache_folder_comes_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SPARSE24_BENCH_CACHE", str(tmp_path))
    assert om.cache_dir() == tmp_path and om.cache_path(LM).parent == tmp_path
    monkeypatch.delenv("SPARSE24_BENCH_CACHE")
    assert om.cache_dir() == Path.home() / ".cache" / "sparse24" / "bench"


def test_training_is_deterministic_given_the_seed_whatever_the_callers_threads() -> None:
    recipe = om.TINY["vit-digits"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a, record = om.train("vit-digits", recipe=recipe)
        assert torch.get_num_threads() == 2 and record["threads"] == om.TRAIN_THREADS  # the caller's setting is restored
        torch.set_num_threads(1)
        b, _ = om.train("vit-digits", recipe=recipe)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    state = torch.random.get_rng_state()
    om.build("vit-digits", recipe=recipe)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone


@pytest.mark.parametrize("name", om.NAMES)
def test_batches_are_deterministic_training_data_the_loss_takes(name) -> None:
    recipe = om.TINY[name]
    first = om.calibration_batches(name, 3, seed=0, recipe=recipe)
    again = om.calibration_batches(name, 3, seed=0, recipe=recipe)
    other = om.calibration_batches(name, 3, seed=1, recipe=recipe)
    flat = lambda batches: torch.cat([t.flatten().float() for b in batches for t in (b if isinstance(b, tuple) else (b,))])  # noqa: E731
    assert len(first) == 3 and torch.equal(flat(first), flat(again)) and not torch.equal(flat(first), flat(other))
    model = om.build(name, recipe=recipe)
    loss = om.loss_fn(name)(model, first[0])
    assert loss.ndim == 0 and loss.requires_grad and torch.isfinite(loss)
    steps = om.finetune_batches(name, 5, seed=0, recipe=recipe)
    assert len(steps) == 5
    if name in (LM, "moe-stdlib"):
        assert first[0].shape == (4, recipe.context) and first[0].dtype == torch.int64
        assert steps[0].shape == (recipe.batch_size, recipe.context)
        train = bytes(om._train_bytes(recipe).numpy())
        assert all(train.find(bytes(window.to(torch.uint8).numpy())) >= 0 for window in first[0])  # windows of the train files
    else:
        images, labels = first[0]
        assert images.shape == (4, 1, 8, 8) and labels.shape == (4,) and steps[0][0].shape == (64, 1, 8, 8)


@pytest.mark.parametrize("name", ["vit-digits", "digits-resnet", "digits-transformer"])
def test_classifiers_report_accuracy_on_the_held_out_split(name) -> None:
    model = om.build(name, recipe=om.TINY[name]).train()
    result = om.evaluate(name, model, recipe=om.TINY[name])
    assert result["metric"] == "accuracy" and result["higher_is_better"] is True and result["split"] == "test"
    assert result["examples"] == 359 and 0 <= result["value"] <= 100
    assert model.training  # the mode is restored
    x, y = om._digits_xy("test")
    with torch.no_grad():
        logits = model.eval()(pixel_values=x).logits if name == "vit-digits" else model.eval()(x)
    assert result["cross_entropy"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-5)
    assert om.baseline(name)["value"] < 15


@pytest.mark.parametrize("name", om.NAMES)
def test_every_model_has_2_4_layers_under_the_tensorrt_policy(name) -> None:
    model = om.build(name)  # the full recipe's shapes
    report = sparse24.sparsify(model, "magnitude", progress=False)
    sparse24.verify(model)
    sparse = {layer.name for layer in report.sparse_layers}
    assert sparse
    if name == LM:
        recipe = om.RECIPES[LM]
        assert {layer.module_type for layer in report.sparse_layers} == {"Conv1D"} and len(sparse) == 4 * recipe.n_layer
        assert [layer.name for layer in report.layers if not layer.sparse] == ["lm_head.weight"]  # tied to the embedding
    if name == "vit-digits":
        assert len(sparse) == 6 * om.RECIPES[name].layers  # query, key, value, attention output, MLP in and out
    if name == "moe-stdlib":  # q, k, v, o and the fused experts' gate_up_proj and down_proj per layer; lm_head
        assert len(sparse) == 6 * om.RECIPES[name].n_layer + 1
        assert sum(layer.module_type == "Qwen3MoeExperts" for layer in report.sparse_layers) == 2 * om.RECIPES[name].n_layer


def test_bad_names_recipes_and_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown model 'gpt3'"):
        om.load("gpt3")
    with pytest.raises(ValueError, match="takes a GPT2Recipe"):
        om.build(LM, recipe=om.TINY["vit-digits"])
    with pytest.raises(ValueError, match="'resnet' model"):
        om.build("digits-resnet", recipe=om.TINY["digits-transformer"])
    with pytest.raises(ValueError, match="n must be a positive int"):
        om.calibration_batches(LM, 0, seed=0)
    with pytest.raises(ValueError, match="split must be"):
        om.evaluate("digits-resnet", om.build("digits-resnet"), split="train")


def test_the_table_is_generated_from_the_results(tiny_lm, cache) -> None:
    names = (LM, "vit-digits")
    results = {"command": "python -m sparse24.bench.oneshot_models --out X", "environment": environment("x"), **om.collect(names, recipes=om.TINY, directory=cache)}
    text = om.markdown(results)
    assert "`python -m sparse24.bench.oneshot_models --out X`" in text
    lm = results["models"][LM]
    assert lm["test"]["metric"] == "perplexity" and lm["baseline"]["model"] == "unigram" and lm["corpus"]["test_files"] > 0
    assert lm["sparse_layer_types"] == {"Conv1D": 4 * TINY_LM.n_layer}
    for name in names:
        model = results["models"][name]
        assert f"| {name} | {model['parameters']:,} | {model['sparse_layers']}/{model['gemm_layers']}" in text


def test_the_moe_trains_with_its_routers_load_balancing_loss() -> None:
    recipe = om.TINY["moe-stdlib"]
    model = om.build("moe-stdlib", recipe=recipe)
    batch = om.calibration_batches("moe-stdlib", 1, seed=0, recipe=recipe)[0]
    plain = om.loss_fn("moe-stdlib")(model, batch)
    aux = model(input_ids=batch, use_cache=False, output_router_logits=True).aux_loss
    assert float(aux) > 0
    torch.testing.assert_close(om._moe_training_loss(recipe.aux_loss_coef)(model, batch), plain + recipe.aux_loss_coef * aux)


def test_a_seeded_recipe_is_the_recipe_with_another_seed() -> None:
    assert om.seeded("vit-digits", 2) == dataclasses.replace(om.RECIPES["vit-digits"], seed=2)
    assert om.cache_path("vit-digits", recipe=om.seeded("vit-digits", 2)) != om.cache_path("vit-digits")  # another model
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        om.seeded("vit-digits", -1)
    with pytest.raises(ValueError, match="unknown model"):
        om.seeded("vit", 0)
