"""The ``au`` branch: OpenFace's AU intensities, pose and gaze per face frame -> temporal
aggregation. Config check, the per-frame vectors and their windows, the normalisation, the
model's masking (the same model as face_cnn's); training and the workflow run are in
test_train.py and test_branches.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emoflow.config import validate_config
from emoflow.errors import ConfigError, EmoflowError
from emoflow.models.aggregate import AGGREGATIONS
from emoflow.models.arch import build_branch_model, model_arch
from emoflow.storage.shards import open_shards
from emoflow.training.frame_inputs import (
    READ_FIELDS,
    clip_frame_vectors,
    fit_frame_norm,
    frame_vectors,
)
from tests.shardmaker import make_manifest, write_shards


def base(**extra: object) -> dict:
    return {"dataset": {"name": "x", "adapter": "ravdess", "root": "d"}, **extra}


def test_au_needs_the_openface_backend() -> None:
    with pytest.raises(ConfigError, match=r"'au'.*faces.backend: openface.*'embedded'"):
        validate_config(base(branches=["audio", "au"]))
    cfg = validate_config(base(branches=["au"], faces={"backend": "openface"}))
    assert cfg["au"] == {"aggregation": "gru", "clusters": 8}
    with pytest.raises(ConfigError, match="au"):
        validate_config(base(branches=["au"], faces={"backend": "openface"}, au={"x": 1}))


class Rec:
    """A face record as a shard gives it (the fields the au branch reads)."""

    def __init__(self, mask: list[bool], frame0: list[int], with_au: bool = True) -> None:
        f = len(mask)
        self.mask = np.array(mask)
        self.window_frame0 = np.array(frame0)
        base = np.arange(f, dtype=np.float32)[:, None]
        self.au = (base + np.arange(17)) if with_au else None
        self.pose = base * 10 + np.arange(6) if with_au else None
        self.gaze = -base - np.arange(8) / 10 if with_au else None
        for values in (self.au, self.pose, self.gaze):
            if values is not None:
                values[~self.mask] = np.nan


def test_frame_vectors_concatenate_au_pose_gaze_and_zero_the_missing() -> None:
    rec = Rec([True, False, True], [0])
    x = frame_vectors("au", rec)
    assert x.shape == (3, 31) and x.dtype == np.float32
    assert x[2, :17].tolist() == list(range(2, 19))  # AU intensities first
    assert x[2, 17:23].tolist() == [20.0 + i for i in range(6)]  # then pose
    assert x[2, 23:].tolist() == pytest.approx([-2.0 - i / 10 for i in range(8)])  # then gaze
    assert not x[1].any()  # no face: NaN in the shard, zeros here (masked anyway)
    with pytest.raises(EmoflowError, match="faces.backend: openface"):
        frame_vectors("au", Rec([True], [0], with_au=False))


def test_clip_au_windows_follow_the_face_grid() -> None:
    rec = Rec([True] * 5 + [False] + [True] * 4, [0, 4, 8])
    faces = clip_frame_vectors("au", rec, frames=4)
    x, mask = faces.windows()
    assert x.shape == (3, 4, 31) and mask.shape == (3, 4)
    assert x[1, 0, 0] == 4.0 and x[2, 1, 0] == 9.0  # window i starts at frame0[i]
    assert mask[1].tolist() == [True, False, True, True]  # frame 5 has no face
    assert mask[2].tolist() == [True, True, False, False]  # past the clip's 10 frames


def test_norm_is_fitted_on_face_frames_only(tmp_path: Path) -> None:
    manifest = make_manifest(n_speakers=2)
    shards = open_shards(write_shards(tmp_path, manifest, "faces"), "faces")
    ids = sorted(manifest.clip_id)[:3]
    norm = fit_frame_norm("au", shards, ids)
    rows = []
    for clip_id in ids:
        rec = shards.get(clip_id, READ_FIELDS["au"])
        assert rec.faces is None and rec.landmarks is None  # the crops are never read
        rows.append(frame_vectors("au", rec)[rec.mask])
    x = np.concatenate(rows).astype(np.float64)
    np.testing.assert_allclose(norm["mean"].numpy(), x.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm["std"].numpy(), x.std(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_masked_frames_do_not_change_the_output(aggregation: str) -> None:
    torch.manual_seed(0)
    arch = model_arch("au", {"embedding_dim": 16}, 3, in_dim=31,
                      au={"aggregation": aggregation, "clusters": 4})  # fmt: skip
    assert arch["name"] == "frame_aggregate" and arch["aggregation"] == aggregation
    model = build_branch_model("au", arch).eval()
    x = torch.randn(2, 6, 31)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    out = model(x, mask)
    y = x.clone()
    y[~mask] = torch.randn(int((~mask).sum()), 31) * 100
    again = model(y, mask)
    torch.testing.assert_close(out["logits"], again["logits"])
    assert not out["embedding"][1].any()  # a window without a face has a zero embedding
    assert out["logits"].shape == (2, 3)
