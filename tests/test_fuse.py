"""Fusion on synthetic branch predictions written exactly as training writes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emoflow.errors import EmoflowError
from emoflow.evaluation import metrics
from emoflow.fusion.inputs import Aligned
from emoflow.fusion.methods import grid_search_weight, weight_grid
from emoflow.fusion.run import run_fusion
from emoflow.storage.tables import PREDICTION_SCHEMA

CLASSES = ["angry", "happy", "neutral", "sad"]
PRED_SCHEMA = PREDICTION_SCHEMA  # the contract train.py writes
CONFIG = {"fusion": {"methods": ["late", "stacking", "feature"]}}


def _branch_prob(y: int, informative: set[int], rng: np.random.Generator) -> np.ndarray:
    """Peaked on the true class when it is one this branch knows; otherwise split at random
    between the classes it does not know (it only knows 'not mine')."""
    prob = np.full(4, 0.04)
    if y in informative:
        prob[y] = 0.5 + 0.2 * rng.random()
    else:
        other = [c for c in range(4) if c not in informative]
        share = rng.random()
        prob[other[0]] += 0.5 * share
        prob[other[1]] += 0.5 * (1 - share)
    prob += 0.02 * rng.random(4)
    return prob / prob.sum()


def make_inputs(
    tmp: Path,
    target: str = "categorical",
    n_val: int = 80,
    n_test: int = 80,
    drop_audio: tuple[str, ...] = ("t003", "t010", "t017"),
    drop_visual: tuple[str, ...] = ("t001", "t004", "t020", "t030", "t041", "v002", "v005"),
    test_labels: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Path]:
    """Write audio/visual predictions and folds for fold 0, seed 0 into ``tmp``.

    Audio is informative on classes 0-1 and on arousal, visual on classes 2-3 and on valence.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"v{i:03d}" for i in range(n_val)] + [f"t{i:03d}" for i in range(n_test)]
    parts = ["val"] * n_val + ["test"] * n_test
    y = np.arange(len(ids)) % 4
    rng.shuffle(y)
    if test_labels is not None:
        y[n_val:] = test_labels
    valence = rng.uniform(-0.9, 0.9, len(ids))
    arousal = rng.uniform(-0.9, 0.9, len(ids))
    cat = target in ("categorical", "both")
    dim = target in ("dimensional", "both")
    paths = {}
    for branch, known, dropped in (
        ("audio", {0, 1}, set(drop_audio)),
        ("visual", {2, 3}, set(drop_visual)),
    ):
        cols: dict[str, list] = {name: [] for name in PRED_SCHEMA.names}
        for i, clip in enumerate(ids):
            prob = _branch_prob(int(y[i]), known, rng)
            if branch == "audio":
                v_hat = 0.2 * valence[i] + rng.normal(0, 0.4)
                a_hat = arousal[i] + rng.normal(0, 0.1)
                emb = np.r_[float(y[i] == 0), float(y[i] == 1), 0.0] + rng.normal(0, 0.3, 3)
            else:
                v_hat = valence[i] + rng.normal(0, 0.1)
                a_hat = 0.2 * arousal[i] + rng.normal(0, 0.4)
                emb = np.r_[float(y[i] == 2), float(y[i] == 3)] + rng.normal(0, 0.3, 2)
            if clip in dropped:
                continue
            cols["clip_id"].append(clip)
            cols["part"].append(parts[i])
            cols["y"].append(int(y[i]) if cat else -1)
            cols["valence_true"].append(float(valence[i]) if dim else float("nan"))
            cols["arousal_true"].append(float(arousal[i]) if dim else float("nan"))
            cols["prob"].append(prob.tolist() if cat else [])
            cols["valence"].append(float(v_hat) if dim else float("nan"))
            cols["arousal"].append(float(a_hat) if dim else float("nan"))
            cols["embedding"].append(emb.tolist())
        meta = {"classes": CLASSES, "branch": branch, "fold": 0, "seed": 0, "target": target}
        schema = PRED_SCHEMA.with_metadata({b"emoflow": json.dumps(meta)})
        # rows sorted by (part, clip_id) as training writes them
        order = sorted(
            range(len(cols["clip_id"])), key=lambda j: (cols["part"][j], cols["clip_id"][j])
        )
        table = pa.Table.from_pydict(
            {k: [v[j] for j in order] for k, v in cols.items()}, schema=schema
        )
        paths[branch] = tmp / f"{branch}.parquet"
        pq.write_table(table, paths[branch])
    train_ids = [f"r{i:03d}" for i in range(20)]
    folds = pa.table(
        {
            "fold": [0] * (len(train_ids) + len(ids)),
            "clip_id": train_ids + ids,
            "speaker": [f"s{i % 7}" for i in range(len(train_ids) + len(ids))],
            "role": ["train"] * len(train_ids) + parts,
        }
    )
    paths["folds"] = tmp / "folds.parquet"
    pq.write_table(folds, paths["folds"])
    return paths


def fuse(tmp: Path, paths: dict[str, Path], name: str = "out", config: dict | None = None):
    out, weights = tmp / f"{name}.parquet", tmp / f"{name}.json"
    preds = {b: paths[b] for b in ("audio", "visual")}
    run_fusion(config or CONFIG, 0, 0, preds, paths["folds"], out, weights)
    return out, weights


def method_accuracy(table: pa.Table) -> dict[str, float]:
    d = table.to_pydict()
    acc = {}
    for method in sorted(set(d["method"])):
        idx = [i for i, mm in enumerate(d["method"]) if mm == method]
        y = np.array([d["y"][i] for i in idx])
        pred = np.array([np.argmax(d["prob"][i]) for i in idx])
        acc[method] = metrics.accuracy(y, pred)
    return acc


@pytest.fixture(scope="module")
def categorical(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("cat")
    paths = make_inputs(tmp)
    out, weights = fuse(tmp, paths)
    return tmp, paths, out, weights


def test_fusion_beats_each_branch(categorical) -> None:
    _, _, out, _ = categorical
    acc = method_accuracy(pq.read_table(out))
    best_single = max(acc["audio"], acc["visual"])
    assert best_single < 0.85
    assert acc["late"] > best_single + 0.1
    assert acc["stacking"] > best_single + 0.1
    assert acc["feature"] > best_single + 0.1


def test_output_schema_order_and_metadata(categorical) -> None:
    _, paths, out, _ = categorical
    table = pq.read_table(out)
    assert table.schema.names == [
        "clip_id", "method", "y", "valence_true", "arousal_true", "prob", "valence",
        "arousal", "source", "part",
    ]  # fmt: skip
    assert table.schema.field("prob").type == pa.list_(pa.float32())
    assert table.schema.field("y").type == pa.int32()
    meta = json.loads(table.schema.metadata[b"emoflow"])
    assert meta == {
        "classes": CLASSES, "fold": 0, "seed": 0, "target": "categorical", "fusion_problems": {},
        "branches": ["audio", "visual"],
        "fusion_fit": {m: {"on": "val", "n_clips": 78, "n_speakers": 7, "n_training_part": 100}
                       for m in ("late", "stacking", "feature")},
    }  # fmt: skip
    d = table.to_pydict()
    keys = list(zip(d["method"], d["clip_id"], strict=True))
    assert keys == sorted(keys)
    assert all(c.startswith("t") for c in d["clip_id"])  # test clips only
    counts = {mm: d["method"].count(mm) for mm in set(d["method"])}
    assert counts == {"audio": 77, "visual": 75, "late": 80, "stacking": 80, "feature": 80}


def test_missing_modality_fallback(categorical) -> None:
    _, paths, out, weights = categorical
    d = pq.read_table(out).to_pydict()
    rows = {(mm, c): i for i, (mm, c) in enumerate(zip(d["method"], d["clip_id"], strict=True))}
    for method in ("late", "stacking", "feature"):
        src = {c: d["source"][i] for (mm, c), i in rows.items() if mm == method}
        assert sorted(c for c, s in src.items() if s == "audio_only") == [
            "t001",
            "t004",
            "t020",
            "t030",
            "t041",
        ]
        assert sorted(c for c, s in src.items() if s == "visual_only") == ["t003", "t010", "t017"]
        assert sum(s == "both" for s in src.values()) == 72
        # a clip without video gets exactly the audio branch's probabilities
        assert d["prob"][rows[(method, "t001")]] == d["prob"][rows[("audio", "t001")]]
        assert d["prob"][rows[(method, "t003")]] == d["prob"][rows[("visual", "t003")]]
    w = json.loads(weights.read_text())
    assert w["n_test_fallback"] == 8
    assert w["n_val_both"] == 78


def test_weights_fit_on_validation_only(tmp_path: Path) -> None:
    base = make_inputs(tmp_path / "a")
    _, w_base = fuse(tmp_path, base, "base")
    flipped = make_inputs(tmp_path / "b", test_labels=np.zeros(80, dtype=int))
    out_flip, w_flip = fuse(tmp_path, flipped, "flip")
    assert json.loads(w_base.read_text())["methods"] == json.loads(w_flip.read_text())["methods"]
    # the changed test labels did reach the output
    assert set(pq.read_table(out_flip).column("y").to_pylist()) == {0}
    # and changing the validation data does change the weights
    other = make_inputs(tmp_path / "c", seed=1)
    _, w_other = fuse(tmp_path, other, "other")
    assert json.loads(w_base.read_text())["methods"] != json.loads(w_other.read_text())["methods"]


def test_rerun_gives_same_bytes(categorical, tmp_path: Path) -> None:
    _, paths, out, weights = categorical
    out2, weights2 = fuse(tmp_path, paths, "again")
    assert out.read_bytes() == out2.read_bytes()
    assert weights.read_bytes() == weights2.read_bytes()
    w = json.loads(weights.read_text())
    assert list(w) == sorted(w)
    assert set(w["methods"]) == {"late", "stacking", "feature"}
    assert w["methods"]["stacking"]["categorical"]["fitted"] is True
    assert len(w["methods"]["feature"]["state_sha256"]) == 64


def test_only_configured_methods(categorical, tmp_path: Path) -> None:
    _, paths, _, _ = categorical
    out, weights = fuse(tmp_path, paths, "late_only", {"fusion": {"methods": ["late"]}})
    assert set(pq.read_table(out).column("method").to_pylist()) == {"audio", "visual", "late"}
    assert set(json.loads(weights.read_text())["methods"]) == {"late"}


def test_dimensional_target(tmp_path: Path) -> None:
    paths = make_inputs(tmp_path, target="dimensional")
    out, weights = fuse(tmp_path, paths)
    d = pq.read_table(out).to_pydict()
    assert all(p == [] for p in d["prob"])
    assert all(y == -1 for y in d["y"])
    assert not np.isnan(np.array(d["valence"], dtype=float)).any()

    def mean_ccc(method: str) -> float:
        idx = [i for i, mm in enumerate(d["method"]) if mm == method]
        scores = []
        for key in ("valence", "arousal"):
            t = np.array([d[f"{key}_true"][i] for i in idx])
            p = np.array([d[key][i] for i in idx])
            scores.append(metrics.ccc(t, p))
        return float(np.mean(scores))

    singles = max(mean_ccc("audio"), mean_ccc("visual"))
    assert mean_ccc("stacking") > singles + 0.1
    assert mean_ccc("late") > singles
    w = json.loads(weights.read_text())["methods"]
    assert set(w["late"]) == {"branches", "dimensional", "n_fit"}
    assert w["stacking"]["dimensional"]["valence"]["fitted"] is True


def test_both_targets(tmp_path: Path) -> None:
    paths = make_inputs(tmp_path, target="both", n_val=40, n_test=40)
    out, weights = fuse(tmp_path, paths)
    d = pq.read_table(out).to_pydict()
    assert all(len(p) == 4 for p in d["prob"])
    assert not np.isnan(np.array(d["arousal"], dtype=float)).any()
    assert set(json.loads(weights.read_text())["methods"]["late"]) == {
        "branches", "categorical", "dimensional", "n_fit",
    }  # fmt: skip


def test_a_fusion_that_cannot_be_fitted_says_why(tmp_path: Path) -> None:
    # 1 validation clip with both modalities: stacking and the MLP cannot be fitted
    paths = make_inputs(tmp_path, n_val=3, drop_audio=("v000",), drop_visual=("v001",))
    out, weights = fuse(tmp_path, paths)
    problems = json.loads(pq.read_table(out).schema.metadata[b"emoflow"])["fusion_problems"]
    assert sorted(problems) == ["feature", "stacking"]
    assert problems["feature"] == "1 fit clips with every modality; the MLP needs 2"
    assert "logistic regression needs 2" in problems["stacking"]
    assert json.loads(weights.read_text())["fusion_problems"] == problems


def test_grid_search_tie_break() -> None:
    """Ties go to the weights closest to the best single branch, never toward equal weights."""
    grid = weight_grid(2)
    assert grid == [(round(i * 0.05, 2), round(1 - i * 0.05, 2)) for i in range(21)]
    assert grid_search_weight(dict.fromkeys(grid, 0.7)) == (1.0, 0.0)  # all tied: the first
    scores = {w: (0.9 if w[0] in (0.45, 0.55, 0.8) else 0.1) for w in grid}
    assert grid_search_weight(scores) == (0.8, 0.2)  # singles tie: nearest the first branch
    scores[(0.0, 1.0)] = 0.5  # the second branch is the better one alone
    assert grid_search_weight(scores) == (0.45, 0.55)
    scores[(0.9, 0.1)] = 0.95
    assert grid_search_weight(scores) == (0.9, 0.1)
    assert grid_search_weight({(0.0, 1.0): float("nan"), (1.0, 0.0): 0.2}) == (1.0, 0.0)
    # a perfect branch (audio at 1.000 on the demo's validation clips) is kept undiluted
    perfect = {w: (1.0 if w[0] >= 0.6 else 0.75) for w in grid}
    assert grid_search_weight(perfect) == (1.0, 0.0)


def test_weight_grid_of_three_branches() -> None:
    grid = weight_grid(3)
    assert len(grid) == 231 and all(abs(sum(w) - 1) < 1e-9 for w in grid)
    assert grid_search_weight(dict.fromkeys(grid, 0.5)) == (1.0, 0.0, 0.0)
    scores = {w: (0.5 if w[2] < 0.5 else 0.6) for w in grid}
    scores[(0.0, 0.0, 1.0)] = 0.6
    assert grid_search_weight(scores) == (0.0, 0.0, 1.0)
    assert len(weight_grid(5)) == 1001  # steps of 0.1 from five branches on


def test_late_weight_follows_the_informative_branch(tmp_path: Path) -> None:
    paths = make_inputs(tmp_path)
    # make the visual branch useless: confident random probabilities for every clip
    table = pq.read_table(paths["visual"])
    noise = np.random.default_rng(5).dirichlet(np.full(4, 0.5), size=table.num_rows)
    random_prob = pa.array(noise.tolist(), type=pa.list_(pa.float32()))
    table = table.set_column(table.schema.get_field_index("prob"), "prob", random_prob)
    pq.write_table(table, paths["visual"])
    _, weights = fuse(tmp_path, paths, config={"fusion": {"methods": ["late"]}})
    late = json.loads(weights.read_text())["methods"]["late"]
    assert late["branches"] == ["audio", "visual"]
    assert late["categorical"][0] >= 0.7 and abs(sum(late["categorical"]) - 1) < 1e-9


def test_parts_must_agree_with_folds(tmp_path: Path) -> None:
    paths = make_inputs(tmp_path)
    folds = pq.read_table(paths["folds"]).to_pydict()
    folds["role"] = [
        "test" if c == "v000" else r for c, r in zip(folds["clip_id"], folds["role"], strict=True)
    ]
    pq.write_table(pa.table(folds), paths["folds"])
    with pytest.raises(EmoflowError, match="v000"):
        fuse(tmp_path, paths)


def test_wrong_fold_metadata_raises(tmp_path: Path) -> None:
    paths = make_inputs(tmp_path)
    with pytest.raises(EmoflowError, match="fold"):
        run_fusion(
            CONFIG, 1, 0, {b: paths[b] for b in ("audio", "visual")}, paths["folds"],
            tmp_path / "o.parquet", tmp_path / "o.json",
        )  # fmt: skip


@pytest.mark.parametrize("target", ["categorical", "both"])
def test_feature_mlp_rebuilds_from_json(tmp_path: Path, target: str) -> None:
    from emoflow.fusion.apply import apply_fusion
    from emoflow.fusion.inputs import align, read_branch_predictions
    from emoflow.fusion.methods import fit_feature
    from emoflow.models.fusion import fusion_mlp_from_json, predict_fusion_mlp, state_hash

    paths = make_inputs(tmp_path, target=target, n_val=40, n_test=40)
    preds = {b: read_branch_predictions(paths[b]) for b in ("audio", "visual")}
    a = align(preds, 4 if target != "dimensional" else 0)
    fit_rows = (a.part == "val") & a.both
    info = fit_feature(a, fit_rows, target, 4, seed=0)
    both = {b: np.ones(len(a.clip_id), bool) for b in ("audio", "visual")}
    prob, va = apply_fusion("feature", info, target, a.prob, a.va, both, a.embedding)
    assert info["fitted"] is True
    assert info["kwargs"] == {"in_dim": 5, "n_classes": 4, "target": target, "hidden": 32}
    entry = json.loads(json.dumps(info, sort_keys=True))
    model = fusion_mlp_from_json(entry)
    assert state_hash(model) == info["state_sha256"]
    x = np.hstack([a.embedding["audio"], a.embedding["visual"]])
    out = predict_fusion_mlp(model, x)
    # exactly what fuse.py predicted with the model it trained, on the fit data and the rest
    np.testing.assert_array_equal(out["prob"].astype(np.float64)[fit_rows], prob[fit_rows])
    np.testing.assert_array_equal(out["prob"].astype(np.float64), prob)
    if target == "both":
        np.testing.assert_array_equal(out["va"].astype(np.float64), va)
    # a changed parameter no longer matches the stored hash
    entry["state"]["mean"][0] += 1.0
    with pytest.raises(ValueError, match="state_sha256"):
        fusion_mlp_from_json(entry)


def test_weights_file_rebuilds_the_feature_fusion(categorical) -> None:
    from emoflow.models.fusion import fusion_mlp_from_json, predict_fusion_mlp, state_hash

    _, paths, out, weights = categorical
    entry = json.loads(weights.read_text())["methods"]["feature"]
    model = fusion_mlp_from_json(entry)
    assert state_hash(model) == entry["state_sha256"]
    d = pq.read_table(out).to_pydict()
    emb = {}
    for branch in ("audio", "visual"):
        t = pq.read_table(paths[branch]).to_pydict()
        emb[branch] = dict(zip(t["clip_id"], t["embedding"], strict=True))
    rows = [i for i, (m, s) in enumerate(zip(d["method"], d["source"], strict=True))
            if m == "feature" and s == "both"]  # fmt: skip
    x = np.array([emb["audio"][d["clip_id"][i]] + emb["visual"][d["clip_id"][i]] for i in rows])
    got = predict_fusion_mlp(model, x)["prob"]
    np.testing.assert_allclose(got, np.array([d["prob"][i] for i in rows]), rtol=0, atol=1e-6)


def _aligned(rng: np.random.Generator, n: int, n_classes: int) -> Aligned:
    y = rng.integers(0, n_classes, n)
    pa_ = rng.dirichlet(np.ones(n_classes), n)
    pv = rng.dirichlet(np.ones(n_classes), n)
    pa_[np.arange(n), y] += 0.5
    pa_ /= pa_.sum(axis=1, keepdims=True)
    has_v = np.ones(n, bool)
    has_v[::7] = False
    return Aligned(
        clip_id=np.array([f"c{i:03d}" for i in range(n)], dtype=object),
        part=np.array(["val"] * (n // 2) + ["test"] * (n - n // 2), dtype=object),
        y=y,
        va_true=rng.uniform(-1, 1, (n, 2)),
        has={"audio": np.ones(n, bool), "visual": has_v},
        prob={"audio": pa_, "visual": np.where(has_v[:, None], pv, 0.0)},
        va={"audio": rng.uniform(-1, 1, (n, 2)), "visual": rng.uniform(-1, 1, (n, 2))},
        embedding={"audio": np.zeros((n, 0)), "visual": np.zeros((n, 0))},
    )


@pytest.mark.parametrize("n_classes", [2, 4])
def test_stacking_applies_the_stored_coefficients_as_sklearn_predicts(n_classes: int) -> None:
    from sklearn.linear_model import LogisticRegression, Ridge

    from emoflow.fusion.apply import apply_fusion
    from emoflow.fusion.methods import fit_stacking

    a = _aligned(np.random.default_rng(n_classes), 60, n_classes)
    fit_rows = (a.part == "val") & a.both
    info = json.loads(json.dumps(fit_stacking(a, fit_rows, "both", seed=0)))  # as stored
    got_p, got_va = apply_fusion("stacking", info, "both", a.prob, a.va, a.has)
    x = np.hstack([a.prob["audio"], a.prob["visual"]])
    ref = LogisticRegression(solver="lbfgs", max_iter=2000, random_state=0)
    ref.fit(x[fit_rows], a.y[fit_rows])
    both = a.both
    np.testing.assert_allclose(got_p[both], ref.predict_proba(x)[both], atol=1e-9)
    xv = np.hstack([a.va["audio"], a.va["visual"]])
    ridge = Ridge(alpha=1.0).fit(xv[fit_rows], a.va_true[fit_rows, 0])
    np.testing.assert_allclose(got_va[both, 0], ridge.predict(xv)[both], atol=1e-9)
    # a clip without the visual branch takes the audio branch's outputs
    only = ~a.has["visual"]
    np.testing.assert_array_equal(got_p[only], a.prob["audio"][only])


def test_apply_fusion_late_fallbacks_and_single_branch() -> None:
    from emoflow.fusion.apply import apply_fusion

    pa_ = np.array([[1.0, 0.0], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    pv = np.array([[0.0, 1.0], [0.5, 0.5], [0.0, 0.0], [0.0, 0.0]])
    va = {b: np.full((4, 2), np.nan) for b in ("audio", "visual")}
    has = {"audio": np.array([True, False, True, False]),
           "visual": np.array([True, True, False, False])}  # fmt: skip
    prob = {"audio": pa_, "visual": pv}
    p, _ = apply_fusion("late", {"categorical": 0.8}, "categorical", prob, va, has)
    np.testing.assert_allclose(p[:3], [[0.8, 0.2], [0.5, 0.5], [0.6, 0.4]])
    assert np.isnan(p[3]).all()  # neither branch
    # a feature fusion that could not be fit is the equal-weight average
    p, _ = apply_fusion("feature", {"fitted": False}, "categorical", prob, va, has)
    np.testing.assert_allclose(p[0], [0.5, 0.5])
    p, _ = apply_fusion("none", {}, "categorical", {"audio": pa_}, {"audio": va["audio"]},
                        {"audio": has["audio"]})  # fmt: skip
    np.testing.assert_array_equal(p[[0, 2]], pa_[[0, 2]])
    with pytest.raises(EmoflowError, match="unknown fusion method"):
        apply_fusion("median", {}, "categorical", prob, va, has)


def _inner_files(tmp: Path, paths: dict[str, Path], extra: str | None = None) -> dict:
    """Three inner folds per branch whose held-out (``test``) rows are the validation clips of
    ``paths`` dealt by position (``extra``: one more clip, taken from the outer test part)."""
    inner: dict[str, list[Path]] = {}
    for branch in ("audio", "visual"):
        table = pq.read_table(paths[branch])
        meta = json.loads(table.schema.metadata[b"emoflow"])
        d = table.to_pydict()
        held = [i for i, p in enumerate(d["part"]) if p == "val" or d["clip_id"][i] == extra]
        inner[branch] = []
        for j in range(3):
            rows = held[j::3]
            cols = {k: [v[i] for i in rows] for k, v in d.items()}
            cols["part"] = ["test"] * len(rows)
            schema = PRED_SCHEMA.with_metadata({b"emoflow": json.dumps({**meta, "inner": j})})
            path = tmp / f"{branch}_inner{j}.parquet"
            pq.write_table(pa.Table.from_pydict(cols, schema=schema), path)
            inner[branch].append(path)
    return inner


def test_fit_on_inner_folds_uses_their_held_out_predictions(categorical, tmp_path: Path) -> None:
    _, paths, out, weights = categorical
    inner = _inner_files(tmp_path, paths)
    out2, weights2 = tmp_path / "inner.parquet", tmp_path / "inner.json"
    preds = {b: paths[b] for b in ("audio", "visual")}
    run_fusion(CONFIG, 0, 0, preds, paths["folds"], out2, weights2, inner)
    w = json.loads(weights2.read_text())
    record = {"on": "inner", "n_clips": 78, "n_speakers": 7, "n_training_part": 100}
    assert w["fusion_fit"]["late"] == w["fusion_fit"]["stacking"] == record
    assert w["methods"]["stacking"]["categorical"]["n_fit"] == 78
    # the same clips and predictions as the validation part: the same fitted late and stacking
    val = json.loads(weights.read_text())["methods"]
    assert (w["methods"]["late"], w["methods"]["stacking"]) == (val["late"], val["stacking"])
    # the feature MLP: the fold models' own embeddings of the training part (here: its val clips)
    assert w["fusion_fit"]["feature"] == {**record, "on": "training part"}
    assert w["methods"]["feature"] == val["feature"]
    # a held-out clip from the outer test part is leakage: refused
    (tmp_path / "leaky").mkdir()
    leaky = _inner_files(tmp_path / "leaky", paths, extra="t005")
    with pytest.raises(EmoflowError, match="outside its training part.*t005"):
        run_fusion(CONFIG, 0, 0, preds, paths["folds"], out2, weights2, leaky)
