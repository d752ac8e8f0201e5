# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU torch. On machines without a local CPU wheel, point pip at PyTorch's CPU index, e.g.
#   make demo TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.sparse24-installed
DEMO := build/demo

.PHONY: demo test bench gpu-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# dense -> one-shot 2:4 (Taylor, BatchNorm re-estimated) -> recovery finetune with distillation -> before/after table
# -> ONNX (fp32 and fp16, parity + 2:4 checked) -> inspect -> TensorRT dense/sparse engines where possible
# -> the PyTorch sparse runtime ("auto" over cuSPARSELt / custom kernels / dense on a GPU)
# -> the benchmark harness, quick (GEMMs and the demo models; dense CPU timings without a GPU)
demo: $(STAMP)
	rm -rf $(DEMO)/checkpoints
	$(PY) -m sparse24.demo train --out $(DEMO)
	$(VENV)/bin/sparse24 prune sparse24.demo:DigitsResNet --weights $(DEMO)/dense.safetensors \
		--method taylor --squared --data sparse24.demo:calibration_batches --loss sparse24.demo:loss_fn --recalibrate-bn \
		--out $(DEMO)/sparse.safetensors --report $(DEMO)/report.md
	$(VENV)/bin/sparse24 verify $(DEMO)/sparse.safetensors
	$(VENV)/bin/sparse24 finetune --config sparse24/recipes/digits.yaml
	$(VENV)/bin/sparse24 verify $(DEMO)/finetuned.safetensors
	$(PY) -m sparse24.demo table --out $(DEMO)
	$(VENV)/bin/sparse24 export sparse24.demo:DigitsResNet --weights $(DEMO)/finetuned.safetensors \
		--input-shape 1x1x8x8 --out $(DEMO)/digits.onnx --report $(DEMO)/export.md
	$(VENV)/bin/sparse24 export sparse24.demo:DigitsResNet --weights $(DEMO)/finetuned.safetensors \
		--input-shape 1x1x8x8 --dtype fp16 --out $(DEMO)/digits_fp16.onnx --report $(DEMO)/export_fp16.json
	$(VENV)/bin/sparse24 inspect $(DEMO)/digits_fp16.onnx --dim batch=64 --report $(DEMO)/inspect_fp16.md
	$(VENV)/bin/sparse24 build $(DEMO)/digits_fp16.onnx --out-dir $(DEMO) --check --skip-unavailable \
		--min-shapes x:1x1x8x8 --opt-shapes x:64x1x8x8 --max-shapes x:256x1x8x8 --report $(DEMO)/engines.md
	$(PY) -m sparse24.demo runtime
	$(VENV)/bin/sparse24 bench gemm model --quick --out $(DEMO)/bench

test: $(STAMP)
	$(PY) -m pytest -q

# the masker's CPU benchmarks (results committed in bench/results/) and the harness on this machine
bench: $(STAMP)
	$(PY) bench/bench_sparsify.py --out bench/results
	$(PY) bench/bench_overhead.py --out bench/results
	$(PY) bench/bench_recovery.py --out bench/results
	$(PY) bench/bench_permutation.py --out bench/results
	$(PY) bench/bench_oneshot.py --out bench/results
	$(PY) bench/oneshot_padding.py --out bench/results
	$(PY) bench/oneshot_seeds.py --recovery --out bench/results
	$(PY) bench/bench_memory.py --out bench/results
	$(VENV)/bin/sparse24 bench gemm model

# One command for a GPU machine (sm_80+, a CUDA build of torch in GPU_PYTHON, used as it is, from this
# checkout), sized for a GPU lent for minutes. In order: the kernel summary (one line per custom kernel
# and dtype: correct against float64? speedup against dense at M = 1, 16, 4096), the GPU-marked tests
# (pytest.xml + pytest.log), the gemm suite, the model suite, all into GPU_CHECK_OUT (default
# bench/results/<gpu name>/). Every step writes as it goes (kernels.json and the suites' JSON/CSV/MD are
# rewritten after every case, the test log line by line), so a run cut off part-way leaves what it
# measured. A failing step does not stop the later ones; the target fails at the end if any did.
GPU_PYTHON ?= python3
GPU_CHECK_OUT ?= $$($(GPU_PYTHON) -m sparse24.bench env --results-dir)
# The suites' settings: every gemm shape set and every model, but no TensorRT (an engine build per GEMM
# case, ~10-30 s each, 116 builds; 8 model engines of 1-2 min) and no torch.compile (a recompile per
# model x batch x variant, ~5-9 min), at 3 runs x (3 warm-up + 20 timed) calls.
# Estimated time of the default run on an H100 (from counts and nominal speeds). Measured once, on an H200 at b962cea
# (bench/results/nvidia-h200/console.log): 125 s wall in all, with kernels ~15 s, tests ~45 s (pytest: 35.8 s),
# gemm ~44 s, and the model suite stopped ~10 s in by an import failure since fixed:
#   dependency check + bench env                                                                    ~5 s
#   kernels: NVRTC for 3 sources (~5 s each, cached on disk after) + 2 dtypes x (compress + 3 M x 3
#     GEMMs) x 3 runs x (3 + 20) = 1,380 calls, the slowest small_m at M=4096 (~5 ms)                 ~25 s
#   tests (pytest -m cuda, 117 tests): collection ~20 s, kernels (94, one torch.compile) ~40 s,
#     sparse24 + runtime (12: AMP finetunes, auto plans) ~40 s, bench (5 suite runs) ~40 s          ~2.5 min
#     (+ ~1.5-2.5 min where tensorrt imports: 6 tests, 5 engine builds; they run last, so they are
#     what the limit below cuts if the estimate is short)
#   gemm: 58 cases x 2 dtypes x 3 backends = 348 timings x 3 runs x (3 + 20) = 24,012 calls; per run a
#     4 ms GPU sleep + 23 L2 flushes (~0.04 ms) + sync: ~5.5 s; GEMM time 4.1 TFLOP per call set x 69
#     x 6 (backend, dtype) = 1,700 TFLOP at 300-700 TFLOP/s: ~5 s; 116 case set-ups (inputs, float64
#     reference, checks, results rewritten) ~6 s; 2 x 639 weight copies made 2:4 and compressed ~6 s;
#     peak and bandwidth calibration ~1 s                                                              ~25 s
#   model: eager dense + eager sparse; digits-resnet, digits-transformer (3 batches each), BERT-base and
#     ResNet-50 where torchvision is installed (4 each): 14 x 2 x 69 = 1,932 forwards (<= 20 ms) ~10 s;
#     building, sparsifying and the runtime's "auto" plan (15 buckets x 3 backends per shape) ~30 s    ~40 s
#   total: 5 + 25 + 150 + 25 + 40 s = ~4 min without TensorRT, ~5.5-6.5 min with it.
GPU_CHECK_ARGS ?= --backends dense,cusparselt,custom --variants 'eager dense,eager sparse' --runs 3 --reps 20 --warmup 3
# A hard limit in seconds per step (kernels, tests, gemm, model; 0: none), about 2x each estimate above
# (tests: 1.6x without TensorRT), so the whole check ends within 5 + 60 + 240 + 50 + 75 s = 7.2 min
# (+5 s for each step that ignores the interrupt and is killed) even if an estimate is wrong. A step
# over its limit is interrupted (SIGINT: pytest still writes pytest.xml unless the test it lands in
# swallows it; pytest.log has every finished test either way; a suite keeps the cases it finished)
# and counted as failed. The full suites (TensorRT where installed, torch.compile, 3 runs x 50 reps;
# 30+ minutes with TensorRT): make gpu-check GPU_CHECK_ARGS= GPU_CHECK_LIMITS="0 0 0 0"
GPU_CHECK_LIMITS ?= 60 240 50 75
gpu-check:
	@$(GPU_PYTHON) -c "import importlib.util as u, sys; m = [n for n in ('torch', 'safetensors', 'yaml', 'tqdm', 'matplotlib') if u.find_spec(n) is None]; \
		sys.exit('gpu-check: $(GPU_PYTHON) lacks ' + ', '.join(m) + ': pip install -e \".[bench,kernels]\"') if m else None"
	$(GPU_PYTHON) -m sparse24.bench env --require-gpu
	@out="$(GPU_CHECK_OUT)"; [ -n "$$out" ] && mkdir -p "$$out" || { echo "gpu-check: no results folder ('$$out')" >&2; exit 2; }; \
	set -- $(GPU_CHECK_LIMITS); [ $$# = 4 ] || { echo "gpu-check: GPU_CHECK_LIMITS takes 4 numbers of seconds (kernels tests gemm model), got '$(GPU_CHECK_LIMITS)'" >&2; exit 2; }; \
	export PYTHONUNBUFFERED=1; failed=""; echo "gpu-check: results in $$out"; \
	step() { name=$$1; seconds=$$2; shift 2; limit="limit $$seconds s"; [ "$$seconds" != 0 ] || limit="no limit"; echo "gpu-check: $$name ($$limit): $$*"; \
		if [ "$$seconds" != 0 ] && command -v timeout >/dev/null 2>&1; then timeout -s INT -k 5 "$$seconds" "$$@"; else "$$@"; fi; \
		status=$$?; case $$status in 124) echo "gpu-check: $$name stopped at its $$seconds s limit (what it measured is in $$out)";; \
		137) echo "gpu-check: $$name killed (its limit, or out of memory; what it measured is in $$out)";; esac; return $$status; }; \
	step kernels $$1 $(GPU_PYTHON) -m sparse24.bench kernels --require --out "$$out" || failed="$$failed kernels"; \
	{ step tests $$2 $(GPU_PYTHON) -m pytest -v -m cuda -p no:cacheprovider --junitxml="$$out/pytest.xml" tests; echo $$? > "$$out/.pytest.status"; } 2>&1 | tee "$$out/pytest.log"; \
	[ "$$(cat "$$out/.pytest.status" 2>/dev/null)" = 0 ] || failed="$$failed tests"; rm -f "$$out/.pytest.status"; \
	step gemm $$3 $(GPU_PYTHON) -m sparse24.bench gemm --out "$$out" $(GPU_CHECK_ARGS) || failed="$$failed gemm"; \
	step model $$4 $(GPU_PYTHON) -m sparse24.bench model --out "$$out" $(GPU_CHECK_ARGS) || failed="$$failed model"; \
	if [ -n "$$failed" ]; then echo "gpu-check: FAILED:$$failed (everything measured is in $$out)"; exit 1; fi; \
	echo "gpu-check: all passed; results in $$out"

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
