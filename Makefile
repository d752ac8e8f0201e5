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

# dense -> one-shot 2:4 (Taylor) -> recovery finetune with distillation -> before/after table
# -> ONNX (fp32 and fp16, parity + 2:4 checked) -> inspect -> TensorRT dense/sparse engines where possible
# -> the PyTorch sparse runtime ("auto" over cuSPARSELt / custom kernels / dense on a GPU)
# -> the benchmark harness, quick (GEMMs and the demo models; dense CPU timings without a GPU)
demo: $(STAMP)
	rm -rf $(DEMO)/checkpoints
	$(PY) -m sparse24.demo train --out $(DEMO)
	$(VENV)/bin/sparse24 prune sparse24.demo:DigitsResNet --weights $(DEMO)/dense.safetensors \
		--method taylor --squared --data sparse24.demo:calibration_batches --loss sparse24.demo:loss_fn \
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
	$(VENV)/bin/sparse24 bench gemm model

# One command for a GPU machine (sm_80+, a CUDA build of torch in GPU_PYTHON, used as it is, from
# this checkout): the GPU-marked tests, then the gemm and model suites into bench/results/<gpu name>/.
GPU_PYTHON ?= python3
GPU_CHECK_ARGS ?=
gpu-check:
	@$(GPU_PYTHON) -c "import importlib.util as u, sys; m = [n for n in ('torch', 'safetensors', 'yaml', 'tqdm', 'matplotlib') if u.find_spec(n) is None]; \
		sys.exit('gpu-check: $(GPU_PYTHON) lacks ' + ', '.join(m) + ': pip install -e \".[bench,kernels]\"') if m else None"
	$(GPU_PYTHON) -m bench env --require-gpu
	$(GPU_PYTHON) -m pytest -q -m cuda -p no:cacheprovider tests
	$(GPU_PYTHON) -m bench gemm model $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
