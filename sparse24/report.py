"""What sparsify/verify did to each layer, as text, Markdown and JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

__all__ = ["LayerReport", "SparsityReport"]


@dataclass(frozen=True)
class LayerReport:
    """One GEMM weight: whether it is 2:4 sparse, and if not, why."""

    name: str
    module_type: str
    shape: tuple[int, ...]
    reduction_dim: int
    numel: int
    sparse: bool
    reason: str | None = None
    criterion: str | None = None
    importance_kept: float | None = None
    tied_to: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        return "2:4" if self.sparse else f"skipped: {self.reason}"


@dataclass(frozen=True)
class SparsityReport:
    """Per-layer outcome of :func:`sparse24.sparsify` or :func:`sparse24.verify`, with totals."""

    layers: tuple[LayerReport, ...]
    total_params: int
    method: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def sparse_layers(self) -> tuple[LayerReport, ...]:
        return tuple(layer for layer in self.layers if layer.sparse)

    @property
    def prunable_params(self) -> int:
        """Parameters in all GEMM weights found, sparse or skipped."""
        return sum(layer.numel for layer in self.layers)

    @property
    def sparse_params(self) -> int:
        """Parameters in the weights that are 2:4 sparse."""
        return sum(layer.numel for layer in self.sparse_layers)

    @property
    def zeros_from_2_4(self) -> int:
        return self.sparse_params // 2

    @property
    def prunable_share(self) -> float:
        """Share of the GEMM weights made 2:4 sparse."""
        return self.sparse_params / self.prunable_params if self.prunable_params else 0.0

    @property
    def model_sparsity(self) -> float:
        """Share of all model parameters that the 2:4 masks zero."""
        return self.zeros_from_2_4 / self.total_params if self.total_params else 0.0

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "layers": [asdict(layer) | {"shape": list(layer.shape), "tied_to": list(layer.tied_to)} for layer in self.layers],
            "totals": {
                "total_params": self.total_params,
                "prunable_params": self.prunable_params,
                "sparse_params": self.sparse_params,
                "sparse_layers": len(self.sparse_layers),
                "skipped_layers": len(self.layers) - len(self.sparse_layers),
                "prunable_share": self.prunable_share,
                "model_sparsity": self.model_sparsity,
            },
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def _rows(self) -> list[list[str]]:
        rows = []
        for layer in self.layers:
            kept = "" if layer.importance_kept is None else f"{layer.importance_kept:.3f}"
            name = layer.name + (f" (tied: {', '.join(layer.tied_to)})" if layer.tied_to else "")
            shape = "x".join(map(str, layer.shape))
            rows.append([name, layer.module_type, shape, str(layer.reduction_dim), layer.status, kept])
        return rows

    _HEADER = ["layer", "type", "shape", "2:4 dim", "status", "importance kept"]

    def _summary(self) -> str:
        return (
            f"{len(self.sparse_layers)}/{len(self.layers)} GEMM weights 2:4 sparse"
            f" ({self.sparse_params:,} of {self.prunable_params:,} prunable parameters,"
            f" {self.prunable_share:.1%}); {self.zeros_from_2_4:,} zeros from 2:4 ="
            f" {self.model_sparsity:.1%} of {self.total_params:,} model parameters"
            + (f"; criterion: {self.method}" if self.method else "")
        )

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self._HEADER) + " |", "|" + "---|" * len(self._HEADER)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self._rows()]
        lines += ["", self._summary()] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        rows = [self._HEADER] + self._rows()
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEADER))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
        return "\n".join(lines + ["", self._summary()] + [f"note: {note}" for note in self.notes])
