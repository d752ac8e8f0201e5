"""What ``pip install sparse24`` gets: one import name, its package data, and a CLI that runs outside the checkout.

The sdist and the wheel are built once per module from a copy of the tracked files (so the checkout
gets no build litter), with setuptools' PEP 517 backend and no build isolation (no network). The
wheel is installed into a fresh venv that borrows only the dependencies (torch, safetensors, ...)
through a ``.pth`` line; the checkout's editable install stays invisible there.

The lint tests at the end keep the source from importing the mapped folders (``kernels``,
``trt_export``, ``bench``) by their top-level names, which an install does not have.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parent.parent
NAME = "sparse24"
MAPPED = ("kernels", "trt_export", "bench")  # top-level folders installed as sparse24.<name>
EXTRAS = {"export", "kernels", "demo", "bench", "dev"}
DEPENDENCIES = ("torch", "safetensors", "yaml", "tqdm")
TIMEOUT = 300
SETUPTOOLS = 77  # pyproject.toml's build-system requirement (SPDX project.license)


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command``; fail the test with its output when it exits non-zero."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{' '.join(command)} (in {cwd}) exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    return done


def _tracked() -> list[str]:
    """The checkout's tracked files that exist in the working tree (posix paths relative to the repo)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip(f"packaging checks need the git checkout (git ls-files) at {REPO}")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sorted(p for p in out.split("\0") if p and (REPO / p).is_file())


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]


def _build_wheel(source: Path, out: Path) -> Path:
    """The wheel of the project at ``source``, built by pip with the environment's setuptools."""
    out.mkdir(parents=True, exist_ok=True)
    _run(_pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir", "-w", str(out), str(source)), cwd=source)
    wheels = list(out.glob(f"{NAME}-*.whl"))
    assert len(wheels) == 1, f"expected one {NAME} wheel in {out}, found {[w.name for w in out.iterdir()]}"
    return wheels[0]


@dataclass(frozen=True)
class Built:
    """The distributions built for this module, and the tracked files they came from."""

    tracked: list[str]
    wheel: Path
    sdist: Path
    wheel_from_sdist: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """sdist and wheel from a copy of the tracked files, then a second wheel from the sdist."""
    try:
        found = importlib.import_module("setuptools").__version__
    except ImportError:
        found = "none"
    if not found[0].isdigit() or int(found.split(".")[0]) < SETUPTOOLS:
        pytest.skip(f"packaging checks build without isolation (no network) and need setuptools>={SETUPTOOLS} in the test environment (found {found}): pip install 'setuptools>={SETUPTOOLS}'")
    tracked = _tracked()
    root = tmp_path_factory.mktemp("packaging")
    tree = root / "tree"
    for path in tracked:
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, tree / path)

    sdist_dir = root / "sdist"
    script = "import sys, setuptools.build_meta as backend; print(backend.build_sdist(sys.argv[1]))"
    done = _run([sys.executable, "-W", "always::DeprecationWarning", "-c", script, str(sdist_dir)], cwd=tree)
    # setuptools turns its deprecations into build errors at a stated date: one here is a build that will break.
    assert "SetuptoolsDeprecationWarning" not in done.stderr, f"building the sdist warns of deprecated configuration:\n{done.stderr[-3000:]}"
    name = done.stdout.strip().splitlines()[-1]
    sdist = sdist_dir / name
    assert sdist.is_file(), f"build_sdist reported {name!r} but {sdist} does not exist"

    wheel = _build_wheel(tree, root / "wheel")

    unpacked = root / "unpacked"
    with tarfile.open(sdist) as archive:
        archive.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (source,) = unpacked.iterdir()
    wheel_from_sdist = _build_wheel(source, root / "wheel-from-sdist")
    return Built(tracked, wheel, sdist, wheel_from_sdist)


def _wheel_files(wheel: Path) -> dict[str, str]:
    """``{name: sha256}`` of the wheel's files outside its ``.dist-info``."""
    with zipfile.ZipFile(wheel) as archive:
        return {n: hashlib.sha256(archive.read(n)).hexdigest() for n in archive.namelist() if ".dist-info/" not in n and not n.endswith("/")}


def _dist_info(wheel: Path, member: str) -> str | None:
    """The text of ``<dist-info>/<member>`` in the wheel, or None when it has none."""
    with zipfile.ZipFile(wheel) as archive:
        found = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(f".dist-info/{member}")]
        return archive.read(found[0]).decode() if found else None


def _installed_name(path: str) -> str | None:
    """Where a tracked package file lands in the wheel (``kernels/x.py`` -> ``sparse24/kernels/x.py``), or None."""
    top = path.split("/", 1)[0]
    if top == NAME:
        return path
    if top in MAPPED:
        return f"{NAME}/{path}"
    return None


def _packaged(path: str) -> bool:
    """Whether the tracked ``path`` belongs in the wheel: package .py files, CUDA sources, recipes."""
    installed = _installed_name(path)
    if installed is None or path.startswith("bench/results/"):
        return False
    return path.endswith(".py") or PurePosixPath(path).match("kernels/csrc/*") or PurePosixPath(path).match(f"{NAME}/recipes/*.yaml")


def test_wheel_has_one_top_level_name(built: Built) -> None:
    files = _wheel_files(built.wheel)
    tops = {PurePosixPath(n).parts[0].removesuffix(".py") for n in files}
    assert tops == {NAME}, f"{built.wheel.name} installs top-level names {sorted(tops - {NAME})} besides {NAME}: {sorted(n for n in files if not n.startswith(NAME + '/'))}"
    top_level = _dist_info(built.wheel, "top_level.txt")
    if top_level is not None:
        assert top_level.split() == [NAME], f"{built.wheel.name}'s top_level.txt lists {top_level.split()}, not just {NAME}"


def test_wheel_holds_the_package_data(built: Built) -> None:
    files = set(_wheel_files(built.wheel))
    expected = {_installed_name(p) for p in built.tracked if _packaged(p)}
    assert not expected - files, f"{built.wheel.name} lacks tracked package files: {sorted(expected - files)}"
    for pattern in ("sparse24/kernels/csrc/*.cu", "sparse24/kernels/csrc/*.cuh", "sparse24/kernels/csrc/*.cpp", "sparse24/kernels/csrc/emulate.h", "sparse24/recipes/*.yaml", "sparse24/trt_export/*.py", "sparse24/bench/*.py"):
        assert any(PurePosixPath(n).match(pattern) for n in files), f"{built.wheel.name} has no {pattern}"
    strays = sorted(n for n in files if n.startswith("tests/") or "/tests/" in n or "bench/results" in n or n.endswith(".pyc"))
    assert not strays, f"{built.wheel.name} ships files that are not the package: {strays}"
    unexpected = sorted(files - expected)
    assert not unexpected, f"{built.wheel.name} ships files that are not tracked package files: {unexpected}"


def test_wheel_metadata(built: Built) -> None:
    metadata = _dist_info(built.wheel, "METADATA") or ""
    extras = {line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Provides-Extra:")}
    assert extras == EXTRAS, f"{built.wheel.name} provides extras {sorted(extras)}, expected {sorted(EXTRAS)}"
    entry_points = _dist_info(built.wheel, "entry_points.txt") or ""
    assert re.search(r"^sparse24\s*=\s*sparse24\.cli:main$", entry_points, re.M), f"no 'sparse24 = sparse24.cli:main' console script in:\n{entry_points}"


def test_sdist_holds_the_source(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {PurePosixPath(n).relative_to(PurePosixPath(n).parts[0]).as_posix() for n in archive.getnames() if "/" in n}
    needed = {"pyproject.toml", "README.md"} | {p for p in built.tracked if _packaged(p)}
    assert not needed - names, f"{built.sdist.name} lacks source needed to rebuild: {sorted(needed - names)}"
    for folder in (NAME, *MAPPED, "kernels/csrc"):
        assert any(n.startswith(folder + "/") for n in names), f"{built.sdist.name} has no {folder}/"


def test_wheel_from_sdist_matches_wheel_from_tree(built: Built) -> None:
    tree, sdist = _wheel_files(built.wheel), _wheel_files(built.wheel_from_sdist)
    assert sorted(sdist) == sorted(tree), f"the wheel built from {built.sdist.name} differs in files: only from the sdist {sorted(set(sdist) - set(tree))}, only from the tree {sorted(set(tree) - set(sdist))}"
    changed = sorted(n for n in tree if tree[n] != sdist[n])
    assert not changed, f"the wheel built from {built.sdist.name} differs in content: {changed}"


@dataclass(frozen=True)
class Venv:
    """A fresh venv with the wheel installed, and what to run its commands with."""

    root: Path
    site: Path
    bin: Path
    env: dict[str, str]
    work: Path  # an empty working directory outside the checkout

    def python(self, code: str, **extra_env: str) -> dict:
        """Run ``code`` with the venv's python in ``work``; its last stdout line, parsed as JSON."""
        done = _run([str(self.bin / "python"), "-c", code], cwd=self.work, env={**self.env, **extra_env})
        return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv: the wheel installed with pip (no deps, no index), then a ``.pth`` to the dependencies."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root)
    python = root / "bin" / "python"
    # The test environment's pip installs into the fresh interpreter (pip --python); the venv has no
    # .pth yet, so pip sees no installed sparse24 there.
    _run(_pip("--python", str(python), "install", "--no-deps", "--no-index", "--no-cache-dir", str(built.wheel)), cwd=root)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).stdout.strip())
    # A .pth line adds a directory without running that directory's own .pth files: the checkout's
    # editable install (a .pth finder there) stays out of this venv.
    deps = sorted({str(Path(importlib.import_module(d).__file__).resolve().parents[1]) for d in DEPENDENCIES})
    (site / "_sparse24_test_deps.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env.update(PATH=f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONNOUSERSITE="1")
    work = tmp_path_factory.mktemp("work")
    assert REPO not in work.resolve().parents, f"{work} is inside the checkout {REPO}"
    return Venv(root, site, root / "bin", env, work)


_PROBE = """
import importlib, json, re
import sparse24
from sparse24.kernels import loader
import sparse24.kernels.ops as ops
import sparse24.trt_export, sparse24.bench
missing, found = {}, {}
for name in %r:
    try:
        found[name] = getattr(importlib.import_module(name), "__file__", None)
    except ModuleNotFoundError as e:
        missing[name] = e.name
compiled = sorted(set(re.findall(r'loader\\.(?:function|host_library)\\(\\s*"([^"]+\\.(?:cu|cpp))"', open(ops.__file__).read())))
print(json.dumps({
    "sparse24": sparse24.__file__,
    "path": list(sparse24.__path__),
    "modules": [m.__file__ for m in (sparse24.trt_export, sparse24.bench, ops)],
    "missing": missing,
    "found": found,
    "sources": str(loader.SOURCES),
    "listed": sorted(p.name for p in loader.SOURCES.iterdir()),
    "compiled": compiled,
    "readable": {name: len(loader.source_text(name)) for name in compiled},
}))
"""


@pytest.fixture(scope="module")
def probe(venv: Venv) -> dict:
    """What the installed package reports about itself, from the fresh venv."""
    return venv.python(_PROBE % (MAPPED,))


def test_installed_package_resolves_in_the_venv(venv: Venv, probe: dict) -> None:
    for path in (probe["sparse24"], *probe["path"], *probe["modules"]):
        assert Path(path).resolve().is_relative_to(venv.site.resolve()), f"in the fresh venv, {path} is not inside its site-packages {venv.site} (the checkout's copy leaked in?)"
    assert len(probe["path"]) == 1, f"the installed sparse24.__path__ gained extra entries: {probe['path']}"


def test_mapped_folders_are_not_top_level_in_the_venv(venv: Venv, probe: dict) -> None:
    # another distribution's package of that name may import (Hugging Face's kernels, which transformers 5.25 requires,
    # borrowed here with the dependencies): never one the wheel installed, nor a namespace package with no file
    ours = {name: path for name, path in probe["found"].items() if path is None or Path(path).resolve().is_relative_to(venv.site.resolve())}
    assert not ours, f"in the fresh venv these import from the wheel's install as top-level packages: {ours}"
    assert probe["missing"] == {m: m for m in MAPPED if m not in probe["found"]}, f"ModuleNotFoundError named other modules: {probe['missing']}"


def test_installed_kernel_sources(venv: Venv, probe: dict) -> None:
    sources = Path(probe["sources"])
    assert sources.resolve().is_relative_to(venv.site.resolve()), f"sparse24.kernels.loader.SOURCES is {sources}, not inside the fresh venv's {venv.site}"
    assert {"compress.cu", "small_m.cu", "mma_sp.cu", "mask_cpu.cpp"} <= set(probe["compiled"]), f"the kernel wrappers compile {probe['compiled']}; expected at least compress.cu, small_m.cu, mma_sp.cu, mask_cpu.cpp (the probe's regex is out of date?)"
    needed = {*probe["compiled"], "common.cuh", "emulate.h"}
    assert needed <= set(probe["listed"]), f"the installed {sources} lacks {sorted(needed - set(probe['listed']))} (has {probe['listed']})"
    empty = sorted(name for name, size in probe["readable"].items() if not size)
    assert not empty, f"loader.source_text read empty kernel sources: {empty}"


def test_console_script_outside_the_checkout(venv: Venv) -> None:
    script = venv.bin / "sparse24"
    assert script.is_file(), f"the wheel installed no console script at {script}"
    shown = _run([str(script), "--help"], cwd=venv.work, env=venv.env).stdout
    assert "prune" in shown and "verify" in shown, f"`sparse24 --help` does not list prune and verify:\n{shown}"
    out = venv.work / "X.safetensors"
    _run([str(script), "prune", "sparse24.demo:DigitsResNet", "--method", "magnitude", "--out", str(out)], cwd=venv.work, env=venv.env)
    assert out.is_file() and out.stat().st_size > 0, f"`sparse24 prune ... --out {out}` exited 0 but wrote no file"
    verified = _run([str(script), "verify", str(out)], cwd=venv.work, env=venv.env).stdout
    assert any(line.startswith("OK") for line in verified.splitlines()), f"`sparse24 verify {out}` printed no OK line:\n{verified}"


_EMULATE = """
import json, torch, sparse24
from sparse24.kernels import emulate, loader, ops, reference
if emulate.unavailable():
    print(json.dumps({"unavailable": emulate.unavailable()}))
    raise SystemExit
torch.manual_seed(0)
weight = torch.randn(32, 64).to(torch.float16)
weight = weight * sparse24.two_four_mask(weight.float().abs())
with emulate.launches() as record:
    values, meta = ops.compress(weight)
want_values, want_meta = reference.compress(weight)
print(json.dumps({
    "launches": len(record),
    "values": torch.equal(values, want_values),
    "meta": torch.equal(meta, want_meta),
    "built": sorted(p.name for p in (loader.cache_dir() / "emulate").glob("*.so")),
}))
"""


def test_installed_kernel_runs_in_the_emulation(venv: Venv) -> None:
    """compress.cu from the installed wheel, compiled for the CPU emulation (fresh cache), matches the reference."""
    cache = venv.work / "kernel-cache"
    result = venv.python(_EMULATE, SPARSE24_KERNELS="emulate", SPARSE24_KERNEL_CACHE=str(cache))
    if "unavailable" in result:
        pytest.skip(f"the kernel emulation cannot run here: {result['unavailable']}")
    assert result["launches"] >= 1, "ops.compress ran no emulated launch with SPARSE24_KERNELS=emulate"
    assert result["values"] and result["meta"], f"the emulated compress.cu from the wheel disagrees with the reference: {result}"
    assert any(name.startswith("compress-") for name in result["built"]), f"no emulated compress library was built in the fresh cache {cache}: {result['built']}"


# --- lint: the mapped folders are reached as sparse24.<name> only ---------------------------------

_NAMES = "|".join(MAPPED)
_IMPORT = re.compile(rf"^[ \t]*(?:from|import)[ \t]+(?:{_NAMES})\b|(?:import_module|__import__)\(\s*[\"'](?:{_NAMES})\b", re.M)
_RUN_MODULE = re.compile(rf"(?:-m[ \t]+|[\"']-m[\"']\s*,\s*[\"'])(?:{_NAMES})\b")
_RECORDS = "bench/results/"  # result files record the commands that made them, as they were run


def _offences(pattern: re.Pattern[str], text: str) -> list[str]:
    """``line: text`` of each line of ``text`` that ``pattern`` matches."""
    return [f"{text.count(chr(10), 0, m.start()) + 1}: {text[text.rfind(chr(10), 0, m.start()) + 1:].splitlines()[0].strip()}" for m in pattern.finditer(text)]


def _lint(files: list[str], pattern: re.Pattern[str]) -> list[str]:
    found = []
    for path in files:
        text = (REPO / path).read_text(encoding="utf-8", errors="replace")
        found += [f"{path}:{offence}" for offence in _offences(pattern, text)]
    return found


def test_no_top_level_imports_of_mapped_folders() -> None:
    found = _lint([p for p in _tracked() if p.endswith(".py")], _IMPORT)
    assert not found, "these lines import kernels/trt_export/bench by top-level names, which an install lacks (use sparse24.kernels, ...):\n" + "\n".join(found)


def test_no_python_m_of_mapped_folders() -> None:
    files = [p for p in _tracked() if not p.startswith(_RECORDS) and (p.endswith((".py", ".md", ".toml", ".cfg", ".yaml", ".yml", ".sh")) or PurePosixPath(p).name == "Makefile" or p.startswith(".ci/"))]
    assert "Makefile" in files and "README.md" in files, f"the lint no longer reads the Makefile and README: {files}"
    found = _lint(files, _RUN_MODULE)
    assert not found, "these lines run kernels, trt_export or bench as top-level modules with python's -m flag, which an install lacks (use `python -m sparse24.bench`, ...):\n" + "\n".join(found)


def test_the_checkouts_kernels_folder_never_shadows_another_kernels_package(tmp_path: Path) -> None:
    """From the checkout's root (``python -m``/``-c`` put it first on sys.path) a top-level ``kernels`` import gets another
    installed ``kernels`` package (Hugging Face's, which transformers 5.25 requires and imports; a stand-in here), with its
    submodules, not the kernels/ folder; sparse24.kernels is still ours. Without one, it is an empty namespace package."""
    other = tmp_path / "site" / "kernels"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text('MARK = "other"\n')
    (other / "sub.py").write_text("VALUE = 7\n")
    code = "import kernels, sparse24.kernels as ours; from kernels.sub import VALUE; print(kernels.MARK, kernels.__file__, VALUE, ours.kernels_unavailable.__module__)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = _run([sys.executable, "-c", code], cwd=REPO, env=env)
    assert done.stdout.split() == ["other", str(other / "__init__.py"), "7", "sparse24.kernels.loader"]
    # Without another one (-S: no site-packages, so none is installed), ``import kernels`` gets an empty namespace
    # package: find_spec finds the folder, but the module has no __file__ and no __version__, which is what package
    # checks (transformers' is_kernels_available imports the name) take for "not installed". Raising there made
    # ``from transformers import BertModel`` fail on a GPU machine without Hugging Face's kernels.
    check = (
        "import importlib.util, kernels\n"
        "print(importlib.util.find_spec('kernels') is not None, getattr(kernels, '__version__', 'N/A'), getattr(kernels, '__file__', None))\n"
        "print(kernels.__doc__)\n"
        "for statement in ('from kernels import get_kernel', 'import kernels.layers'):\n"
        "    try:\n"
        "        exec(statement)\n"
        "    except ImportError as error:\n"
        "        print(type(error).__name__)\n"
    )
    alone = _run([sys.executable, "-S", "-c", check], cwd=REPO, env={**os.environ, "PYTHONPATH": ""})
    found, doc, *errors = alone.stdout.splitlines()
    assert found == "True N/A None", alone.stdout
    assert doc == f"Not installed: {REPO}/kernels is sparse24.kernels, not a 'kernels' package.", alone.stdout
    assert errors == ["ImportError", "ModuleNotFoundError"], alone.stdout


# The offending forms are assembled from pieces, so this file does not match its own lint.
@pytest.mark.parametrize(
    ("line", "pattern", "offends"),
    [
        ("from " + "kernels import ops", _IMPORT, True),
        ("    import " + "bench.stats as stats", _IMPORT, True),
        ("from " + "trt_export.export import export_onnx", _IMPORT, True),
        ("x = importlib.import_module('" + "bench.cli')", _IMPORT, True),
        ("from sparse24 import kernels", _IMPORT, False),
        ("from sparse24.bench import stats", _IMPORT, False),
        ("import kernels_extra", _IMPORT, False),
        ("# see bench/results", _IMPORT, False),
        ("\t$(PY) -m " + "bench gemm --quick", _RUN_MODULE, True),
        ("python -m " + "trt_export.export model.onnx", _RUN_MODULE, True),
        ("subprocess.run([sys.executable, '-m', '" + "kernels'])", _RUN_MODULE, True),
        ("python -m sparse24.bench readme", _RUN_MODULE, False),
        ("[sys.executable, '-m', 'sparse24.kernels']", _RUN_MODULE, False),
        ("pytest -m cuda", _RUN_MODULE, False),
    ],
)
def test_lint_patterns(line: str, pattern: re.Pattern[str], offends: bool) -> None:
    assert bool(_offences(pattern, f"a = 1\n{line}\n")) is offends, f"the lint {'misses' if offends else 'flags'} {line!r}"
