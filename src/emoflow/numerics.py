"""One CPU code path for every number emoflow computes, whatever x86-64 CPU runs it.

PyTorch's own kernels (``ATEN_CPU_CAPABILITY``), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``),
MKL (``MKL_CBWR``) and numpy's/scipy's OpenBLAS (``OPENBLAS_CORETYPE``) each pick SIMD kernels
for the CPU they find, and kernels of another width sum in another order: on this project's
machine a visual branch trained with oneDNN and ATen capped at AVX2 gives other predictions
than the same training with AVX-512 (the thread count, 1, 2 or 4, changed nothing). So every
emoflow process caps all four at AVX2 (Haswell), which every x86-64 CPU of the last decade has
and on which AVX2 and AVX-512 machines then run the same kernels. The libraries read these
variables when they load, so this runs when ``emoflow`` is imported, before torch or numpy's
BLAS are; Snakemake jobs inherit it from the Snakemake process (the workflow imports emoflow).

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
}
SWITCH = "EMOFLOW_CPU_NUMERICS"  # "pinned" (default) or "native"


def native() -> bool:
    """True when ``EMOFLOW_CPU_NUMERICS=native`` leaves the kernel choice to the libraries."""
    return os.environ.get(SWITCH, "pinned") == "native"


def pin_cpu_numerics() -> None:
    """Cap the CPU kernels of torch, oneDNN, MKL and OpenBLAS at AVX2 (overriding the caller's
    values), unless ``EMOFLOW_CPU_NUMERICS=native``."""
    if not native():
        os.environ.update(PINNED_ENV)


def cpu_numerics() -> dict[str, str]:
    """What this process runs with, for the provenance: the mode and torch's CPU capability."""
    import torch

    mode = "native" if native() else "pinned AVX2"
    return {"mode": mode, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
