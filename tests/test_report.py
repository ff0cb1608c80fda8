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

from emoflow.evaluation import metrics
from emoflow.evaluation.report import run_evaluate
from emoflow.evaluation.tables import tex_escape
from emoflow.storage.tables import FUSED_SCHEMA

CLASSES = ["angry", "happy", "neutral", "sad"]
# accuracy of each method's argmax (the rest of the clips get a wrong class)
HIT_RATE = {"audio": 0.5, "visual": 0.6, "late": 0.8, "stacking": 0.7}
PROTOCOL = {"name": "kfold", "k": 2, "description": "speaker-independent 2-fold cross-validation"}
PROVENANCE = {
    "manifest_sha256": "ab" * 32, "config_hash": "0123456789abcdef", "torch": "2.13.0",
    "protocol": PROTOCOL,
}  # fmt: skip


def write_fused(
    path: Path, fold: int, seed: int, target: str, methods: list[str], problems: dict | None = None,
    fit: dict | None = None,
) -> None:  # fmt: skip
    """20 test clips per fold (the clips ending in 0 or 5 have no video: audio only) and, in
    fold 0, 3 unlabelled clips."""
    rng = np.random.default_rng(100 * fold + seed)
    clips = [f"f{fold}/c{i:02d}" for i in range(20)]
    unlabelled = [f"f{fold}/u{i}" for i in range(3)] if fold == 0 else []
    y = np.arange(20) % 4
    valence = rng.uniform(-1, 1, 20)
    arousal = rng.uniform(-1, 1, 20)
    cat = target in ("categorical", "both")
    dim = target in ("dimensional", "both")
    cols: dict[str, list] = {name: [] for name in FUSED_SCHEMA.names}
    for method in methods:  # deliberately unsorted: the report must not depend on it
        hits = rng.random(20) < HIT_RATE[method]
        for i, clip in enumerate(clips + unlabelled):
            part = "unlabelled" if i >= 20 else "test"
            i = i % 20
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
            cols["part"].append(part)
    meta = {"classes": CLASSES, "target": target, "fold": fold, "seed": seed,
            "fusion_problems": problems or {}, "fusion_fit": fit or {}}  # fmt: skip
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
            problems = {"stacking": "1 class(es) among 5 validation clips"} if fold else {}
            late = {"on": "inner", "n_clips": 30 - 2 * fold, "n_speakers": 6 - fold,
                    "n_training_part": 30 - 2 * fold}  # fmt: skip
            write_fused(path, fold, seed, target, methods, problems, {"late": late})
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
    clips = [f"f{f}/c{i:02d}" for f in (0, 1) for i in range(20)] + ["c40", "c41"]
    manifest = pa.table(
        {
            "clip_id": clips,
            "path": [f"/data/{c}.mp4" for c in clips],
            "speaker": [f"s{f}{i % 4}" for f in (0, 1) for i in range(20)] + [None, None],
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
        "unlabelled_predictions.csv",
    ]  # fmt: skip
    assert (out / "figures/confusion_late.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"Software" not in (out / "figures/curves_audio.png").read_bytes()


def test_byte_identical_rerun(categorical, tmp_path: Path) -> None:
    run, out, table = categorical
    other = tmp_path / "elsewhere" / "report"
    table2 = evaluate(run, other, reverse=True)
    assert table == table2
    names = (
        "results.csv", "results.md", "results.tex", "per_class.csv", "summary.md",
        "provenance.json", "unlabelled_predictions.csv", "figures/confusion_late.png",
        "figures/curves_visual.png",
    )  # fmt: skip
    for name in names:
        assert (out / name).read_bytes() == (other / name).read_bytes(), name


def table_lines(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def test_row_order_columns_and_caption(categorical) -> None:
    _, out, table = categorical
    lines = table_lines(table)
    assert lines[0] == (
        "| Model | n | Missing | Accuracy | UAR | Macro-F1 | Δ UAR vs best branch | Fusion |"
    )
    models = [line.split("|")[1].strip() for line in lines[2:]]
    assert models == ["Audio", "Visual", "Late fusion", "Stacking"]  # no feature rows given
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert [r["method"] for r in rows] == ["audio", "visual", "late", "stacking"]
    assert list(rows[0])[:7] == [
        "method", "n", "missing", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
        "accuracy_seed_std",
    ]  # fmt: skip
    assert list(rows[0])[-5:] == ["best_branch", "delta", "delta_ci_low", "delta_ci_high", "fusion"]
    assert b"\r" not in (out / "results.csv").read_bytes()
    caption = table.split("\n\n")[0]
    assert caption.startswith("Protocol: speaker-independent 2-fold cross-validation. ")
    assert "the same 32 test clips" in caption
    assert "bootstrap over speakers (8 clusters" in caption
    assert "3 unlabelled test clips" not in caption  # the protocol dict reports none
    assert "±: standard deviation over the 2 training seeds" in caption
    # every metric cell: point [interval] ±seed std, the std as results.csv has it
    audio = lines[2].split("|")[5].strip()
    assert audio == f"{rows[0]['uar']} [{rows[0]['uar_ci_low']}, {rows[0]['uar_ci_high']}] " + (
        f"±{rows[0]['uar_seed_std']}"
    )
    assert float(rows[0]["uar_seed_std"]) > 0


def seed_averaged(run: dict, method: str) -> dict[tuple[int, str], tuple[int, np.ndarray]]:
    """(fold, clip) -> (label, mean probability over seeds), straight from the files."""
    acc: dict[tuple[int, str], list] = {}
    for path in run["fused"]:
        d = pq.read_table(path).to_pydict()
        fold = json.loads(pq.read_schema(path).metadata[b"emoflow"])["fold"]
        for i, m in enumerate(d["method"]):
            if m == method and d["part"][i] == "test":
                acc.setdefault((fold, d["clip_id"][i]), [d["y"][i], []])[1].append(d["prob"][i])
    return {k: (y, np.mean(p, axis=0)) for k, (y, p) in acc.items()}


def test_numbers_match_the_predictions(categorical) -> None:
    run, out, _ = categorical
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO((out / "results.csv").read_text()))}
    common = sorted(set(seed_averaged(run, "visual")))  # visual lacks 8 clips; the others none
    assert all(r["n"] == str(len(common)) == "32" for r in rows.values())
    assert [rows[m]["missing"] for m in ("audio", "visual", "late")] == ["0", "8", "0"]
    for method in ("audio", "late"):
        clips = seed_averaged(run, method)
        y = np.array([clips[k][0] for k in common])
        pred = np.array([np.argmax(clips[k][1]) for k in common])
        assert rows[method]["accuracy"] == f"{metrics.accuracy(y, pred):.3f}"
        assert rows[method]["uar"] == f"{metrics.uar(y, pred):.3f}"
        low, high = float(rows[method]["accuracy_ci_low"]), float(rows[method]["accuracy_ci_high"])
        assert low <= metrics.accuracy(y, pred) <= high and low < high
    best = max(("audio", "visual"), key=lambda m: float(rows[m]["uar"]))
    assert rows["late"]["best_branch"] == best
    delta = float(rows["late"]["uar"]) - float(rows[best]["uar"])
    assert abs(float(rows["late"]["delta"]) - delta) <= 0.0015
    assert float(rows["late"]["delta_ci_low"]) <= float(rows["late"]["delta"])
    assert rows["late"]["fusion"] == (
        "fitted on 28–30 clips, 5–6 speakers per fold (out-of-fold, inner folds)"
    )
    assert rows["stacking"]["fusion"] == (
        "fallback (equal weights) in 2 of 4 runs: 1 class(es) among 5 validation clips"
    )
    assert rows["audio"]["delta"] == "-" and rows["audio"]["fusion"] == "-"


def test_unlabelled_clips_are_written_not_scored(categorical) -> None:
    _, out, _ = categorical
    rows = list(csv.DictReader(io.StringIO((out / "unlabelled_predictions.csv").read_text())))
    assert sorted({r["clip_id"] for r in rows}) == ["f0/u0", "f0/u1", "f0/u2"]
    assert {r["method"] for r in rows} == {"audio", "visual", "late", "stacking"}
    assert list(rows[0]) == ["clip_id", "method", "predicted", *(f"p_{c}" for c in CLASSES)]
    assert all(r["predicted"] in CLASSES for r in rows)


def test_per_class_and_latex(categorical) -> None:
    _, out, _ = categorical
    rows = list(csv.DictReader(io.StringIO((out / "per_class.csv").read_text())))
    assert len(rows) == 4 * 4
    assert [r["class"] for r in rows[:4]] == CLASSES
    assert sum(int(r["support"]) for r in rows if r["method"] == "audio") == 32  # common clips
    tex = (out / "results.tex").read_text()
    assert tex.startswith("% Protocol: speaker-independent")
    assert "\n" + r"\begin{tabular}{lrrrrrrl}" + "\n" + r"\toprule" in tex
    assert r"\midrule" in tex and tex.endswith("\\bottomrule\n\\end{tabular}\n")
    assert r"$\Delta$ UAR vs best branch" in tex and "Δ" not in tex.split("\n", 1)[1]
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
    assert table_lines(table)[0] == (
        "| Model | n | Missing | Arousal CCC | Valence CCC | Pearson r | MAE "
        "| Δ mean CCC vs best branch | Fusion |"
    )
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(
        (tmp_path / "report" / "results.csv").read_text()))}  # fmt: skip
    assert float(rows["late"]["arousal_ccc"]) > float(rows["audio"]["arousal_ccc"])
    assert float(rows["late"]["mae"]) < float(rows["audio"]["mae"])
    assert not (tmp_path / "report" / "per_class.csv").exists()
    assert not list((tmp_path / "report").rglob("confusion_*.png"))
    assert "omg_arousal_ccc" not in rows["late"]  # only for OMG-Emotion


def test_both_targets_table(tmp_path: Path) -> None:
    run = make_run(tmp_path, target="both")
    header = table_lines(evaluate(run, tmp_path / "report", curves=False))[0]
    assert header == (
        "| Model | n | Missing | Accuracy | UAR | Macro-F1 | Arousal CCC | Valence CCC "
        "| Pearson r | MAE | Δ UAR vs best branch | Fusion |"
    )


def challenge_script_ccc(rows: list[tuple[str, float, float]]) -> float:
    """calculateEvaluationCCC.py of the OMG-Emotion challenge, re-typed: per video, CCC with
    scipy's pearsonr and numpy's population std, then the mean over videos."""
    from scipy.stats import pearsonr

    values = []
    for video in sorted({v for v, _, _ in rows}):
        t = np.array([a for v, a, _ in rows if v == video])
        p = np.array([b for v, _, b in rows if v == video])
        rho, _ = pearsonr(p, t)
        values.append(
            2 * rho * np.std(t) * np.std(p)
            / (np.std(p) ** 2 + np.std(t) ** 2 + (np.mean(p) - np.mean(t)) ** 2)
        )  # fmt: skip
    return float(np.mean(values))


def test_omg_challenge_aggregation(tmp_path: Path) -> None:
    run = make_run(tmp_path, target="dimensional")
    run["config"]["dataset"] = {"adapter": "omg"}
    table = evaluate(run, tmp_path / "report", curves=False)
    assert "Arousal CCC (OMG per video) | Valence CCC (OMG per video)" in table_lines(table)[0]
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(
        (tmp_path / "report" / "results.csv").read_text()))}  # fmt: skip
    # the same numbers by the challenge's own recipe, videos = speakers of the manifest
    speakers = pq.read_table(run["manifest"]).to_pydict()
    video = dict(zip(speakers["clip_id"], speakers["speaker"], strict=True))
    common = {c for path in run["fused"] for m, c in zip(*_cols(path, "method", "clip_id"),
              strict=True) if m == "visual"}  # fmt: skip
    by_clip: dict[str, list] = {}
    for path in run["fused"]:
        for m, c, t, p, part in zip(*_cols(path, "method", "clip_id", "arousal_true", "arousal",
                                           "part"), strict=True):  # fmt: skip
            if m == "late" and part == "test" and c in common:
                by_clip.setdefault(c, [t, []])[1].append(p)
    script = challenge_script_ccc([(video[c], t, np.mean(p)) for c, (t, p) in by_clip.items()])
    assert rows["late"]["omg_arousal_ccc"] == f"{script:.3f}"
    assert rows["late"]["omg_arousal_ccc"] != rows["late"]["arousal_ccc"]


def _cols(path: Path, *names: str) -> list[list]:
    d = pq.read_table(path).to_pydict()
    return [d[n] for n in names]


def test_manifest_digest_names_the_clips_not_where_they_lie(tmp_path: Path) -> None:
    """The same corpus checked out at another path has the same provenance hash; a changed
    clip (its content hash) or label changes it."""
    from emoflow.evaluation.provenance import manifest_digest

    def manifest(name: str, root: str, sha: str = "aa", label: str = "happy") -> Path:
        path = tmp_path / name
        paths = [f"{root}/c1.mp4", f"{root}/c2.mp4"]
        columns = {"clip_id": ["c1", "c2"], "path": paths, "sha256": [sha, "bb"],
                   "label": [label, "sad"]}  # fmt: skip
        pq.write_table(pa.table(columns), path)
        return path

    here = manifest("a.parquet", "/home/me/data")
    assert manifest_digest(here) == manifest_digest(manifest("b.parquet", "/scratch/x/data"))
    assert manifest_digest(here) != manifest_digest(manifest("c.parquet", "/home/me/data", "ab"))
    assert manifest_digest(here) != manifest_digest(manifest("d.parquet", "/a", label="sad"))
    assert len(manifest_digest(here)) == 64
