"""One CPU code path for every number emoflow computes, whatever x86-64 CPU runs it.

PyTorch's own kernels (``ATEN_CPU_CAPABILITY``), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``),
MKL (``MKL_CBWR``), numpy's/scipy's OpenBLAS (``OPENBLAS_CORETYPE``) and numpy's own ufunc
loops (``NPY_DISABLE_CPU_FEATURES``) each pick SIMD kernels for the CPU they find, and kernels
of another width sum or round in another order: on this project's machine a visual branch
trained with oneDNN and ATen capped at AVX2 gives other predictions than the same training with
AVX-512 (the thread count, 1, 2 or 4, changed nothing), and numpy's AVX-512 loops give other
bits than its AVX2 ones for ``log10``/``power`` of float32 and ``exp``/``log`` of float64 (the
demo's log-mels and its generated clips). So every emoflow process caps all five at AVX2
(Haswell; numpy's ``X86_V3``), which every x86-64 CPU of the last decade has and on which AVX2
and AVX-512 machines then run the same kernels. The libraries read these variables when they
load, so this runs when ``emoflow`` is imported, before torch or numpy are; Snakemake jobs
inherit it from the Snakemake process (the workflow imports emoflow).

``EMOFLOW_CPU_NUMERICS=native`` leaves the libraries to choose (faster on AVX-512, numbers
then depend on the CPU). What applied is recorded in the report's provenance.
"""

from __future__ import annotations

import os

PINNED_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    # numpy 2.4's dispatch targets above X86_V3 (AVX2 + FMA3); disabling one the CPU lacks is
    # allowed, so every machine may set the same value
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
SWITCH = "EMOFLOW_CPU_NUMERICS"  # "pinned" (default) or "native"


def native() -> bool:
    """True when ``EMOFLOW_CPU_NUMERICS=native`` leaves the kernel choice to the libraries."""
    return os.environ.get(SWITCH, "pinned") == "native"


def pin_cpu_numerics() -> None:
    """Cap the CPU kernels of torch, oneDNN, MKL, OpenBLAS and numpy at AVX2 (overriding the
    caller's values), unless ``EMOFLOW_CPU_NUMERICS=native``."""
    if not native():
        os.environ.update(PINNED_ENV)


def numpy_simd() -> str:
    """The SIMD targets numpy's ufunc loops dispatch to in this process (``X86_V3`` where
    pinned), space-separated; empty on a CPU without AVX2."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return " ".join(t for t in __cpu_dispatch__ if __cpu_features__.get(t))


def cpu_numerics() -> dict[str, str]:
    """What this process runs with, for the provenance: the mode, torch's CPU capability and
    numpy's SIMD targets."""
    import torch

    mode = "native" if native() else "pinned AVX2"
    return {"mode": mode, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "numpy_simd": numpy_simd()}  # fmt: skip
