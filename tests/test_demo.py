"""The demo corpus: RAVDESS names, real h264/aac streams, determinism, faces, emotional audio.

These tests run the real ffmpeg; one 8-clip corpus (2 actors x 4 emotions) is shared.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from emoflow.datasets.ravdess import parse_name
from emoflow.demo.actors import make_actor, photo_rgb
from emoflow.demo.animation import bump_layout
from emoflow.demo.clips import EMOTIONS, FRAME_SIZE, SAMPLE_RATE, clip_list
from emoflow.demo.corpus import make_demo_corpus
from emoflow.errors import ToolMissingError

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="needs ffmpeg and ffprobe",
)

NAME = re.compile(r"^01-01-(\d\d)-(0[12])-(0[12])-(0[12])-(\d\d)\.mp4$")  # full-AV speech


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_demo_corpus(tmp_path_factory.mktemp("demo"), clips=8, seed=0, workers=2)


def _codes(path: Path) -> dict[str, str]:
    match = NAME.match(path.name)
    assert match, path.name
    emotion, intensity, statement, repetition, actor = match.groups()
    return {"emotion": emotion, "intensity": intensity, "actor": actor, "rep": repetition}


def _by(corpus: list[Path], actor: str, emotion: str) -> Path:
    (path,) = [p for p in corpus if _codes(p)["actor"] == actor and _codes(p)["emotion"] == emotion]
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _frames(path: Path) -> np.ndarray:
    args = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(args, capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, FRAME_SIZE, FRAME_SIZE, 3)


def _audio(path: Path) -> np.ndarray:
    args = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1"]
    args += ["-ar", str(SAMPLE_RATE), "-"]
    raw = subprocess.run(args, capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.float32)


def test_names_are_ravdess_codes_balanced_over_two_actors(corpus: list[Path]) -> None:
    assert len(corpus) == 8
    assert corpus == sorted(corpus)
    codes = [_codes(p) for p in corpus]
    assert sorted(c["emotion"] for c in codes) == sorted(list(EMOTIONS) * 2)
    assert {c["actor"] for c in codes} == {"01", "02"}
    for path, c in zip(corpus, codes, strict=True):
        assert path.parent.name == f"Actor_{c['actor']}"
        assert c["emotion"] in EMOTIONS
        assert c["intensity"] == "01"  # first round: normal intensity
        fields = parse_name(path.stem)  # the RAVDESS adapter reads them as full-AV speech
        assert (fields.speaker, fields.label) == (f"Actor_{c['actor']}", EMOTIONS[c["emotion"]])


def test_clip_order_is_balanced_for_other_sizes() -> None:
    default = clip_list(96)
    assert len({c.name for c in default}) == 96
    assert {c.actor for c in default} == set(range(1, 13))
    for emotion in EMOTIONS:
        assert sum(c.emotion == emotion for c in default) == 24
    assert {c.repetition for c in default} == {"01", "02"}
    assert [c.name for c in clip_list(8)] == [c.name for c in default[:8]]
    big = clip_list(384)
    assert len({c.name for c in big}) == 384 and max(c.actor for c in big) == 24
    assert all(c.intensity == "01" for c in big if c.emotion == "01")
    with pytest.raises(ValueError):
        clip_list(0)
    with pytest.raises(ValueError):
        clip_list(385)


def test_streams_are_h264_and_aac_at_25_fps(corpus: list[Path]) -> None:
    for path in corpus:
        args = ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json"]
        info = json.loads(
            subprocess.run([*args, str(path)], capture_output=True, check=True).stdout
        )
        streams = {s["codec_type"]: s for s in info["streams"]}
        assert set(streams) == {"video", "audio"}
        video, audio = streams["video"], streams["audio"]
        assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
        assert (video["width"], video["height"]) == (FRAME_SIZE, FRAME_SIZE)
        assert video["avg_frame_rate"] == "25/1"
        assert audio["codec_name"] == "aac" and int(audio["channels"]) == 1
        assert 2.0 <= float(info["format"]["duration"]) <= 4.0
        assert "tags" not in info["format"] or "encoder" not in info["format"]["tags"]


def test_regeneration_is_byte_identical_keeps_mtimes_and_repairs(corpus: list[Path]) -> None:
    before = {p: (_sha(p), p.stat().st_mtime_ns, p.stat().st_ino) for p in corpus}
    broken = corpus[3]
    broken.write_bytes(b"not a video")
    for cached in (photo_rgb, make_actor, bump_layout):  # start from scratch
        cached.cache_clear()

    # a smaller corpus is a prefix of the larger one: actor 01's four clips (which keeps it fast),
    # made here in this process where the fixture used 2 worker processes
    again = make_demo_corpus(corpus[0].parents[1], clips=4, seed=0, workers=1)

    assert again == corpus[:4] and broken in again
    for path, (sha, mtime, inode) in before.items():
        assert _sha(path) == sha, path.name
        if path != broken:
            stat = path.stat()
            assert (stat.st_mtime_ns, stat.st_ino) == (mtime, inode), f"{path.name} was rewritten"
    leftovers = [p for p in corpus[0].parents[1].rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_seed_changes_the_content(corpus: list[Path], tmp_path: Path) -> None:
    (other,) = make_demo_corpus(tmp_path, clips=1, seed=1)
    assert other.relative_to(tmp_path) == corpus[0].relative_to(corpus[0].parents[1])
    assert _sha(other) != _sha(corpus[0])


def test_missing_ffmpeg_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ToolMissingError, match="ffmpeg"):
        make_demo_corpus(tmp_path, clips=4, ffmpeg=str(tmp_path / "no-such-ffmpeg"))
    assert list(tmp_path.iterdir()) == []


def test_dlib_finds_the_face_in_nearly_every_frame(corpus: list[Path]) -> None:
    dlib = pytest.importorskip("dlib")
    detector = dlib.get_frontal_face_detector()
    for path in (_by(corpus, "01", "05"), _by(corpus, "02", "04")):  # shake, droop
        frames = _frames(path)
        assert len(frames) == 80
        found = [len(detector(frame, 0)) > 0 for frame in frames]
        assert np.mean(found) >= 0.95, (path.name, np.mean(found))
        boxes = [detector(frame, 0) for frame in frames[::10]]
        assert min(b[0].width() for b in boxes if len(b)) >= 100


@functools.cache
def _landmarker() -> tuple[object, object]:
    import dlib

    models = importlib.util.find_spec("face_recognition_models")
    assert models is not None and models.submodule_search_locations
    model = Path(models.submodule_search_locations[0]) / "models"
    predictor = dlib.shape_predictor(str(model / "shape_predictor_68_face_landmarks.dat"))
    return dlib.get_frontal_face_detector(), predictor


def _corner_lift(frames: np.ndarray) -> float:
    """Mean height of the mouth corners above the lip centre, in interocular distances."""
    detector, predictor = _landmarker()
    lifts = []
    for frame in frames:
        (box, *_) = detector(frame, 0)
        shape = predictor(frame, box)
        pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=float)
        eyes = np.linalg.norm(pts[36:42].mean(0) - pts[42:48].mean(0))
        centre = (pts[51] + pts[57]) / 2.0
        lifts.append((centre[1] - (pts[48, 1] + pts[54, 1]) / 2.0) / eyes)
    return float(np.mean(lifts))


def test_faces_carry_valence_smiling_when_pleasant_frowning_when_not(corpus: list[Path]) -> None:
    pytest.importorskip("dlib")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("needs face-recognition-models")
    for actor in ("01", "02"):
        lift = {e: _corner_lift(_frames(_by(corpus, actor, e))[40::10]) for e in EMOTIONS}
        pleasant, unpleasant = (lift["01"], lift["03"]), (lift["04"], lift["05"])
        assert min(pleasant) > max(unpleasant) + 0.06, (actor, lift)  # corners up vs down
        # the face tells valence only: happy and neutral (sad and angry) look alike
        assert abs(lift["01"] - lift["03"]) < 0.05 and abs(lift["04"] - lift["05"]) < 0.05, lift


def test_audio_energy_and_pitch_follow_the_emotion(corpus: list[Path]) -> None:
    librosa = pytest.importorskip("librosa")
    stats = {}
    for path in corpus:
        y = _audio(path)
        assert 2.0 * SAMPLE_RATE <= len(y) <= 4.0 * SAMPLE_RATE
        f0 = librosa.yin(y, fmin=60, fmax=600, sr=SAMPLE_RATE, frame_length=1024, hop_length=256)
        frame_rms = librosa.feature.rms(y=y, frame_length=1024, hop_length=256)[0]
        voiced = frame_rms[: len(f0)] > 0.3 * frame_rms.max()
        c = _codes(path)
        stats[c["actor"], c["emotion"]] = (float(np.sqrt(np.mean(y**2))), np.median(f0[voiced]))
    for actor in ("01", "02"):
        rms = {e: stats[actor, e][0] for e in EMOTIONS}
        f0 = {e: stats[actor, e][1] for e in EMOTIONS}
        # the voice carries arousal: happy and angry louder and higher than neutral and sad
        assert min(rms["03"], rms["05"]) > 2.0 * max(rms["01"], rms["04"]), (actor, rms)
        assert min(f0["03"], f0["05"]) > 1.2 * max(f0["01"], f0["04"]), (actor, f0)
        # and arousal only: within each arousal level the voices differ by chance alone
        assert 0.7 < rms["03"] / rms["05"] < 1.4 and 0.7 < rms["01"] / rms["04"] < 1.4, rms
    # speakers differ: the two actors' neutral pitch is far apart
    assert abs(np.log(stats["01", "01"][1] / stats["02", "01"][1])) > np.log(1.3)
