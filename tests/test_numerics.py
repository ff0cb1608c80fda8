"""Numbers that hold on any machine: a retrained branch gives the same bytes whatever the
thread count and the CPU kernels the host asks for, and the workflow gives the same tables with
``--cores 1`` and ``--cores 2`` (see :mod:`emoflow.numerics`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emoflow.config import validate_config
from emoflow.numerics import PINNED_ENV, SWITCH
from tests.workflow import linked_clips, snakemake, write_config

sys.path.insert(0, str(Path(__file__).parent))
from shardmaker import make_corpus  # noqa: E402

TRAIN = """
import json, sys
from pathlib import Path
from emoflow.training.train import run_training
from tests.shardmaker import make_config
c = json.loads(sys.argv[1])
config = make_config(epochs=4, lr=0.01, threads=2)
run_training(config, "visual", 0, 0, Path(c["manifest"]), Path(c["folds"]),
             [Path(p) for p in c["visual"]], Path(c["out"]))
import torch
print(json.dumps({"threads": torch.get_num_threads(),
                  "capability": torch.backends.cpu.get_cpu_capability()}))
"""

# What a host may set: a thread count from Snakemake (--cores) and the kernels of its CPU.
HOSTS = {
    "1 thread, AVX-512 asked": {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx512",
                                "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "2 threads, SSE4.1 asked": {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "default",
                                "ONEDNN_MAX_CPU_ISA": "SSE41", "OPENBLAS_CORETYPE": "Prescott"},
}  # fmt: skip


def retrain(corpus: dict[str, Any], out: Path, env: dict[str, str]) -> tuple[bytes, dict]:
    """The visual branch of fold 0, seed 0, trained in a fresh process with ``env`` added."""
    args = {k: str(corpus[k]) for k in ("manifest", "folds")}
    args |= {"visual": [str(p) for p in corpus["visual"]], "out": str(out)}
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN, json.dumps(args)], env={**os.environ, **env},
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (out / "predictions.parquet").read_bytes(), json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_corpus(tmp_path_factory.mktemp("numerics"))


def test_a_retrained_branch_ignores_the_hosts_threads_and_cpu_kernels(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    got = {name: retrain(corpus, tmp_path / f"run{i}", env) for i, (name, env) in
           enumerate(HOSTS.items())}  # fmt: skip
    (first, info_a), (second, info_b) = got.values()
    assert first == second  # byte-identical predictions
    assert info_a == info_b == {"threads": 2, "capability": "AVX2"}  # train.threads; pinned
    # the same host settings are obeyed when asked for (EMOFLOW_CPU_NUMERICS=native): the pin
    # is what makes the runs agree
    native = {**HOSTS["2 threads, SSE4.1 asked"], SWITCH: "native"}
    _, info = retrain(corpus, tmp_path / "native", native)
    assert info["capability"] == "DEFAULT"


def test_every_emoflow_process_pins_the_cpu_kernels() -> None:
    code = "import emoflow, os, json; print(json.dumps({k: os.environ[k] for k in %r}))"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx512", "OPENBLAS_CORETYPE": "SkylakeX"}
    out = subprocess.run([sys.executable, "-c", code % list(PINNED_ENV)], env=env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert json.loads(out) == PINNED_ENV
    # and a config without train.threads trains on a fixed count, whatever the job is given
    raw = {"dataset": {"name": "x", "adapter": "ravdess", "root": "d"}}
    assert validate_config(raw)["train"]["threads"] == 2


NUMPY_LOOPS = """
%s
import hashlib, numpy as np
from emoflow.numerics import numpy_simd
x = np.linspace(0.01, 40.0, 100003)
out = [np.log10(x.astype(np.float32)), np.power(x.astype(np.float32), 0.3), np.exp(-x), np.log(x)]
print(numpy_simd(), hashlib.sha256(b"".join(a.tobytes() for a in out)).hexdigest())
"""


def test_numpy_runs_its_avx2_loops_in_every_emoflow_process() -> None:
    """numpy's AVX-512 loops round log10 and power of float32, exp and log of float64 otherwise
    than its AVX2 ones (on this project's AVX-512 machine): an emoflow process, whatever the host
    asks for, computes them as a process limited to numpy's AVX2 loops does."""

    def run(first: str, env: dict[str, str]) -> list[str]:
        out = subprocess.run([sys.executable, "-c", NUMPY_LOOPS % first],
                             env={**os.environ, **env}, capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        return out.split()

    pinned = run("import emoflow", {"NPY_DISABLE_CPU_FEATURES": ""})  # the host asks for all
    avx2 = run("import numpy", {"NPY_DISABLE_CPU_FEATURES": PINNED_ENV["NPY_DISABLE_CPU_FEATURES"]})
    assert pinned[0] == "X86_V3"
    assert pinned == avx2


@pytest.mark.slow
def test_cores_1_and_cores_2_give_byte_identical_tables(demo32: Path, tmp_path: Path) -> None:
    """24 demo clips (6 actors; 8 face frames per window, 32 mel bands), both branches, fold 0
    of 3, fusion fitted on 2 inner folds (the default fit): the whole workflow with
    ``--cores 1`` and with ``--cores 2`` (Snakemake then gives the train jobs 1 or 2 threads
    and OMP_NUM_THREADS to match)."""
    corpus = tmp_path / "data"
    linked_clips(demo32, corpus, 24)
    reports = {}
    for cores in (1, 2):
        base = tmp_path / f"cores{cores}"
        base.mkdir()
        cfg = write_config(base / "cfg.yaml", corpus, base / "results", shards=1,
                           folds={"k": 3, "only": [0]}, bundle={"mode": "fold0"},
                           fusion={"fit_on": "inner", "inner_folds": 2},
                           faces={"frames": 8}, audio={"n_mels": 32})  # fmt: skip
        snakemake(cfg, cores=cores)
        reports[cores] = base / "results" / "t"
    one, two = reports[1], reports[2]
    # fusion was fitted on out-of-fold predictions of every clip of the fold's training part
    inner = sorted(one.rglob("inner*/predictions.parquet"))
    assert len(inner) == 4  # 2 branches x 2 inner folds
    fit = json.loads((one / "fusion" / "fold0" / "seed0.json").read_text())["fusion_fit"]
    assert [fit[m]["on"] for m in ("late", "stacking", "feature")] == [
        "inner", "inner", "training part"]  # fmt: skip
    assert all(f["n_clips"] == f["n_training_part"] >= 12 for f in fit.values())
    table = (one / "report" / "results.md").read_text()
    assert "speakers per fold (out-of-fold, inner folds)" in table
    for name in ("results.csv", "results.md", "results.tex", "per_class.csv"):
        assert (one / "report" / name).read_bytes() == (two / "report" / name).read_bytes(), name
    for pred in sorted(one.rglob("predictions.parquet")) + sorted(one.rglob("fold0/*.parquet")):
        assert pred.read_bytes() == (two / pred.relative_to(one)).read_bytes(), pred
    provenance = json.loads((one / "report" / "provenance.json").read_text())
    other = json.loads((two / "report" / "provenance.json").read_text())
    assert provenance.pop("config_hash") != other.pop("config_hash")  # its results path
    assert provenance == other
    assert provenance["train_threads"] == 2
    assert provenance["cpu_numerics"] == {"mode": "pinned AVX2", "torch_cpu_capability": "AVX2",
                                          "numpy_simd": "X86_V3"}  # fmt: skip
