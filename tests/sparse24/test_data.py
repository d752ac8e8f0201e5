"""Calibration windows from local text (``sparse24.data``, ``sparse24 prune --data text:PATH``) and perplexity on it
(``sparse24.evaluate``, ``sparse24 perplexity``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparse24.data import text_windows
from sparse24.errors import Sparse24Error

transformers = pytest.importorskip("transformers")

TEXT = "\n".join(f"def layer_{i}(x):\n    return x * {i} + {i * i}  # the {i}th layer of the sparse model\n" for i in range(60))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer trained here (no download), saved as a transformers tokenizer directory."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([TEXT], vocab_size=300, min_frequency=2, special_tokens=["<eos>"], show_progress=False)
    path = tmp_path_factory.mktemp("tokenizer")
    transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<eos>").save_pretrained(path)
    return path


def _corpus(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text(TEXT[:1500])
    (root / "sub" / "b.jsonl").write_text(json.dumps({"text": TEXT[1500:2500]}) + "\n\n" + json.dumps({"text": TEXT[2500:]}) + "\n")
    (root / "ignored.bin").write_bytes(b"\xff\xfe")  # neither .txt nor .jsonl
    return root


def test_windows_are_slices_of_the_tokenized_files_joined_by_eos(tmp_path: Path, tokenizer_dir: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    corpus = _corpus(tmp_path / "corpus")
    documents = [TEXT[:1500], TEXT[1500:2500], TEXT[2500:]]  # a.txt, then sub/b.jsonl's two lines
    stream = []
    for document in documents:
        stream += ([tokenizer.eos_token_id] if stream else []) + tokenizer(document, add_special_tokens=False)["input_ids"]
    stream = torch.tensor(stream)
    batches = text_windows(corpus, tokenizer_dir, seq_len=32, num_samples=20, seed=3)
    assert len(batches) == 20 and all(set(b) == {"input_ids"} and b["input_ids"].shape == (1, 32) for b in batches)
    windows = stream.unfold(0, 32, 1)
    for batch in batches:
        assert (windows == batch["input_ids"]).all(1).any(), "each window is a run of the joined token stream"
    starts = {int((windows == b["input_ids"]).all(1).nonzero()[0]) for b in batches}
    assert len(starts) > 10  # random starts over the whole stream
    many = text_windows(corpus, tokenizer_dir, seq_len=32, num_samples=300)
    assert all((windows == b["input_ids"]).all(1).any() for b in many)
    assert sum(tokenizer.eos_token_id in b["input_ids"] for b in many) > 1  # windows across a document boundary
    again = text_windows(corpus, tokenizer_dir, seq_len=32, num_samples=20, seed=3)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, again))
    other = text_windows(corpus, tokenizer, seq_len=32, num_samples=20, seed=4, labels=True)  # a tokenizer object
    assert not all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, other))
    assert all(torch.equal(b["labels"], b["input_ids"]) for b in other)
    assert tokenizer.model_max_length == transformers.AutoTokenizer.from_pretrained(tokenizer_dir).model_max_length  # put back


def test_bad_text_is_one_clear_error(tmp_path: Path, tokenizer_dir: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"body": "no text key"}\n')
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "short.txt").write_text("x = 1")
    cases = [
        (tmp_path / "missing", "calibration text not found"),
        (tmp_path / "empty", r"no \.txt, \.jsonl, \.txt\.gz, \.jsonl\.gz, \.json\.gz files under"),
        (tmp_path / "bad.jsonl", r'bad\.jsonl:2 has no "text" string'),
        (tmp_path / "broken.jsonl", r"broken\.jsonl:1 is not JSON"),
        (tmp_path / "latin1.txt", "is not UTF-8 text"),
        (tmp_path / "short.txt", r"tokens, fewer than one window of seq_len=64"),
    ]
    for path, match in cases:
        with pytest.raises(Sparse24Error, match=match):
            text_windows(path, tokenizer_dir, seq_len=64)
    with pytest.raises(Sparse24Error, match="tokenizer directory not found"):
        text_windows(tmp_path / "short.txt", tmp_path / "no-tokenizer")
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        text_windows(tmp_path / "short.txt", tokenizer_dir, seq_len=0)


# Models saved without their tokenizer: transformers 5 still builds one from config.json alone, with no vocabulary.
# GPT-2's and Qwen2's turn any text into 0 tokens (reported as "gives 0 tokens, fewer than one window"); BERT's and
# T5's into unknown tokens, so the windows were all [UNK] and calibration ran on them without a word. Llama's fails
# to load at all.
MODEL_ONLY = {
    "gpt2": lambda: transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2),
    "qwen2": lambda: transformers.Qwen2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=64),
    "bert": lambda: transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=64),
    "t5": lambda: transformers.T5Config(d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=64),
    "llama": lambda: transformers.LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=64),
}


@pytest.mark.parametrize("family", MODEL_ONLY)
def test_a_model_directory_without_tokenizer_files_is_refused(tmp_path: Path, family: str) -> None:
    (tmp_path / "short.txt").write_text(TEXT)
    MODEL_ONLY[family]().save_pretrained(tmp_path / "model-only")
    with pytest.raises(Sparse24Error, match=r"no tokenizer files in .*model-only(: transformers built a \w+ from config.json alone, with no vocabulary| \(transformers: )"):
        text_windows(tmp_path / "short.txt", tmp_path / "model-only", seq_len=1)


def test_a_tokenizer_without_vocabulary_is_refused_however_given(tmp_path: Path, tokenizer_dir: Path) -> None:
    """Given as an object, or from a directory that has tokenizer files, a tokenizer is judged by the text itself:
    fewer than 2 distinct known ids in it is no vocabulary for it (whatever the language: a DNA model's own
    tokenizer knows no English, and passes on its own text)."""
    from sparse24.data import text_tokens

    (tmp_path / "short.txt").write_text(TEXT)
    MODEL_ONLY["bert"]().save_pretrained(tmp_path / "model-only")
    empty = transformers.AutoTokenizer.from_pretrained(tmp_path / "model-only")
    with pytest.raises(Sparse24Error, match=r"the BertTokenizer turns .*short.txt into \d+ tokens with 0 distinct known id\(s\) \(\[1, 1, 1"):
        text_windows(tmp_path / "short.txt", empty, seq_len=1)
    with pytest.raises(Sparse24Error, match=r"the BertTokenizer turns .*short.txt into \d+ tokens with 0 distinct known"):
        text_tokens(tmp_path / "short.txt", empty)
    (tmp_path / "model-only" / "tokenizer_config.json").write_text("{}")  # files there: judged by the text too
    with pytest.raises(Sparse24Error, match=r"the \w+ turns .*short.txt into \d+ tokens with 0 distinct known"):
        text_windows(tmp_path / "short.txt", tmp_path / "model-only", seq_len=1)
    assert len(text_windows(tmp_path / "short.txt", transformers.AutoTokenizer.from_pretrained(tokenizer_dir), seq_len=4)) == 128

    from tokenizers import Tokenizer, models, pre_tokenizers

    dna = Tokenizer(models.WordLevel({base: i for i, base in enumerate("ACGTN")}, unk_token="N"))
    dna.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    dna_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=dna, unk_token="N")
    assert dna_tokenizer("The quick", add_special_tokens=False)["input_ids"].count(4) >= 7  # English is unknown to it
    (tmp_path / "genome.txt").write_text("ACGTTGCA" * 50)
    windows = text_windows(tmp_path / "genome.txt", dna_tokenizer, seq_len=8, num_samples=2)
    assert all(set(w["input_ids"][0].tolist()) <= {0, 1, 2, 3} for w in windows)


def test_recipe_form_builds_the_windows(tmp_path: Path, tokenizer_dir: Path) -> None:
    from sparse24 import io

    spec = {"fn": "sparse24.data:text_windows", "args": {"path": str(_corpus(tmp_path / "c")), "tokenizer": str(tokenizer_dir), "seq_len": 16, "num_samples": 3}}
    batches = io.build_object(spec, "sparsify.data")
    assert [b["input_ids"].shape for b in batches] == [(1, 16)] * 3


def test_cli_prune_with_text_data(tmp_path: Path, tokenizer_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from sparse24.cli import main

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48)
    model_dir = tmp_path / "llama"
    transformers.LlamaForCausalLM(config).save_pretrained(model_dir)
    transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(model_dir)  # the model's own tokenizer
    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "pruned"
    assert main(["prune", f"hf:{model_dir}", "--method", "sparsegpt", "--data", f"text:{corpus}", "--num-batches", "6", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["verify", str(out)]) == 0
    capsys.readouterr()
    errors = [
        (["--data", f"text:{corpus}", "--seq-len", "64"], "--seq-len 64 is longer than the model's 48 positions"),
        (["--data", "sparse24.demo:calibration_batches", "--seq-len", "8"], "--seq-len applies to --data text:PATH only"),
        (["--data", "sparse24.demo:calibration_batches", "--data-seed", "1"], "--data-seed applies to --data text:PATH only"),
        (["--data", f"text:{corpus}", "--num-batches", "0"], "--num-batches must be at least 1, got 0"),
        (["--data", f"text:{corpus}", "--seq-len", "0"], "--seq-len must be at least 1, got 0"),
        (["--data", f"text:{tmp_path / 'nothing'}"], "calibration text not found"),
    ]
    for extra, message in errors:
        assert main(["prune", f"hf:{model_dir}", "--method", "wanda", *extra, "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    assert main(["prune", "sparse24.demo:DigitsTransformer", "--method", "wanda", "--data", f"text:{corpus}", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "needs a tokenizer: --tokenizer DIR" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_cli_prune_an_encoder_decoder_with_text_data(tmp_path: Path, tokenizer_dir: Path, capsys: pytest.CaptureFixture, method: str) -> None:
    """A window of text holds no decoder inputs: the windows carry labels, which transformers shifts into them (before,
    T5's decoder ran on nothing: "You must specify exactly one of input_ids or inputs_embeds")."""
    from sparse24.cli import main

    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=320, d_model=64, d_kv=16, d_ff=128, num_layers=1, num_heads=4, decoder_start_token_id=0)
    model_dir = tmp_path / "t5"
    transformers.T5ForConditionalGeneration(config).save_pretrained(model_dir)
    transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(model_dir)
    out = tmp_path / "pruned"
    assert main(["prune", f"hf:{model_dir}", "--method", method, "--data", f"text:{_corpus(tmp_path / 'corpus')}", "--seq-len", "16", "--num-batches", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "decoder.block.0.layer.2.DenseReluDense.wo.weight" in printed and f"criterion: {method}" in printed
    assert main(["verify", str(out)]) == 0


def test_a_corpus_over_the_budget_is_sampled_in_pieces_not_tokenized_whole(tmp_path: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over max(32 x num_samples x seq_len, 4 Mi) characters, random pieces (cut after newlines) up to that many are
    tokenized; before, every character was (a C4 shard: minutes and tens of GB of token lists for 128 windows)."""
    from sparse24 import data

    monkeypatch.setattr(data, "MIN_BUDGET_CHARS", 0)
    monkeypatch.setattr(data, "PIECE_CHARS", 300)
    corpus = _corpus(tmp_path / "corpus")  # 4783 characters in 3 documents; the budget below is 32 x 2 x 16 = 1024
    real = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    seen: list[str] = []

    class Counting:
        """The real tokenizer, recording the texts it is given."""

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def __call__(self, text: str, **kwargs: object) -> object:
            seen.append(text)
            return real(text, **kwargs)

    windows = text_windows(corpus, Counting(), seq_len=16, num_samples=2, seed=3)
    pieces = list(seen)
    assert 1024 <= sum(map(len, pieces)) < 1024 + 300
    assert all(len(piece) <= 300 and piece in TEXT for piece in pieces)
    documents = (TEXT[:1500], TEXT[1500:2500], TEXT[2500:])
    in_order = [piece for document in documents for piece in data._pieces(document)]
    ends = {list(data._pieces(document))[-1] for document in documents}  # a document's last piece ends where it does
    assert all(piece.endswith("\n") for piece in pieces if piece not in ends)  # every other piece is cut after a newline
    assert len(set(pieces)) == len(pieces) and set(pieces) <= set(in_order) and pieces != in_order[: len(pieces)]  # drawn at random
    # the windows are slices of those pieces' tokens, joined by the end-of-sequence token
    stream = []
    for piece in pieces:
        stream += ([real.eos_token_id] if stream else []) + real(piece, add_special_tokens=False)["input_ids"]
    for window in windows:
        ids = window["input_ids"][0].tolist()
        assert any(stream[start : start + 16] == ids for start in range(len(stream) - 15))
    # the same seed draws the same pieces and windows; another seed other pieces
    seen.clear()
    again = text_windows(corpus, Counting(), seq_len=16, num_samples=2, seed=3)
    assert seen == pieces and all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(again, windows))
    seen.clear()
    text_windows(corpus, Counting(), seq_len=16, num_samples=2, seed=4)
    assert seen != pieces
    # under the budget, the documents are tokenized whole, in file order, as before
    seen.clear()
    text_windows(corpus, Counting(), seq_len=16, num_samples=10)  # budget 5120 > 4783
    assert seen == [TEXT[:1500], TEXT[1500:2500], TEXT[2500:]]


def test_gzipped_text_and_c4_shards_are_read(tmp_path: Path, tokenizer_dir: Path) -> None:
    """C4's shards are JSON lines named .json.gz (SparseGPT's and Wanda's calibration files): read as they are, in a
    directory or named alone, with .txt.gz and .jsonl.gz; the same windows as the uncompressed files give."""
    import gzip

    from sparse24.data import _documents as data_documents

    plain = _corpus(tmp_path / "plain")
    packed = tmp_path / "packed"
    (packed / "sub").mkdir(parents=True)
    (packed / "a.txt.gz").write_bytes(gzip.compress((plain / "a.txt").read_bytes()))
    (packed / "sub" / "b.json.gz").write_bytes(gzip.compress((plain / "sub" / "b.jsonl").read_bytes()))
    (packed / "config.json").write_text("{}")  # a plain .json beside them is not text to read
    expected = text_windows(plain, tokenizer_dir, seq_len=16, num_samples=4)
    for given in (packed, [packed / "a.txt.gz", packed / "sub" / "b.json.gz"]):
        windows = text_windows(given, tokenizer_dir, seq_len=16, num_samples=4)
        assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(windows, expected))
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress((plain / "sub" / "b.jsonl").read_bytes()))
    alone = text_windows(tmp_path / "c.jsonl.gz", tokenizer_dir, seq_len=16, num_samples=2)
    unpacked = text_windows(plain / "sub" / "b.jsonl", tokenizer_dir, seq_len=16, num_samples=2)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(alone, unpacked))
    (tmp_path / "cut.json.gz").write_bytes(gzip.compress(b'{"text": "x"}\n' * 50)[:30])
    (tmp_path / "fake.txt.gz").write_bytes(b"plain text, not gzip")
    (tmp_path / "latin1.txt.gz").write_bytes(gzip.compress("café".encode("latin-1")))
    (tmp_path / "array.json.gz").write_bytes(gzip.compress(b'[\n{"text": "x"}\n]\n'))
    # lines are split at "\n" only: a raw U+2028 or U+0085 inside a JSON string (allowed; json.dumps(ensure_ascii=False)
    # writes them) split the line before, as str.splitlines() does, and the halves were "not JSON"
    raw = [json.dumps({"text": f"line {i} \u2028 with a separator \x85 inside"}, ensure_ascii=False) for i in range(3)]
    (tmp_path / "raw.jsonl.gz").write_bytes(gzip.compress(("\r\n".join(raw) + "\n").encode()))
    assert data_documents(tmp_path / "raw.jsonl.gz") == [f"line {i} \u2028 with a separator \x85 inside" for i in range(3)]
    (tmp_path / "bad-utf8.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(Sparse24Error, match=r"bad-utf8\.jsonl:2 is not UTF-8 text"):
        text_windows(tmp_path / "bad-utf8.jsonl", tokenizer_dir, seq_len=1)
    for name, match in (
        ("cut.json.gz", r"cut\.json\.gz is not a readable gzip file"),
        ("fake.txt.gz", r"fake\.txt\.gz is not a readable gzip file"),
        ("latin1.txt.gz", r"latin1\.txt\.gz is not UTF-8 text once decompressed"),
        ("array.json.gz", r"array\.json\.gz:1 is not JSON \(.*; JSON lines: one object per line\)"),
    ):
        with pytest.raises(Sparse24Error, match=match):
            text_windows(tmp_path / name, tokenizer_dir, seq_len=1)


# -- perplexity on held-out text (sparse24.evaluate, sparse24 perplexity) ------------------------------------------


class UniformLM(torch.nn.Module):
    """Every next token equally likely: its perplexity is the vocabulary size, whatever the text."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*ids.shape, self.vocab) * self.unused


def _tiny_llama(tmp_path: Path, tokenizer_dir: Path) -> Path:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48)
    model_dir = tmp_path / "llama"
    transformers.LlamaForCausalLM(config).save_pretrained(model_dir)
    transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(model_dir)
    return model_dir


def test_a_uniform_model_has_the_vocabulary_size_as_perplexity() -> None:
    from sparse24.evaluate import perplexity

    model = UniformLM(37).train()
    tokens = torch.randint(0, 37, (100,))
    result = perplexity(model, tokens, seq_len=16)
    assert result.perplexity == pytest.approx(37, rel=1e-6) and (result.windows, result.tokens) == (6, 96)  # the last 4 tokens left out
    assert perplexity(model, tokens, seq_len=16, max_windows=2).windows == 2
    assert model.training  # put back
    from sparse24.evaluate import _result

    assert _result([800.0, 800.0], 16).perplexity == float("inf")  # exp past float's range: inf, not an OverflowError
    with pytest.raises(Sparse24Error, match="the text gives 10 tokens, fewer than one window of seq_len=16"):
        perplexity(model, tokens[:10], seq_len=16)
    with pytest.raises(ValueError, match="seq_len must be an int >= 2"):
        perplexity(model, tokens, seq_len=1)
    with pytest.raises(Sparse24Error, match=r"perplexity needs next-token logits \[1, 16, vocab\]; Sequential gave \[16\]"):
        perplexity(torch.nn.Sequential(torch.nn.Flatten(0)), tokens, seq_len=16)


def test_perplexity_is_the_papers_formula(tmp_path: Path, tokenizer_dir: Path) -> None:
    """exp(sum over windows of (window loss x seq_len) / (windows x seq_len)), as SparseGPT's and Wanda's eval_ppl."""
    from sparse24.data import text_tokens
    from sparse24.evaluate import perplexity

    model = transformers.AutoModelForCausalLM.from_pretrained(_tiny_llama(tmp_path, tokenizer_dir))
    tokens = text_tokens(_corpus(tmp_path / "corpus"), tokenizer_dir)
    windows = tokens.numel() // 16
    nlls = []
    with torch.no_grad():
        for i in range(windows):
            ids = tokens[i * 16 : (i + 1) * 16].unsqueeze(0)
            nlls.append(model(input_ids=ids, labels=ids).loss.float() * 16)  # transformers' own shifted loss
    expected = torch.exp(torch.stack(nlls).sum() / (windows * 16)).item()
    assert perplexity(model, tokens, seq_len=16).perplexity == pytest.approx(expected, rel=1e-5)
    base = transformers.AutoModel.from_pretrained(tmp_path / "llama")
    with pytest.raises(Sparse24Error, match="LlamaModel is not a causal language model"):
        perplexity(base, tokens, seq_len=16)

    class OwnLlama(transformers.LlamaForCausalLM):  # a user's subclass of a causal LM is one
        pass

    assert perplexity(OwnLlama.from_pretrained(tmp_path / "llama"), tokens, seq_len=16).perplexity == pytest.approx(expected, rel=1e-5)


def test_cli_perplexity_of_the_dense_and_the_pruned_model(tmp_path: Path, tokenizer_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from sparse24.cli import main
    from sparse24.data import text_tokens
    from sparse24.evaluate import perplexity

    dense = _tiny_llama(tmp_path, tokenizer_dir)
    corpus = _corpus(tmp_path / "corpus")
    pruned = tmp_path / "pruned"
    assert main(["prune", f"hf:{dense}", "--out", str(pruned)]) == 0
    capsys.readouterr()
    report = tmp_path / "ppl.json"
    assert main(["perplexity", f"hf:{dense}", f"hf:{pruned}", "--data", f"text:{corpus}", "--seq-len", "16", "--max-windows", "5", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(report.read_text())["results"]
    tokens = text_tokens(corpus, dense)[:80]
    for row, directory in zip(results, (dense, pruned)):
        model = transformers.AutoModelForCausalLM.from_pretrained(directory)
        assert row["model"] == f"hf:{directory}" and (row["windows"], row["tokens"]) == (5, 80)
        assert row["perplexity"] == pytest.approx(perplexity(model, tokens, seq_len=16).perplexity, rel=1e-6)
        assert f"{row['perplexity']:.4f}" in printed
    assert results[0]["perplexity"] != results[1]["perplexity"]
    errors = [
        (["--seq-len", "64"], "--seq-len 64 is longer than the model's 48 positions"),
        (["--seq-len", "1"], "--seq-len must be at least 2, got 1"),
        (["--max-windows", "0"], "--max-windows must be at least 1, got 0"),
        (["--hf-class", "LlamaModel"], "LlamaModel is not a causal language model"),
        (["--device", "nonsense"], "unknown device 'nonsense'"),
        (["--json", str(tmp_path / "missing" / "ppl.json")], "output directory does not exist"),
    ]
    for extra, message in errors:
        assert main(["perplexity", f"hf:{dense}", "--data", f"text:{corpus}", *extra]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "short.txt").write_text("x = 1")
    assert main(["perplexity", f"hf:{dense}", "--data", str(tmp_path / "short.txt"), "--seq-len", "16"]) == 2
    assert "fewer than one window of seq_len=16" in capsys.readouterr().err
    assert main(["perplexity", "sparse24.demo:DigitsTransformer", "--data", str(corpus)]) == 2
    assert "perplexity needs a tokenizer: --tokenizer DIR" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_a_finetune_tracks_perplexity_on_eval_windows(tmp_path: Path, tokenizer_dir: Path) -> None:
    """eval_windows + perplexity_fn (a recipe's data.eval and eval_fn) give `sparse24 perplexity`'s figure, batched or
    not, before training and after each epoch of a recovery finetune."""
    import sparse24
    from sparse24.data import eval_windows, text_tokens
    from sparse24.evaluate import perplexity, perplexity_fn

    model = transformers.AutoModelForCausalLM.from_pretrained(_tiny_llama(tmp_path, tokenizer_dir))
    corpus = _corpus(tmp_path / "corpus")
    expected = perplexity(model, text_tokens(corpus, tokenizer_dir), seq_len=16, max_windows=6)
    for batch_size in (1, 4):
        batches = eval_windows(corpus, tokenizer_dir, seq_len=16, max_windows=6, batch_size=batch_size)
        assert [b["input_ids"].shape[0] for b in batches] == ([1] * 6 if batch_size == 1 else [4, 2])
        metrics = perplexity_fn(model, batches)
        assert metrics["perplexity"] == pytest.approx(expected.perplexity, rel=1e-5) and metrics["nll"] == pytest.approx(expected.nll, rel=1e-5)
    sparse24.sparsify(model, "magnitude")
    train = text_windows(corpus, tokenizer_dir, seq_len=16, num_samples=8, labels=True)
    evals = eval_windows(corpus, tokenizer_dir, seq_len=16, max_windows=6, batch_size=4)
    history = sparse24.finetune(model, train, epochs=2, lr=1e-3, eval_fn=perplexity_fn, eval_data=evals)
    assert set(history.initial) == {"perplexity", "nll"} and len(history.epochs) == 2
    assert history.final["perplexity"] == pytest.approx(perplexity_fn(model, evals)["perplexity"], rel=1e-5)
    assert history.final["perplexity"] < history.initial["perplexity"]  # trained on the same text
    with pytest.raises(Sparse24Error, match=r"perplexity_fn needs \[batch, length\] windows of one length"):
        perplexity_fn(model, [torch.zeros(1, 16, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long)])
    with pytest.raises(Sparse24Error, match="evaluation text: .* fewer than one window of seq_len=4096"):
        eval_windows(corpus, tokenizer_dir, seq_len=4096)
