"""``sparse24 bench compare old.json new.json``: which cases got slower or faster beyond the noise.

Cases are matched by their identity (GEMM: dtype, set, layer, M, N, K, backend; model: model,
batch, variant). A change in median latency within the larger of the two measurements'
run-to-run spreads (or ``--threshold``, whichever is larger) is noise. A case that ran before
and now fails is a regression too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .report import unfinished
from .stats import Summary, verdict

__all__ = ["Change", "Comparison", "compare"]

_KEYS = {"gemm": ("dtype", "set", "layer", "m", "n", "k", "backend"), "model": ("model", "batch", "variant")}


@dataclass(frozen=True)
class Change:
    case: str
    label: str  # regression, improvement, noise, now failing, fixed, new, gone
    old_ms: float | None = None
    new_ms: float | None = None
    change: float | None = None
    noise: float | None = None


@dataclass(frozen=True)
class Comparison:
    suite: str
    changes: tuple[Change, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def regressions(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.label in ("regression", "now failing"))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.label] = counts.get(change.label, 0) + 1
        return counts

    def to_markdown(self, *, show_all: bool = False) -> str:
        lines = [f"# {self.suite} results compared", ""]
        lines += [f"Warning: {w}  " for w in self.warnings]
        lines.append("Cases: " + ", ".join(f"{n} {label}" for label, n in sorted(self.counts().items())))
        shown = [c for c in self.changes if show_all or c.label != "noise"]
        if shown:
            lines += ["", "| case | old ms | new ms | change | noise band | verdict |", "|---|---|---|---|---|---|"]
            for c in shown:
                old = f"{c.old_ms:.4f}" if c.old_ms is not None else ""
                new = f"{c.new_ms:.4f}" if c.new_ms is not None else ""
                change = f"{c.change:+.1%}" if c.change is not None else ""
                noise = f"±{c.noise:.1%}" if c.noise is not None else ""
                lines.append(f"| {c.case} | {old} | {new} | {change} | {noise} | {c.label} |")
        return "\n".join(lines) + "\n"


def _identity(suite: str, row: dict[str, Any]) -> tuple:
    return tuple(row[k] for k in _KEYS[suite])


def _name(suite: str, row: dict[str, Any]) -> str:
    if suite == "gemm":
        return f"{row['dtype']} {row['set']} {row['layer']} M={row['m']} {row['backend']}"
    return f"{row['model']} batch {row['batch']} {row['variant']}"


def compare(old: dict[str, Any], new: dict[str, Any], *, threshold: float = 0.0) -> Comparison:
    """Compare two results of the same suite (gemm or model)."""
    if old["suite"] != new["suite"]:
        raise ValueError(f"cannot compare a {old['suite']} result with a {new['suite']} result")
    suite = old["suite"]
    if suite not in _KEYS:
        raise ValueError(f"compare takes gemm or model results, not {suite}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    warnings = []
    where = [(r["environment"].get("gpu") or {}).get("name", "CPU") for r in (old, new)]
    if where[0] != where[1]:
        warnings.append(f"the old result ran on {where[0]}, the new one on {where[1]}")
    for which, result in (("old", old), ("new", new)):
        if partial := unfinished(result):
            warnings.append(f"the {which} result is partial: only {partial} measured")
    for key in ("reps", "runs", "cuda_graphs"):
        if old["settings"].get(key) != new["settings"].get(key):
            warnings.append(f"settings differ: {key} {old['settings'].get(key)} -> {new['settings'].get(key)}")
    before = {_identity(suite, r): r for r in old["rows"]}
    after = {_identity(suite, r): r for r in new["rows"]}
    changes = []
    for key, row in after.items():
        previous = before.get(key)
        name = _name(suite, row)
        if previous is None:
            changes.append(Change(name, "new"))
        elif previous["status"] == "ok" and row["status"] != "ok":
            changes.append(Change(name, "now failing", old_ms=previous["latency_ms"]["median"]))
        elif previous["status"] != "ok" and row["status"] == "ok":
            changes.append(Change(name, "fixed", new_ms=row["latency_ms"]["median"]))
        elif row["status"] == "ok":
            result = verdict(Summary.from_dict(previous["latency_ms"]), Summary.from_dict(row["latency_ms"]), floor=threshold)
            label = {"slower": "regression", "faster": "improvement", "noise": "noise"}[result.label]
            changes.append(Change(name, label, previous["latency_ms"]["median"], row["latency_ms"]["median"], result.change, result.noise))
    changes += [Change(_name(suite, row), "gone") for key, row in before.items() if key not in after]
    order = {"regression": 0, "now failing": 0, "improvement": 1, "fixed": 1, "new": 2, "gone": 2, "noise": 3}
    changes.sort(key=lambda c: order[c.label])
    return Comparison(suite, tuple(changes), tuple(warnings))
