"""The evaluation report: tables from stored fused predictions, byte-identical on rerun."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emoflow import metrics
from emoflow.fuse import FUSED_SCHEMA
from emoflow.report import run_evaluate, tex_escape

CLASSES = ["angry", "happy", "neutral", "sad"]
# accuracy of each method's argmax (the rest of the clips get a wrong class)
HIT_RATE = {"audio": 0.5, "visual": 0.6, "late": 0.8, "stacking": 0.7}
PROVENANCE = {"manifest_sha256": "ab" * 32, "config_hash": "0123456789abcdef", "torch": "2.13.0"}


def write_fused(path: Path, fold: int, seed: int, target: str, methods: list[str]) -> None:
    """20 test clips per fold; the clips ending in 0 or 5 have no video (audio only)."""
    rng = np.random.default_rng(100 * fold + seed)
    clips = [f"f{fold}/c{i:02d}" for i in range(20)]
    y = np.arange(20) % 4
    valence = rng.uniform(-1, 1, 20)
    arousal = rng.uniform(-1, 1, 20)
    cat = target in ("categorical", "both")
    dim = target in ("dimensional", "both")
    cols: dict[str, list] = {name: [] for name in FUSED_SCHEMA.names}
    for method in methods:  # deliberately unsorted: the report must not depend on it
        hits = rng.random(20) < HIT_RATE[method]
        for i, clip in enumerate(clips):
            no_video = i % 5 == 0
            if method == "visual" and no_video:
                continue
            pred = y[i] if hits[i] else (y[i] + 1) % 4
            prob = np.full(4, 0.1)
            prob[pred] = 0.7
            if method in ("audio", "visual"):
                source = f"{method}_only"
            else:
                source = "audio_only" if no_video else "both"
            noise = {"audio": 0.6, "visual": 0.4, "late": 0.2, "stacking": 0.3}[method]
            cols["clip_id"].append(clip)
            cols["method"].append(method)
            cols["y"].append(int(y[i]) if cat else -1)
            cols["valence_true"].append(float(valence[i]) if dim else float("nan"))
            cols["arousal_true"].append(float(arousal[i]) if dim else float("nan"))
            cols["prob"].append(prob.tolist() if cat else [])
            cols["valence"].append(float(valence[i] + rng.normal(0, noise)) if dim else np.nan)
            cols["arousal"].append(float(arousal[i] + rng.normal(0, noise)) if dim else np.nan)
            cols["source"].append(source)
    meta = {"classes": CLASSES, "target": target, "fold": fold, "seed": seed}
    table = pa.Table.from_pydict(cols, schema=FUSED_SCHEMA)
    table = table.replace_schema_metadata({b"emoflow": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def make_run(root: Path, target: str = "categorical") -> dict:
    methods = ["stacking", "visual", "late", "audio"]
    fused, histories = [], []
    for fold in (0, 1):
        for seed in (0, 1):
            path = root / "fusion" / f"fold{fold}" / f"seed{seed}.parquet"
            write_fused(path, fold, seed, target, methods)
            fused.append(path)
            for branch in ("audio", "visual"):
                h = root / "models" / branch / f"fold{fold}" / f"seed{seed}" / "history.csv"
                h.parent.mkdir(parents=True, exist_ok=True)
                lines = ["epoch,train_loss,val_loss,val_metric"]
                lines += [
                    f"{e},{1.5 / e:.4f},{1.6 / e + 0.1 * seed:.4f},{0.3 + 0.05 * e:.4f}"
                    for e in range(1, 6)
                ]
                h.write_text("\n".join(lines) + "\n")
                histories.append(h)
    manifest = pa.table(
        {
            "clip_id": [f"c{i}" for i in range(42)],
            "path": [f"/data/c{i}.mp4" for i in range(42)],
            "speaker": ["s"] * 42,
        }
    )
    pq.write_table(manifest, root / "manifest.parquet")
    failures = pa.table(
        {
            "clip_id": ["c40", "c41", "c05", "c10"],
            "stage": ["audio", "audio", "faces", "faces"],
            "kind": ["unreadable", "unreadable", "no_face", "no_face"],
            "message": ["ffmpeg: invalid data | moov atom", "truncated", "no face", "no face"],
        }
    )
    pq.write_table(failures, root / "failures.parquet")
    config = {"report": {"bootstrap": 200, "seed": 0}, "train": {"target": target}}
    return {
        "config": config,
        "fused": fused,
        "histories": histories,
        "manifest": root / "manifest.parquet",
        "failures": root / "failures.parquet",
    }


def evaluate(run: dict, out: Path, reverse: bool = False, curves: bool = True) -> str:
    fused = list(reversed(run["fused"])) if reverse else run["fused"]
    histories = run["histories"] if curves else []
    return run_evaluate(
        run["config"], fused, histories, run["manifest"], run["failures"], out, PROVENANCE
    )


@pytest.fixture(scope="module")
def categorical(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    root = tmp_path_factory.mktemp("run")
    run = make_run(root)
    out = root / "report"
    table = evaluate(run, out)
    return run, out, table


def test_report_files(categorical) -> None:
    _, out, _ = categorical
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == [
        "figures/confusion_audio.png", "figures/confusion_late.png",
        "figures/confusion_stacking.png", "figures/confusion_visual.png",
        "figures/curves_audio.png", "figures/curves_visual.png", "per_class.csv",
        "provenance.json", "results.csv", "results.md", "results.tex", "summary.md",
    ]  # fmt: skip
    assert (out / "figures/confusion_late.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"Software" not in (out / "figures/curves_audio.png").read_bytes()


def test_byte_identical_rerun(categorical, tmp_path: Path) -> None:
    run, out, table = categorical
    other = tmp_path / "elsewhere" / "report"
    table2 = evaluate(run, other, reverse=True)
    assert table == table2
    names = (
        "results.csv",
        "results.md",
        "results.tex",
        "per_class.csv",
        "summary.md",
        "provenance.json",
        "figures/confusion_late.png",
        "figures/curves_visual.png",
    )
    for name in names:
        assert (out / name).read_bytes() == (other / name).read_bytes(), name


def test_row_order_and_columns(categorical) -> None:
    _, out, table = categorical
    lines = table.splitlines()
    assert lines[0] == ("| Model | n | Accuracy | UAR | Macro-F1 | Accuracy 95 % CI | Fallback |")
    models = [line.split("|")[1].strip() for line in lines[2:]]
    assert models == ["Audio", "Visual", "Late fusion", "Stacking"]  # no feature rows given
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert [r["method"] for r in rows] == ["audio", "visual", "late", "stacking"]
    assert list(rows[0]) == [
        "method", "n", "accuracy_mean", "accuracy_std", "accuracy_ci_low", "accuracy_ci_high",
        "uar_mean", "uar_std", "macro_f1_mean", "macro_f1_std", "fallback",
    ]  # fmt: skip
    assert b"\r" not in (out / "results.csv").read_bytes()


def test_numbers_match_the_predictions(categorical) -> None:
    run, out, _ = categorical
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO((out / "results.csv").read_text()))}
    # recompute the late-fusion accuracy per (fold, seed) straight from the files
    accs = []
    for path in run["fused"]:
        d = pq.read_table(path).to_pydict()
        idx = [i for i, m in enumerate(d["method"]) if m == "late"]
        y = np.array([d["y"][i] for i in idx])
        pred = np.array([np.argmax(d["prob"][i]) for i in idx])
        accs.append(metrics.accuracy(y, pred))
    mean, std = metrics.mean_std(accs)
    assert rows["late"]["accuracy_mean"] == f"{mean:.3f}"
    assert rows["late"]["accuracy_std"] == f"{std:.3f}"
    assert float(rows["late"]["accuracy_ci_low"]) <= mean <= float(rows["late"]["accuracy_ci_high"])
    assert rows["audio"]["n"] == "40" and rows["visual"]["n"] == "32"
    assert rows["late"]["fallback"] == "8" and rows["audio"]["fallback"] == ""
    assert float(rows["late"]["accuracy_mean"]) > float(rows["audio"]["accuracy_mean"])
    md = (out / "results.md").read_text()
    assert f"| Late fusion | 40 | {mean:.3f} ± {std:.3f} |" in md


def test_per_class_and_latex(categorical) -> None:
    _, out, _ = categorical
    rows = list(csv.DictReader(io.StringIO((out / "per_class.csv").read_text())))
    assert len(rows) == 4 * 4
    assert [r["class"] for r in rows[:4]] == CLASSES
    assert sum(int(r["support"]) for r in rows if r["method"] == "audio") == 80  # 2 seeds
    tex = (out / "results.tex").read_text()
    assert tex.startswith(r"\begin{tabular}{lrrrrrr}" + "\n" + r"\toprule")
    assert r"\midrule" in tex and tex.endswith("\\bottomrule\n\\end{tabular}\n")
    assert r"$\pm$" in tex and "±" not in tex and r"95 \% CI" in tex
    assert tex_escape("a_b & 5%") == r"a\_b \& 5\%"


def test_summary_failures_and_provenance(categorical) -> None:
    _, out, table = categorical
    summary = (out / "summary.md").read_text()
    assert table in summary
    assert "4 failures." in summary
    assert "| audio | unreadable | 2 |" in summary
    assert "| faces | no_face | 2 |" in summary
    assert "ffmpeg: invalid data \\| moov atom" in summary  # pipes escaped
    assert "Clips in the manifest: 42." in summary
    assert '"manifest_sha256"' in summary
    prov = (out / "provenance.json").read_text()
    assert list(json.loads(prov)) == sorted(PROVENANCE)
    assert str(out.parent) not in summary  # no absolute paths


def test_no_failures(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    pq.write_table(
        pa.table({k: pa.array([], pa.string()) for k in ("clip_id", "stage", "kind", "message")}),
        run["failures"],
    )
    evaluate(run, tmp_path / "report", curves=False)
    assert not list((tmp_path / "report").rglob("curves_*.png"))
    assert "No failures." in (tmp_path / "report" / "summary.md").read_text()


def test_dimensional_table(tmp_path: Path) -> None:
    run = make_run(tmp_path, target="dimensional")
    table = evaluate(run, tmp_path / "report")
    assert table.splitlines()[0] == (
        "| Model | n | Arousal CCC | Valence CCC | Pearson r | MAE | Fallback |"
    )
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(
        (tmp_path / "report" / "results.csv").read_text()))}  # fmt: skip
    assert float(rows["late"]["arousal_ccc_mean"]) > float(rows["audio"]["arousal_ccc_mean"])
    assert float(rows["late"]["mae_mean"]) < float(rows["audio"]["mae_mean"])
    assert not (tmp_path / "report" / "per_class.csv").exists()
    assert not list((tmp_path / "report").rglob("confusion_*.png"))


def test_both_targets_table(tmp_path: Path) -> None:
    run = make_run(tmp_path, target="both")
    header = evaluate(run, tmp_path / "report", curves=False).splitlines()[0]
    assert header == (
        "| Model | n | Accuracy | UAR | Macro-F1 | Accuracy 95 % CI | Arousal CCC | Valence CCC "
        "| Pearson r | MAE | Fallback |"
    )
