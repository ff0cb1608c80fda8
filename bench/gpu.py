"""Training throughput on a device: per branch, epoch time and samples/s with and without mixed
precision, the loader's share of step time, peak GPU memory, the CPU epoch for the ratio, and
whether two runs from one seed give identical predictions (deterministic mode).

    bench/gpu.sh                                   # on a GPU machine (one command, one table)
    .venv/bin/python bench/gpu.py --device cpu --clips 24 --epochs 1   # dry check here

The model, loss, optimizer, loader and on-device input preparation are emoflow's own
(`emoflow.training.train`, `emoflow.training.datasets`) on a generated corpus at real shard sizes
(bench/synthetic.py). Loader share = time waiting for the next batch / (wait + step), with the
device synchronised after each step. Figures, never pass/fail; writes bench/results/gpu.csv.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "bench"))

from synthetic import CLASSES, make_shards  # noqa: E402

from emoflow.models.arch import build_branch_model, model_arch  # noqa: E402
from emoflow.models.losses import branch_loss  # noqa: E402
from emoflow.storage.shards import open_shards  # noqa: E402
from emoflow.training.datasets import AudioClips, AudioWindows, FaceClips, FaceWindows  # noqa: E402
from emoflow.training.evaluate import evaluate, model_inputs  # noqa: E402
from emoflow.training.loaders import make_loader  # noqa: E402
from emoflow.training.normalisation import fit_audio_norm, fit_face_norm  # noqa: E402
from emoflow.training.runtime import autocast, setup_runtime  # noqa: E402

TRAIN_CFG = {"target": "categorical", "deterministic": True, "embedding_dim": 64}


def datasets(corpus: dict, branch: str, size: int = 64) -> tuple[Any, Any, dict]:
    """Training windows, evaluation clips (the first 64) and the normalisation."""
    ids, targets = corpus["ids"], corpus["targets"]
    kind = "audio" if branch == "audio" else "faces"
    shards = open_shards(corpus[kind], kind)
    if branch == "audio":
        norm = fit_audio_norm(shards, ids[:200])
        return AudioWindows(shards, ids, targets), AudioClips(shards, ids[:64], targets), norm
    norm = fit_face_norm(shards, ids[:200], size)
    train = FaceWindows(shards, ids, targets, size)
    return train, FaceClips(shards, ids[:64], targets, size), norm


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(corpus: dict, branch: str, device: torch.device, amp: bool, args: Any) -> dict:
    """Train ``args.epochs`` epochs from seed 0; return timings and the evaluation outputs."""
    setup_runtime(TRAIN_CFG, 0)
    train_ds, eval_ds, norm = datasets(corpus, branch)
    model = build_branch_model(branch, model_arch(branch, TRAIN_CFG, len(CLASSES))).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    amp_dtype = None
    if amp and device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    wait = step = 0.0
    epoch_times = []
    samples = 0
    for epoch in range(args.epochs):
        pin = device.type == "cuda"
        loader = make_loader(
            train_ds, args.batch, True, 0, epoch, num_workers=args.workers, pin_memory=pin
        )
        t_epoch = t = time.perf_counter()
        for batch in loader:
            t_batch = time.perf_counter()
            wait += t_batch - t
            opt.zero_grad(set_to_none=True)
            with autocast(device, amp_dtype):
                out = model(*model_inputs(branch, batch, norm, device))
            out = {k: v.float() for k, v in out.items()}
            loss = branch_loss(out, batch[-2].to(device), batch[-1].to(device), "categorical", None)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sync(device)
            t = time.perf_counter()
            step += t - t_batch
            samples += len(batch[-2])
        epoch_times.append(time.perf_counter() - t_epoch)
    outputs = evaluate(model, branch, eval_ds, args.batch, device, norm, amp_dtype)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return {
        "epoch_s": float(np.mean(epoch_times[1:] or epoch_times)),
        "samples_per_s": samples / sum(epoch_times),
        "loader_share": wait / (wait + step),
        "peak_mib": peak,
        "logits": outputs.logits,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--cpu-clips", type=int, default=None,
                        help="clips for the CPU comparison epoch (default: all)")  # fmt: skip
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA device here; use --device cpu for a dry check")
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        corpus = make_shards(Path(tmp), args.clips, n_shards=8)
        print(f"corpus: {args.clips} clips, {time.perf_counter() - t:.1f} s to write", flush=True)
        for branch in ("audio", "visual"):
            runs = {"fp32": run(corpus, branch, device, False, args)}
            runs["fp32 again"] = run(corpus, branch, device, False, args)
            if device.type == "cuda":
                runs["amp"] = run(corpus, branch, device, True, args)
                cpu_args = argparse.Namespace(**{**vars(args), "epochs": 1})
                cpu = run(corpus, branch, torch.device("cpu"), False, cpu_args)["epoch_s"]
            else:
                cpu = runs["fp32"]["epoch_s"]
            a, b = runs["fp32"]["logits"], runs["fp32 again"]["logits"]
            diff = float(np.abs(a - b).max())
            for name in [n for n in runs if n != "fp32 again"]:
                r = runs[name]
                rows.append({
                    "branch": branch, "precision": name, "epoch_s": round(r["epoch_s"], 2),
                    "samples_per_s": round(r["samples_per_s"]),
                    "loader_share": round(r["loader_share"], 3),
                    "peak_gpu_mib": round(r["peak_mib"]) if r["peak_mib"] == r["peak_mib"] else "-",
                    "cpu_epoch_s": round(cpu, 2), "cpu_over_device": round(cpu / r["epoch_s"], 1),
                    "rerun_max_abs_diff": diff,
                })  # fmt: skip
                print(rows[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "gpu.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    cols = list(rows[0])
    print("\n| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
