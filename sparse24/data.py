"""Calibration data from local text, drawn as the SparseGPT and Wanda papers draw theirs: random
windows of ``seq_len`` tokens (128 windows of 2048 tokens from C4 in both), one window per batch.

Offline, the text is the user's own: a file, or a directory of ``.txt`` and ``.jsonl`` files (a
JSON object with a ``"text"`` string per line, as ``datasets``' ``to_json`` writes), gzipped or not
(C4's shards, ``c4-train.00000-of-01024.json.gz``, are JSON lines named ``.json.gz``). Each file
is tokenized on its own and the files are joined with the tokenizer's end-of-sequence token, so
a window may span two documents, as a window of concatenated WikiText does.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import Sparse24Error, first_line

__all__ = ["DEFAULT_SAMPLES", "DEFAULT_SEQ_LEN", "TEXT_PREFIX", "eval_windows", "text_files", "text_tokens", "text_windows"]

logger = logging.getLogger(__name__)

DEFAULT_SEQ_LEN = 2048  # SparseGPT's and Wanda's calibration windows
DEFAULT_SAMPLES = 128
TEXT_PREFIX = "text:"  # the command line's --data text:PATH
_SUFFIXES = (".txt", ".jsonl", ".txt.gz", ".jsonl.gz", ".json.gz")  # a directory's text files (C4's shards: .json.gz)
CHARS_PER_WINDOW_TOKEN = 32  # a corpus over this many characters per token of the windows is sampled, not read whole
MIN_BUDGET_CHARS = 1 << 22  # ... and over this many (4 Mi) in any case
PIECE_CHARS = 1 << 16  # a sampled corpus is cut into pieces of about this many characters
_PROBE = "The quick brown fox jumps over the lazy dog, 0123456789."  # any real vocabulary splits it into several known tokens


def _is_json_lines(file: Path) -> bool:
    """A ``.jsonl`` or ``.json`` file (C4's shards: ``.json.gz``), compressed or not, read as JSON lines."""
    suffixes = file.suffixes[-2:] if file.suffix == ".gz" else file.suffixes[-1:]
    return bool(suffixes) and suffixes[0] in (".jsonl", ".json")


def text_files(path: str | os.PathLike) -> list[Path]:
    """``path`` itself, or the text files under the directory ``path`` (:data:`_SUFFIXES`; sorted, recursively)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise Sparse24Error(f"calibration text not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES))
    if not files:
        raise Sparse24Error(f"calibration text: no {', '.join(_SUFFIXES)} files under {path}")
    return files


@contextlib.contextmanager
def _gzip_errors(file: Path) -> Iterator[None]:
    """A ``.gz`` file's read failures as one clear error (a plain file's OS errors pass through)."""
    try:
        yield
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError; a truncated archive ends in EOFError
        if file.suffix != ".gz":
            raise
        raise Sparse24Error(f"calibration text: {file} is not a readable gzip file ({first_line(error)})") from error


def _read_text(file: Path) -> str:
    try:
        with _gzip_errors(file):
            if file.suffix == ".gz":
                with gzip.open(file, "rt", encoding="utf-8") as stream:
                    return stream.read()
            return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        if file.suffix == ".gz":  # the error's offset is within a decompressed chunk: not worth printing
            raise Sparse24Error(f"calibration text: {file} is not UTF-8 text once decompressed ({error.reason})") from error
        raise Sparse24Error(f"calibration text: {file} is not UTF-8 text ({error.reason} at byte {error.start})") from error


def _documents(file: Path) -> list[str]:
    """The file's text as one document, or a JSON-lines file's ``"text"`` strings, read a line at a time."""
    if not _is_json_lines(file):
        return [_read_text(file)]
    documents = []
    with _gzip_errors(file), gzip.open(file, "rb") if file.suffix == ".gz" else file.open("rb") as stream:
        for number, raw in enumerate(stream, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise Sparse24Error(f"calibration text: {file}:{number} is not UTF-8 text ({error.reason} at byte {error.start} of the line)") from error
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise Sparse24Error(f"calibration text: {file}:{number} is not JSON ({error.msg}; JSON lines: one object per line)") from error
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise Sparse24Error(f'calibration text: {file}:{number} has no "text" string (each line is an object with one)')
            documents.append(record["text"])
    return documents


def _tokenizer_files(directory: Path) -> list[str]:
    """Names of the files in ``directory`` that a tokenizer is loaded from (vocabularies, merges, configs)."""
    names = []
    for file in directory.iterdir():
        name = file.name
        if name.startswith(("tokenizer", "vocab", "merges", "spiece", "sentencepiece", "special_tokens_map")) or name.endswith((".model", ".tiktoken")):
            names.append(name)
    return sorted(names)


_SAVE_HINT = "save the model's tokenizer there (tokenizer.save_pretrained) or name its directory (--tokenizer DIR)"


def _known_ids(ids: Sequence[int], tokenizer: Any) -> set[int]:
    return set(ids) - {getattr(tokenizer, "unk_token_id", None)}


def _require_vocabulary(tokenizer: Any, directory: Path) -> None:
    """For a directory with no tokenizer files: raise unless ``tokenizer`` turns :data:`_PROBE` into at least 2
    distinct known tokens. transformers still builds a tokenizer there, from config.json alone, with an empty
    or near-empty vocabulary that turns any text into no tokens or into unknown ones."""
    ids = list(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
    known = _known_ids(ids, tokenizer)
    if len(known) < 2:
        gives = "no tokens" if not ids else f"{len(ids)} tokens, {len(known)} distinct known: {ids[:8]}"
        raise Sparse24Error(
            f"no tokenizer files in {directory}: transformers built a {type(tokenizer).__name__} from config.json alone, "
            f"with no vocabulary ({_PROBE!r} gives {gives}); {_SAVE_HINT}"
        )


def _require_known_tokens(ids: Sequence[int], tokenizer: Any, where: object) -> None:
    """Raise when the text's tokens (any at all) are fewer than 2 distinct known ids: a tokenizer with no
    vocabulary for this text, whose windows would be one id repeated (whatever the text's language)."""
    known = _known_ids(ids, tokenizer)
    if ids and len(known) < 2:
        raise Sparse24Error(
            f"the {type(tokenizer).__name__} turns {where} into {len(ids)} tokens with {len(known)} distinct known id(s) "
            f"({list(ids[:8])}...): it has no vocabulary for this text; give the model's own tokenizer"
        )


def _load_tokenizer(tokenizer: Any) -> Any:
    if not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    directory = Path(tokenizer)
    if not directory.is_dir():
        raise Sparse24Error(f"tokenizer directory not found: {tokenizer}")
    try:
        from transformers import AutoTokenizer
    except ImportError as error:
        raise Sparse24Error("calibration text needs transformers for its tokenizer: pip install transformers") from error
    try:
        loaded = AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0].rstrip(": ")
        if not _tokenizer_files(directory):
            raise Sparse24Error(f"no tokenizer files in {directory} (transformers: {reason}); {_SAVE_HINT}") from error
        raise Sparse24Error(f"no tokenizer could be loaded from {tokenizer}: {reason}") from error
    if not _tokenizer_files(directory):
        _require_vocabulary(loaded, directory)
    return loaded


def _pieces(document: str) -> Iterator[str]:
    """``document`` in consecutive pieces of about :data:`PIECE_CHARS` characters, cut after a newline where one is."""
    start = 0
    while start < len(document):
        stop = start + PIECE_CHARS
        if stop < len(document):
            newline = document.rfind("\n", start, stop)
            stop = newline + 1 if newline > start else stop
        yield document[start:stop]
        start = stop


def _sample_pieces(documents: list[str], budget: int, seed: int) -> list[str]:
    """Pieces of ``documents`` in a random order (``seed``) until ``budget`` characters: a large corpus is sampled
    across its whole length, as SparseGPT and Wanda draw random C4 documents, without tokenizing all of it."""
    pieces = [piece for document in documents for piece in _pieces(document)]
    order = torch.randperm(len(pieces), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen, size = [], 0
    for index in order:
        if size >= budget:
            break
        chosen.append(pieces[index])
        size += len(pieces[index])
    return chosen


def _read(path: str | os.PathLike | Sequence[str | os.PathLike], tokenizer: Any) -> tuple[list[Path], Any, list[str]]:
    """The text files at ``path``, the tokenizer (loaded and checked) and the files' documents, in order."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    files = [file for p in paths for file in text_files(p)]
    tokenizer = _load_tokenizer(tokenizer)
    return files, tokenizer, [document for file in files for document in _documents(file)]


def _where(files: Sequence[Path]) -> str:
    return str(files[0]) if len(files) == 1 else f"{len(files)} files"


def _tokenize(documents: Sequence[str], tokenizer: Any, max_tokens: int | None = None) -> list[int]:
    """The documents' token ids joined by the end-of-sequence token; stops once ``max_tokens`` are reached."""
    separator = [tokenizer.eos_token_id] if getattr(tokenizer, "eos_token_id", None) is not None else []
    ids: list[int] = []
    limit = getattr(tokenizer, "model_max_length", None)
    try:
        if limit is not None:
            tokenizer.model_max_length = 1 << 62  # whole documents, without the "longer than the model" warning
        for document in documents:
            if max_tokens is not None and len(ids) >= max_tokens:
                break
            if ids:
                ids += separator
            ids += tokenizer(document, add_special_tokens=False)["input_ids"]
    finally:
        if limit is not None:
            tokenizer.model_max_length = limit
    return ids if max_tokens is None else ids[:max_tokens]


def text_tokens(path: str | os.PathLike | Sequence[str | os.PathLike], tokenizer: Any, *, max_tokens: int | None = None) -> Tensor:
    """The text at ``path`` (as :func:`text_windows` reads it) as one stream of token ids, in file order, whole or
    its first ``max_tokens``: an evaluation set, as SparseGPT and Wanda tokenize WikiText-2's test split."""
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
    files, tokenizer, documents = _read(path, tokenizer)
    ids = _tokenize(documents, tokenizer, max_tokens)
    _require_known_tokens(ids, tokenizer, _where(files))
    return torch.tensor(ids, dtype=torch.long)


def eval_windows(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    tokenizer: Any,
    *,
    seq_len: int = DEFAULT_SEQ_LEN,
    max_windows: int | None = None,
    batch_size: int = 1,
    labels: bool = False,
) -> list[dict[str, Tensor]]:
    """The text's non-overlapping windows of ``seq_len`` tokens, in order (the first ``max_windows``), as batches
    ``{"input_ids": [<= batch_size, seq_len]}`` (and ``"labels"``): a finetune's eval data for
    :func:`sparse24.evaluate.perplexity_fn`, the windows ``sparse24 perplexity`` scores."""
    for name, value in (("seq_len", seq_len), ("batch_size", batch_size), ("max_windows", max_windows)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    tokens = text_tokens(path, tokenizer, max_tokens=None if max_windows is None else max_windows * seq_len)
    windows = tokens.numel() // seq_len
    if windows == 0:
        raise Sparse24Error(f"evaluation text: {tokens.numel()} tokens, fewer than one window of seq_len={seq_len}; give more text or a smaller seq_len")
    rows = tokens[: windows * seq_len].view(windows, seq_len)
    batches = []
    for start in range(0, windows, batch_size):
        ids = rows[start : start + batch_size].clone()
        batches.append({"input_ids": ids, "labels": ids.clone()} if labels else {"input_ids": ids})
    return batches


def text_windows(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    tokenizer: Any,
    *,
    seq_len: int = DEFAULT_SEQ_LEN,
    num_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    labels: bool = False,
) -> list[dict[str, Tensor]]:
    """``num_samples`` batches ``{"input_ids": [1, seq_len]}`` (and ``"labels"``, the same ids, with ``labels=True``:
    a causal LM's own loss, for Taylor), each a window of the tokenized text at a random start (``seed``).

    ``path``: a text file, a directory of ``.txt``/``.jsonl`` files, or a list of these. ``tokenizer``: a
    local directory (``AutoTokenizer.from_pretrained``, never the network) or a tokenizer object.

    A corpus over ``max(32 * num_samples * seq_len, 4 Mi)`` characters is not tokenized whole: it is cut into
    pieces of about 64 Ki characters (after a newline), and pieces drawn in a random order (``seed``) up to
    that many characters are tokenized and joined by the end-of-sequence token.
    """
    for name, value in (("seq_len", seq_len), ("num_samples", num_samples)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    files, tokenizer, documents = _read(path, tokenizer)
    budget = max(CHARS_PER_WINDOW_TOKEN * num_samples * seq_len, MIN_BUDGET_CHARS)
    total = sum(len(document) for document in documents)
    if total > budget:
        documents = _sample_pieces(documents, budget, seed)
        logger.info(
            "calibration: the text's %d characters are over the budget of %d (%d x num_samples x seq_len): "
            "tokenizing %d random pieces of it (seed %d), %d characters", total, budget, CHARS_PER_WINDOW_TOKEN,
            len(documents), seed, sum(len(piece) for piece in documents),
        )
    ids = _tokenize(documents, tokenizer)
    where = _where(files)
    _require_known_tokens(ids, tokenizer, where)
    if len(ids) < seq_len:
        raise Sparse24Error(f"calibration text: {where} gives {len(ids)} tokens, fewer than one window of seq_len={seq_len}; give more text or a smaller seq_len")
    stream = torch.tensor(ids, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - seq_len + 1, (num_samples,), generator=generator)
    batches = []
    for start in starts.tolist():
        window = stream[start : start + seq_len].unsqueeze(0)
        batches.append({"input_ids": window, "labels": window.clone()} if labels else {"input_ids": window})
    logger.info("calibration: %d windows of %d tokens from %d file(s), %d tokens in all", num_samples, seq_len, len(files), len(ids))
    return batches
