"""Face backends: alignment, the embedded dlib backend on real photos, and the OpenFace wrapper
(CSV parsing and failure classification on recorded output; end to end through a replay
double of FeatureExtraction run as a real subprocess)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import skimage.transform
from PIL import Image

from emoflow.errors import ClipError, ToolMissingError
from emoflow.faces.align import (
    RIGID_INDICES,
    apply_transform,
    openface_template,
    similarity_transform,
    warp_affine,
)
from emoflow.faces.backends import make_backend
from emoflow.faces.openface import classify_missing, signal_name, write_frames
from emoflow.faces.openface_csv import AU_NAMES, parse_clip_output
from emoflow.faces.result import FaceResult
from tests.fake_openface import install as install_fake_openface

FIXTURES = Path(__file__).resolve().parent / "data" / "openface"
OK_CSV = FIXTURES / "fdir-15-frames" / "clip frames.csv"
OK_ALIGNED = FIXTURES / "fdir-15-frames" / "clip frames_aligned"
NF_CSV = FIXTURES / "no-face" / "nf.csv"
LOGS = FIXTURES / "logs"


# ---------------------------------------------------------------- helpers


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()  # 512x512 RGB, one frontal face


@pytest.fixture(scope="module")
def embedded():
    return make_backend({"backend": "embedded", "size": 112, "scale": 0.7, "upsample": 0})


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    return np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0)])


def shifted(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(img)
    out[dy:, dx:] = img[: img.shape[0] - dy, : img.shape[1] - dx]
    return out


# ---------------------------------------------------------------- alignment (pure numpy)


def test_template_is_frontal_and_centred():
    tpl = openface_template(112, 0.7)
    assert tpl.shape == (68, 2)
    left, right = eye_centres(tpl)
    assert abs(left[1] - right[1]) < 1.0  # eyes level
    assert abs((left[0] + right[0]) / 2 - 56) < 1.5  # symmetric about the centre
    assert 40 < right[0] - left[0] < 52  # inter-ocular distance of OpenFace's crops
    assert tpl.min() > 0 and tpl.max() < 112
    big = openface_template(224, 0.7)
    np.testing.assert_allclose(big, tpl * 2, atol=1e-9)


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, size=(68, 2))
    ang, s, t = np.deg2rad(17), 0.43, np.array([12.0, -7.5])
    rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ rot.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-7)
    # a mirrored target must not be fitted by a reflection
    mirrored = dst * np.array([-1.0, 1.0])
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0


def test_warp_maps_points_where_the_matrix_says():
    img = np.zeros((200, 300, 3), dtype=np.uint8)
    img[100, 150] = 255
    m = similarity_transform(np.array([[150.0, 100.0], [160.0, 100.0]]), [[40.0, 50], [60, 50]])
    out = warp_affine(img, m, 112)
    y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert (x, y) == (40, 50)
    assert out[..., 0].sum() > 0


# ---------------------------------------------------------------- embedded backend


def test_embedded_finds_and_aligns_the_astronaut(embedded, astronaut, tmp_path):
    res = embedded.process([("a", astronaut[None])], tmp_path)["a"]
    assert isinstance(res, FaceResult)
    assert res.mask.tolist() == [True]
    assert res.n_faces.tolist() == [1]
    assert res.faces.shape == (1, 112, 112, 3) and res.faces.dtype == np.uint8
    assert res.landmarks.shape == (1, 68, 2) and res.landmarks.dtype == np.float32
    assert res.au is None and res.pose is None and embedded.au_names == []
    # landmarks are in the frame's coordinates: the face is at about (220, 125) in the photo
    assert 180 < res.landmarks[0, :, 0].mean() < 270
    assert 90 < res.landmarks[0, :, 1].mean() < 190
    # an independent look at the crop: detect the face again in it (upscaled, padded) and
    # check that its eyes land on the template's eyes
    from emoflow.faces.embedded import detect_largest

    big = to_uint8(skimage.transform.rescale(res.faces[0], 2, channel_axis=2, order=1))
    canvas = np.zeros((400, 400, 3), dtype=np.uint8)
    canvas[88:312, 88:312] = big
    n, _, pts = detect_largest(canvas)
    assert n == 1 and pts is not None
    eyes = eye_centres((pts - 88) / 2)
    assert np.abs(eyes - eye_centres(openface_template())).max() < 3.0


def test_embedded_crop_matches_openface_crop(embedded, astronaut, tmp_path):
    """The recorded OpenFace run was on frames of the same photo: the crops must agree."""
    res = embedded.process([("a", astronaut[None])], tmp_path)["a"]
    ref = np.asarray(Image.open(OK_ALIGNED / "frame_det_00_000001.bmp").convert("RGB"))
    mad = np.abs(res.faces[0].astype(int) - ref).mean()
    assert mad < 10, mad
    # and a crop shifted by 6 px (half an eye width) would not
    off = np.abs(res.faces[0, :, 6:].astype(int) - ref[:, :-6]).mean()
    assert off > mad + 5


def test_embedded_crops_do_not_depend_on_position_scale_or_rotation(embedded, astronaut, tmp_path):
    moved = shifted(astronaut, 23, 17)
    small = np.zeros_like(astronaut)
    half = to_uint8(skimage.transform.rescale(astronaut, 0.8, channel_axis=2, order=1))
    small[: half.shape[0], : half.shape[1]] = half
    turned = to_uint8(skimage.transform.rotate(astronaut, 8, center=(125, 220), order=1))
    frames = np.stack([astronaut, moved, small, turned])
    res = embedded.process([("a", frames)], tmp_path)["a"]
    assert res.mask.all()
    # landmarks follow the face in frame coordinates
    np.testing.assert_allclose(
        res.landmarks[1].mean(0) - res.landmarks[0].mean(0), [23, 17], atol=1.5
    )
    base = res.faces[0].astype(int)
    for i in (1, 2, 3):
        assert np.abs(res.faces[i].astype(int) - base).mean() < 9, i
    # a check that can fail: an unrelated crop differs far more
    assert np.abs(np.roll(res.faces[0], 8, axis=1).astype(int) - base).mean() > 12


def test_embedded_blank_frame_has_no_face(embedded, astronaut, tmp_path):
    frames = np.stack([np.zeros_like(astronaut), astronaut])
    res = embedded.process([("b", frames)], tmp_path)["b"]
    assert res.mask.tolist() == [False, True]
    assert res.n_faces.tolist() == [0, 1]
    assert not res.landmarks[0].any() and not res.faces[0].any()
    assert res.confidence[0] == 0 and res.confidence[1] > 0
    assert np.isnan(res.boxes[0]).all() and np.isfinite(res.boxes[1]).all()
    assert res.faces[1].any()


def test_embedded_picks_the_largest_of_two_faces(embedded, astronaut, tmp_path):
    face = astronaut[30:260, 110:340]  # 230x230 around the face
    small = to_uint8(skimage.transform.rescale(face, 0.6, channel_axis=2, order=1))
    canvas = np.full((320, 560, 3), 90, dtype=np.uint8)
    canvas[40 : 40 + small.shape[0], 20 : 20 + small.shape[1]] = small
    canvas[45:275, 300:530] = face
    res = embedded.process([("two", canvas[None])], tmp_path)["two"]
    assert res.n_faces.tolist() == [2]
    assert res.mask.tolist() == [True]
    assert res.landmarks[0, :, 0].min() > 300  # the big face on the right
    # the mirrored layout picks the other side: the choice follows size, not position
    flipped = np.ascontiguousarray(canvas[:, ::-1])
    res2 = embedded.process([("two", flipped[None])], tmp_path)["two"]
    assert res2.n_faces.tolist() == [2]
    assert res2.landmarks[0, :, 0].max() < 260


def test_embedded_versions_and_empty_clip(embedded, tmp_path):
    v = embedded.versions()
    assert v["backend"] == "embedded"
    assert re.fullmatch(r"[0-9a-f]{64}", v["predictor_sha256"])
    assert re.fullmatch(r"\d+\.\d+.*", v["dlib"])
    out = embedded.process([("e", np.zeros((0, 64, 64, 3), np.uint8))], tmp_path)["e"]
    assert isinstance(out, ClipError) and out.kind == "too_short"


# ---------------------------------------------------------------- make_backend errors


def test_make_backend_openface_errors(tmp_path):
    with pytest.raises(ToolMissingError, match="bin is not set"):
        make_backend({"backend": "openface", "openface": {"bin": None}})
    with pytest.raises(ToolMissingError, match="not found"):
        make_backend({"backend": "openface", "openface": {"bin": str(tmp_path / "nope")}})
    binary = tmp_path / "FeatureExtraction"
    binary.write_text("#!/bin/sh\n")
    with pytest.raises(ToolMissingError, match="not executable"):
        make_backend({"backend": "openface", "openface": {"bin": str(binary)}})
    binary.chmod(0o755)
    with pytest.raises(ToolMissingError, match="relative to the binary's folder"):
        make_backend({"backend": "openface", "openface": {"bin": str(binary)}})
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "main_clnf_general.txt").write_text("x")
    backend = make_backend({"backend": "openface", "openface": {"bin": str(binary)}})
    assert backend.name == "openface" and len(backend.au_names) == 17


# ---------------------------------------------------------------- OpenFace output parsing


def test_parse_recorded_face_output():
    res = parse_clip_output(OK_CSV, OK_ALIGNED, 15, 112)
    assert res.mask.all() and res.n_faces.tolist() == [1] * 15
    np.testing.assert_allclose(res.confidence, 0.92, atol=1e-6)
    # frame 1: x_36 = 244.4, y_36 = 125.8, pose_Tx = -49.6, AU01_r = 0.09 (from the CSV)
    assert res.landmarks[0, 36].tolist() == pytest.approx([244.4, 125.8], abs=1e-4)
    assert res.pose[0, 0] == pytest.approx(-49.6, abs=1e-4)
    assert res.au.shape == (15, 17) and res.au[0, 0] == pytest.approx(0.09, abs=1e-6)
    assert not np.isnan(res.au).any()
    # gaze (-gaze): frame 1's gaze_0_x = 0.154552, gaze_1_z = -0.949725, gaze_angle_y = 0.324
    assert res.gaze.shape == (15, 8) and not np.isnan(res.gaze).any()
    assert res.gaze[0, [0, 5, 7]].tolist() == pytest.approx([0.154552, -0.949725, 0.324], abs=1e-6)
    # the box is the landmarks' bounding box (OpenFace writes no detection box)
    lm = res.landmarks[0]
    assert res.boxes[0].tolist() == [lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()]
    assert res.boxes[0, 2] - res.boxes[0, 0] > 20
    ref = np.asarray(Image.open(OK_ALIGNED / "frame_det_00_000007.bmp").convert("RGB"))
    assert np.array_equal(res.faces[6], ref)
    # another size resizes the crops
    assert parse_clip_output(OK_CSV, OK_ALIGNED, 15, 64).faces.shape == (15, 64, 64, 3)


def test_parse_rejects_wrong_row_count():
    with pytest.raises(ClipError, match="15 rows for 16 frames") as info:
        parse_clip_output(OK_CSV, OK_ALIGNED, 16, 112)
    assert info.value.kind == "tool_crash"


def test_parse_no_face_never_uses_failed_rows():
    res = parse_clip_output(NF_CSV, FIXTURES / "no-face" / "nf_aligned", 4, 112)
    assert not res.mask.any()
    assert np.isnan(res.pose).all()  # the CSV holds pose_Tx = -19616704.0: must not leak
    assert np.isnan(res.au).all() and np.isnan(res.gaze).all()
    assert not res.landmarks.any() and not np.asarray(res.faces).any() and not res.confidence.any()
    assert np.isnan(res.boxes).all()


def test_classify_recorded_failures():
    missing = (LOGS / "missing-file.log").read_text()
    err = classify_missing(0, missing, "nonexistent.mp4", LOGS / "missing-file.log")
    assert err.kind == "unreadable" and "missing-file.log" in err.message
    trunc = (LOGS / "truncated-file.log").read_text()
    for rc in (139, -11):
        err = classify_missing(rc, trunc, "trunc.mp4", LOGS / "truncated-file.log")
        assert err.kind == "tool_crash" and "SIGSEGV" in err.message
        assert "truncated-file.log" in err.message
    ok = (LOGS / "ok-fdir.log").read_text()
    err = classify_missing(0, ok, "clip frames", LOGS / "ok-fdir.log")
    assert err.kind == "tool_crash" and "no CSV" in err.message
    assert signal_name(134) == "SIGABRT" and signal_name(0) is None and signal_name(1) is None


# ---------------------------------------------------------------- OpenFace end to end (double)

NASTY = "dir with spaces 'q' \"dq\" $(touch pwned) `touch pwned2`"


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A FeatureExtraction double with a model/ folder, in a folder with a hostile name."""
    binary = install_fake_openface(tmp_path / NASTY / "openface bin")
    monkeypatch.setenv("FAKE_OPENFACE_FIXTURES", str(FIXTURES))
    monkeypatch.delenv("FAKE_OPENFACE_MODE", raising=False)
    monkeypatch.chdir(tmp_path)
    return binary


def openface(binary: Path, **kw):
    cfg = {"bin": str(binary), "timeout_s": 20, "batch": 8, **kw}
    return make_backend({"backend": "openface", "size": 112, "openface": cfg})


def frames(k: int, colours: list[tuple[int, int, int]] | None = None) -> np.ndarray:
    out = np.full((k, 48, 64, 3), 128, dtype=np.uint8)
    for i, c in enumerate(colours or []):
        if c is not None:
            out[i, :, :] = c
    return out


GREEN, RED, BLUE = (0, 255, 0), (255, 0, 0), (0, 0, 255)


def call_logs(workdir: Path) -> list[Path]:
    return sorted(workdir.rglob("FeatureExtraction.log"))


def no_pwned(tmp_path: Path) -> None:
    found = [p for p in tmp_path.rglob("pwned*")] + list(Path.cwd().glob("pwned*"))
    assert not found, found


def test_openface_batch_end_to_end(fake_bin, tmp_path):
    backend = openface(fake_bin)
    workdir = tmp_path / NASTY / "work dir"
    clips = [
        ("ok clip $(touch pwned).mp4", frames(5)),
        ('part\'ly "green".mp4', frames(4, [None, None, GREEN, None])),
        ("no face.mp4", frames(4, [GREEN] * 4)),
        ("sixteen.mp4", frames(16)),
    ]
    out = backend.process(clips, workdir)
    assert set(out) == {c for c, _ in clips}
    ok = out["ok clip $(touch pwned).mp4"]
    assert isinstance(ok, FaceResult) and ok.mask.all() and ok.faces.shape == (5, 112, 112, 3)
    assert ok.landmarks[0, 36].tolist() == pytest.approx([244.4, 125.8], abs=1e-4)
    assert not np.isnan(ok.au).any() and ok.au.shape == (5, len(AU_NAMES))
    part = out['part\'ly "green".mp4']
    assert part.mask.tolist() == [True, True, False, True]
    assert np.isnan(part.pose[2]).all() and not np.isnan(part.pose[3]).any()
    assert np.isnan(part.gaze[2]).all() and not np.isnan(part.gaze[3]).any()
    assert not part.faces[2].any() and part.faces[3].any()
    nf = out["no face.mp4"]
    assert isinstance(nf, FaceResult) and not nf.mask.any()
    sixteen = out["sixteen.mp4"]
    assert sixteen.mask.all() and len(sixteen.mask) == 16
    # one call for the whole batch, with the documented flags, an argument list, cwd = bin folder
    logs = call_logs(workdir)
    assert len(logs) == 1
    text = logs[0].read_text()
    argv = eval_argv(text)
    assert argv.count("-fdir") == 4
    for flag in ("-2Dfp", "-pose", "-aus", "-gaze", "-simalign", "-nomask", "-au_static"):
        assert flag in argv
    assert argv[argv.index("-mloc") + 1] == "model/main_clnf_general.txt"
    assert f"cwd: {fake_bin.parent}" in text
    # the frame folders are named from hashes, not clip ids; and are cleaned up afterwards
    fdirs = [argv[i + 1] for i, a in enumerate(argv) if a == "-fdir"]
    assert all(re.fullmatch(r"clip\d{5}-[0-9a-f]{12}", Path(f).name) for f in fdirs)
    assert all(Path(f).is_absolute() and not Path(f).exists() for f in fdirs)
    no_pwned(tmp_path)


def eval_argv(log_text: str) -> list[str]:
    import json

    line = next(x for x in log_text.splitlines() if x.startswith("FAKE argv: "))
    return json.loads(line[len("FAKE argv: ") :])


def test_openface_crash_is_retried_per_clip(fake_bin, tmp_path):
    backend = openface(fake_bin)
    workdir = tmp_path / "work"
    clips = [("a", frames(3)), ("bad", frames(3, [RED])), ("c", frames(3)), ("d", frames(2))]
    out = backend.process(clips, workdir)
    assert isinstance(out["a"], FaceResult) and out["a"].mask.all()
    assert isinstance(out["c"], FaceResult) and out["c"].mask.all()
    assert isinstance(out["d"], FaceResult) and out["d"].mask.all()
    bad = out["bad"]
    assert isinstance(bad, ClipError) and bad.kind == "tool_crash"
    assert "SIGSEGV" in bad.message
    log_path = Path(bad.message.rsplit("log: ", 1)[1])
    assert log_path.is_file() and "Starting tracking" in log_path.read_text()
    # the batch call, then "bad", "c" and "d" one per call ("a" had its CSV already)
    assert len(call_logs(workdir)) == 4


def test_openface_unreadable_input(fake_bin, tmp_path):
    out = openface(fake_bin).process([("x", frames(2, [BLUE])), ("y", frames(2))], tmp_path)
    assert isinstance(out["x"], ClipError) and out["x"].kind == "unreadable"
    assert isinstance(out["y"], FaceResult) and out["y"].mask.all()


def test_openface_model_missing(fake_bin, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_OPENFACE_MODE", "model_missing")
    out = openface(fake_bin).process([("x", frames(2)), ("y", frames(2))], tmp_path)
    assert {e.kind for e in out.values()} == {"tool_missing"}
    assert all("landmark model" in e.message for e in out.values())


def test_openface_model_gone_at_run_time_is_tool_missing(fake_bin, tmp_path):
    """The binary's own "Could not load the landmark detector" is classified per batch."""
    other = tmp_path / "elsewhere" / "m.txt"
    other.parent.mkdir()
    other.write_text("x")
    backend = openface(fake_bin, model=str(other))
    other.unlink()  # vanishes after the check: the binary cannot load it
    out = backend.process([("x", frames(2))], tmp_path / "w")
    assert out["x"].kind == "tool_missing"


def test_openface_timeout_kills_the_call(fake_bin, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_OPENFACE_MODE", "hang")
    backend = openface(fake_bin, timeout_s=1.5)
    start = time.monotonic()
    out = backend.process([("x", frames(2)), ("y", frames(2))], tmp_path)
    assert time.monotonic() - start < 10  # killed at the timeout, not after its 30 s sleep
    assert {e.kind for e in out.values()} == {"tool_timeout"}
    text = call_logs(tmp_path)[0].read_text()
    pid = int(re.search(r"FAKE pid: (\d+)", text).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_openface_versions_record_the_binary(fake_bin):
    import hashlib

    v = openface(fake_bin).versions()
    assert v["openface_sha256"] == hashlib.sha256(fake_bin.read_bytes()).hexdigest()
    assert "-au_static" in v["flags"]
    v2 = openface(fake_bin, au_static=False).versions()
    assert "-au_static" not in v2["flags"]


GENUINE = os.environ.get("EMOFLOW_OPENFACE_BIN", "")


@pytest.mark.skipif(not GENUINE, reason="set EMOFLOW_OPENFACE_BIN to a real FeatureExtraction")
def test_openface_genuine_binary(astronaut, tmp_path):
    """The backend on the real binary (not in CI: OpenFace is built by hand, see
    shared/notes/openface-build.md): the astronaut tracked in every frame, a blank frame not."""
    backend = make_backend({"backend": "openface", "openface": {"bin": GENUINE, "batch": 2}})
    blank = np.full((3, 240, 320, 3), 90, dtype=np.uint8)
    out = backend.process([("a", np.stack([astronaut] * 3)), ("blank", blank)], tmp_path)
    res = out["a"]
    assert isinstance(res, FaceResult) and res.mask.all() and res.faces.shape == (3, 112, 112, 3)
    assert 180 < res.landmarks[0, :, 0].mean() < 270 and 90 < res.landmarks[0, :, 1].mean() < 190
    assert np.isfinite(res.au).all() and res.au.shape == (3, len(AU_NAMES))
    assert isinstance(out["blank"], FaceResult) and not out["blank"].mask.any()


def test_openface_frames_are_lossless_bmp_in_frame_order(fake_bin, tmp_path):
    """FeatureExtraction -fdir reads .bmp (and .png/.jpg) files in name order: the frames go
    there as BMP, pixel for pixel, named so that frame 10 sorts after frame 9."""
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (12, 36, 52, 3), dtype=np.uint8)
    written = write_frames([clip[:5], clip[5:]], tmp_path / "f")  # in 2 chunks
    files = sorted((tmp_path / "f").iterdir())
    assert written.k == 12
    assert [p.name for p in files] == [f"frame_{i:06d}.bmp" for i in range(1, 13)]
    for frame, path in zip(clip, files, strict=True):
        with Image.open(path) as im:
            assert im.format == "BMP" and np.array_equal(np.asarray(im.convert("RGB")), frame)


def test_alignment_ignores_expression_landmarks():
    """Like OpenFace, only rigid points drive the fit: an open mouth or raised brows do not."""
    from emoflow.faces.align import alignment_matrix

    truth = similarity_transform(openface_template(), openface_template() * 2.5 + [40, 30])
    detected = apply_transform(truth, openface_template())
    expressive = detected.copy()
    expressive[48:68, 1] += 25  # mouth opens
    expressive[17:27, 1] -= 15  # brows go up
    assert not np.isin(np.arange(17, 27), RIGID_INDICES).any()
    np.testing.assert_allclose(alignment_matrix(expressive), alignment_matrix(detected), atol=1e-9)
    np.testing.assert_allclose(
        apply_transform(alignment_matrix(detected), detected), openface_template(), atol=1e-6
    )


def test_openface_batch_memory_is_flat_with_clip_length(fake_bin, tmp_path):
    """The OpenFace path at bounded memory: the sampled frames go to disk as they decode (not
    joined: 230 KB each here, gigabytes for a long clip), the CSV is read a row at a time and
    the crops are spooled. A clip three times as long peaks no higher."""
    import tracemalloc

    from emoflow.features.featurize import face_features
    from emoflow.media.grid import TimeGrid
    from emoflow.storage.row_spool import RowSpool
    from tests.mediagen import make_clip

    spec = {"grid": TimeGrid(16000, 3.0, 1.5, "pad", 16).describe(), "size": 112}
    peaks = []
    for seconds in (20.0, 60.0):
        clip = make_clip(tmp_path / f"clip {seconds:g}.mp4", duration=seconds, fps=8, audio=False)
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            [rec] = face_features([("long", clip)], spec, openface(fake_bin), None)
            peaks.append(tracemalloc.get_traced_memory()[1] - start)
        finally:
            tracemalloc.stop()
        assert isinstance(rec.faces, RowSpool) and rec.mask.all()
        assert len(rec.mask) == round(seconds * 16 / 3) - 1
        assert np.asarray(rec.faces[::50]).any(axis=(1, 2, 3)).all()  # the replayed crops
    frames = len(rec.mask) * 320 * 240 * 3  # 73 MB of sampled frames, 12 MB of crops
    # one chunk of 32 decoded frames (7 MB) at most, whatever the length
    assert peaks[1] < 1.15 * peaks[0] + 2**20 < frames / 3, (peaks, frames)
