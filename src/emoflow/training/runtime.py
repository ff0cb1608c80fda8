"""The runtime of a training job: device, seeds, threads, deterministic algorithms, mixed
precision, and the test hook that stops a run after an epoch."""

from __future__ import annotations

import os
import random
import signal
from typing import Any

import numpy as np
import torch

from emoflow.errors import EmoflowError

STOP_ENV = "EMOFLOW_STOP_AFTER_EPOCH"  # test hook, see stop_hook


class TrainingInterrupted(EmoflowError):
    """Raised by the test hook (``EMOFLOW_STOP_AFTER_EPOCH``) after a checkpoint is written."""


def stop_hook(epoch: int) -> None:
    """Test hook: ``EMOFLOW_STOP_AFTER_EPOCH=N`` raises after epoch N; ``N:kill`` SIGKILLs."""
    value = os.environ.get(STOP_ENV, "")
    if value.split(":")[0] != str(epoch):
        return
    if value.endswith(":kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    raise TrainingInterrupted(f"stopped after epoch {epoch} ({STOP_ENV})")


def select_device(train_cfg: dict[str, Any]) -> torch.device:
    """CUDA when available and allowed by ``train.device``; ``cuda`` without a GPU is an error."""
    wanted = train_cfg.get("device", "auto")
    if wanted == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if wanted == "cuda":
        raise EmoflowError("train.device is 'cuda' but no CUDA device is available")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_runtime(train_cfg: dict[str, Any], seed: int) -> None:
    """Threads, seeds and deterministic algorithms as the ``train`` config asks.

    ``train.threads`` (default 2) fixes torch's intra-op thread count whatever the job was given
    (Snakemake sets ``OMP_NUM_THREADS`` to the rule's threads, which ``--cores`` lowers), so a
    kernel that splits its sums by thread cannot make the count matter (1, 2 and 4 threads gave
    the same predictions here; the CPU kernels did not, see :mod:`emoflow.numerics`)."""
    if train_cfg.get("threads"):
        torch.set_num_threads(int(train_cfg["threads"]))
    deterministic = bool(train_cfg.get("deterministic", True))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False
    seed_everything(seed)


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> Any:
    """Mixed precision on CUDA when ``amp_dtype`` is set; a no-op context otherwise."""
    if device.type == "cuda" and amp_dtype is not None:
        return torch.autocast("cuda", dtype=amp_dtype)
    return torch.autocast("cpu", enabled=False)
