"""sparse24's benchmark harness: dense vs 2:4 GEMMs, whole models and accuracy recovery.

Run it as ``sparse24 bench`` or ``python -m sparse24.bench`` (see :mod:`sparse24.bench.cli`). Results are JSON
(the source of truth) with CSV, Markdown and PNG plots generated from them. The standalone
scripts ``bench_sparsify``, ``bench_overhead`` and ``bench_recovery`` measure the masker.
"""
