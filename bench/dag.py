"""Benchmark: Snakemake DAG build (dry-run) time versus the number of clips.

For each clip count N (default 1k, 10k, 100k) this script
1. generates a fake RAVDESS-style dataset folder of N empty ``.mp4`` files, every one a valid
   clip (``Actor_XX/MM-VC-EE-II-SS-RR-AA.mp4``, past 2,880 names in subfolders
   ``Actor_XX/set_NNN/``),
2. writes a config YAML with ``dataset.root`` pointing at it and ``results`` in a scratch folder,
3. times ``snakemake -n --cores 1 --configfile <cfg>`` run in the repository root, cold (empty
   results folder: the Snakefile's scan hashes every clip) and warm (again, nothing changed),
and prints a table and writes ``bench/results/dag.csv``. Figures only: it never fails on time.

    .venv/bin/python bench/dag.py                      # 1000 10000 100000
    .venv/bin/python bench/dag.py --clips 1000 --repeats 3 --shards 16

The Snakefile scans the dataset when it is parsed (in the main process), so the time includes
the scan and writing the manifest and shard lists, then the DAG over shards, folds and seeds.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS_CSV = REPO / "bench" / "results" / "dag.csv"
DEFAULT_SCRATCH = Path(os.environ.get("TMPDIR", "/tmp")) / "emoflow-bench-dag"
ACTORS = range(1, 25)
MODALITIES = (1, 2)  # 01 full audio-video, 02 video-only
EMOTIONS = range(1, 9)  # 01 neutral ... 08 surprised
STATEMENTS = (1, 2)
REPETITIONS = (1, 2)


@dataclass
class Row:
    """One measured dry run."""

    clips: int
    shards: int
    repeat: int
    mode: str
    generate_s: float
    dryrun_s: float
    returncode: int
    jobs: int | None
    snakemake: str


def ravdess_names(count: int) -> Iterator[str]:
    """Yield ``count`` unique, valid RAVDESS-style relative paths, deterministic in order.

    Fields: modality, vocal channel (01 speech), emotion, intensity (neutral has only 01),
    statement, repetition (01-02), actor. Every name passes the adapter's range checks, so each
    file is a clip of the manifest (not a scan failure). One set has 2,880 names; past it the
    names repeat in numbered subfolders (``Actor_XX/set_NNN/...``: the clip id is the relative
    path and the adapter reads only the file name).
    """
    made = 0
    for batch in itertools.count(0):
        for actor, repetition, modality, emotion, statement in itertools.product(
            ACTORS, REPETITIONS, MODALITIES, EMOTIONS, STATEMENTS
        ):
            for intensity in (1,) if emotion == 1 else (1, 2):
                name = (
                    f"{modality:02d}-01-{emotion:02d}-{intensity:02d}-"
                    f"{statement:02d}-{repetition:02d}-{actor:02d}.mp4"
                )
                folder = f"Actor_{actor:02d}" + (f"/set_{batch:03d}" if batch else "")
                yield f"{folder}/{name}"
                made += 1
                if made == count:
                    return


def make_dataset(root: Path, count: int) -> float:
    """Create ``root`` with ``count`` empty clips (replacing what was there); return seconds."""
    start = time.perf_counter()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    made_dirs: set[str] = set()
    for rel in ravdess_names(count):
        folder = rel.rsplit("/", 1)[0]
        if folder not in made_dirs:
            (root / folder).mkdir(parents=True, exist_ok=True)
            made_dirs.add(folder)
        (root / rel).touch()
    return time.perf_counter() - start


def write_config(path: Path, *, root: Path, results: Path, shards: int | None) -> None:
    """Write a config overlay (merged on top of the Snakefile's configfile by Snakemake)."""
    config: dict[str, object] = {
        "dataset": {"name": "benchdag", "adapter": "ravdess", "root": str(root)},
        "results": str(results),
    }
    if shards is not None:
        config["shards"] = shards
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def count_jobs(output: str) -> int | None:
    """Return the ``total`` of Snakemake's job-stats table, or None when it printed none."""
    matches = re.findall(r"^total\s+(\d+)\s*$", output, flags=re.MULTILINE)
    return int(matches[-1]) if matches else None


def snakemake_version(snakemake: str) -> str:
    """Return ``snakemake --version``."""
    out = subprocess.run([snakemake, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def dry_run(snakemake: str, config: Path, timeout_s: int, log: Path) -> tuple[float, int, str]:
    """Time one ``snakemake -n --cores 1 --configfile <config>`` in the repository root."""
    cmd = ["timeout", "-k", "10", str(timeout_s), snakemake, "-n", "--cores", "1"]
    cmd += ["--configfile", str(config)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    log.write_text(f"$ {' '.join(cmd)}\n{output}")
    return elapsed, proc.returncode, output


def print_table(rows: Sequence[Row]) -> None:
    """Print the median dry-run time per clip count, cold and warm."""
    print(
        f"{'clips':>8} {'shards':>6} {'runs':>4} {'jobs':>6} {'generate s':>10} "
        f"{'cold s':>8} {'warm s':>8}"
    )
    for clips in sorted({row.clips for row in rows}):
        group = [row for row in rows if row.clips == clips]
        cells = []
        for mode in ("cold", "warm"):
            ok = [row.dryrun_s for row in group if row.mode == mode and row.returncode == 0]
            cells.append(f"{statistics.median(ok):8.2f}" if ok else f"{'failed':>8}")
        jobs = next((row.jobs for row in group if row.jobs is not None), "-")
        shards = group[0].shards if group[0].shards >= 0 else "cfg"
        runs = len(group) // 2
        print(
            f"{clips:>8} {shards!s:>6} {runs:>4} {jobs!s:>6} {group[0].generate_s:10.2f} "
            + " ".join(cells)
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=1, help="dry runs per clip count")
    parser.add_argument("--shards", type=int, default=None, help="override config shards")
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per dry run")
    parser.add_argument("--csv", type=Path, default=RESULTS_CSV)
    parser.add_argument(
        "--snakemake", default=str(Path(sys.executable).parent / "snakemake"), help="executable"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated datasets")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 1 when the workflow is missing or a dry run failed."""
    args = parse_args(argv)
    if not (REPO / "Snakefile").exists() and not (REPO / "workflow" / "Snakefile").exists():
        print(f"no Snakefile in {REPO} yet: nothing to benchmark", file=sys.stderr)
        return 1
    version = snakemake_version(args.snakemake)
    rows: list[Row] = []
    for clips in args.clips:
        base = args.scratch / f"n{clips}"
        root, results = base / "data", base / "results"
        generate_s = make_dataset(root, clips)
        config = base / "config.yaml"
        write_config(config, root=root, results=results, shards=args.shards)
        for repeat, mode in itertools.product(range(args.repeats), ("cold", "warm")):
            # cold: empty results folder (full scan + hashing); warm: right after a cold run,
            # nothing changed (the scan reuses hashes by size and mtime).
            if mode == "cold" and results.exists():
                shutil.rmtree(results)
            log = base / f"dryrun-{repeat}-{mode}.log"
            elapsed, rc, output = dry_run(args.snakemake, config, args.timeout, log)
            rows.append(
                Row(
                    clips=clips,
                    shards=args.shards if args.shards is not None else -1,
                    repeat=repeat,
                    mode=mode,
                    generate_s=round(generate_s, 3),
                    dryrun_s=round(elapsed, 3),
                    returncode=rc,
                    jobs=count_jobs(output),
                    snakemake=version,
                )
            )
            status = "ok" if rc == 0 else f"rc={rc}, log {log}"
            print(f"clips={clips} {mode} #{repeat}: {elapsed:.2f} s ({status})", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(root)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    print_table(rows)
    print(f"wrote {args.csv}")
    return 0 if all(row.returncode == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
