"""The affwild2 and timeseries adapters: on a generated Aff-Wild2-shaped corpus (real videos,
official layout) and on tiny hand-made layouts (files of a few bytes: the scan never decodes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emoflow.config import validate_config
from emoflow.errors import ConfigError
from emoflow.labels.tracks import TrackSource, read_track
from tests.affwild_corpus import VA, make_affwild_corpus
from tests.test_datasets import by_id, kinds, message, scan, touch, write_csv

VA_HEADER = "valence,arousal\n0.1,0.2\n"
EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n4\n"


def note(root: Path, rel: str, text: str = VA_HEADER) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- the generated corpus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("affwild2")
    return make_affwild_corpus(
        root, durations=(9.6, 12.8, 6.4), two_person_s=12.8, test_videos=1, workers=2
    )


def probe(path: Path) -> tuple[float, int, float]:
    """(frame rate, frames, audio seconds) of a video, by ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_entries",
         "stream=codec_type,r_frame_rate,nb_read_packets,duration", "-of", "json", str(path)],
        capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    streams = {s["codec_type"]: s for s in json.loads(out)["streams"]}
    num, den = streams["video"]["r_frame_rate"].split("/")
    video = streams["video"]
    return int(num) / int(den), int(video["nb_read_packets"]), float(streams["audio"]["duration"])


def test_generated_corpus_scans_as_published(corpus: dict[str, Any]) -> None:
    result = scan(corpus["root"], "affwild2")
    assert result.failures == []
    clips = by_id(result)
    expected = corpus["clips"]
    test_video = next(n for n, v in corpus["videos"].items() if v["split"] == "test")
    assert sorted(clips) == sorted([*expected, test_video])
    for clip_id, want in expected.items():
        clip = clips[clip_id]
        assert (clip.path, clip.speaker, clip.split) == (
            str(want["path"].resolve()), want["speaker"], want["split"]
        )  # fmt: skip
        assert (clip.label, clip.valence, clip.arousal) == (None, None, None)
        source = result.tracks[clip_id]
        assert source == TrackSource(
            va=str(want["va_file"].resolve()), expr=str(want["expr_file"].resolve()),
            side=want["side"],
        )  # fmt: skip
    assert {c.split for c in result.clips} == {"train", "val", "test"}
    assert clips[test_video].split == "test" and result.tracks[test_video] == TrackSource()
    left, right = clips["video4_left"], clips["video4_right"]
    assert left.path == right.path and left.speaker == right.speaker == "video4"


def test_generated_labels_follow_the_acted_emotions(corpus: dict[str, Any]) -> None:
    """Read back through the scan's sources at the probed frame rate: one label line per video
    frame, -5/-1 stretches, V/A near each emotion's values, expressions equal to the acted
    emotion, and the two people of the two-person video labelled differently."""
    result = scan(corpus["root"], "affwild2")
    for clip_id, want in corpus["clips"].items():
        fps, frames, audio_s = probe(want["path"])
        assert fps == corpus["fps"] and frames == corpus["videos"][want["video"]]["frames"]
        assert abs(audio_s - frames / fps) < 0.1
        track = read_track(result.tracks[clip_id], fps)
        assert len(track) == frames
        np.testing.assert_allclose(track["time_s"], np.arange(frames) / fps)
        np.testing.assert_array_equal(track["valence"], want["valence"])
        np.testing.assert_array_equal(track["arousal"], want["arousal"])
        assert track["expression"].tolist() == want["expression"]
        unannotated = track["valence"].isna().to_numpy()
        assert 0 < unannotated.sum() < frames / 2
        assert 0 < track["expression"].isna().sum() < frames / 2
        assert (track["valence"].isna() != track["expression"].isna()).any()  # own places
        acted = want["emotion"]
        named = track["expression"].notna().to_numpy()
        assert (track["expression"].to_numpy()[named] == acted[named]).all()
        settled = ~unannotated & (np.arange(frames) % int(3.2 * fps) >= fps)  # past the lag
        for emotion, (v, a) in VA.items():
            mine = settled & (acted == emotion)
            if mine.any():
                assert np.abs(track["valence"].to_numpy()[mine] - v).max() < 0.1
                assert np.abs(track["arousal"].to_numpy()[mine] - a).max() < 0.1
    left, right = corpus["clips"]["video4_left"], corpus["clips"]["video4_right"]
    assert (left["emotion"] != right["emotion"]).all()


# --- hand-made layouts ----------------------------------------------------------------------


def test_abaw_2020_folder_names_and_official_split(tmp_path: Path) -> None:
    touch(tmp_path, "videos/batch1/1-30-1280x720.mp4", "videos/batch2/video5.avi")
    note(tmp_path, "annotations/VA_Set/Training_Set/1-30-1280x720.txt")
    note(tmp_path, "annotations/VA_Set/Validation_Set/video5.txt")
    note(tmp_path, "annotations/EXPR_Set/Training_Set/video5.txt", EXPR_HEADER)
    note(tmp_path, "annotations/AU_Set/Training_Set/video5.txt", "AU1,AU2\n0,1\n")  # not read
    result = scan(tmp_path, "affwild2")
    assert result.failures == []
    clips = by_id(result)
    assert {c: (r.split, r.speaker) for c, r in clips.items()} == {
        "1-30-1280x720": ("train", "1-30-1280x720"),
        "video5": ("val", "video5"),  # VA says val, EXPR train: held out
    }
    assert clips["video5"].path == str(tmp_path / "videos/batch2/video5.avi")
    five = result.tracks["video5"]
    assert five.va.endswith("VA_Set/Validation_Set/video5.txt")
    assert five.expr.endswith("EXPR_Set/Training_Set/video5.txt") and five.side is None
    assert result.tracks["1-30-1280x720"].expr is None


def test_two_person_video_gives_one_clip_per_side(tmp_path: Path) -> None:
    touch(tmp_path, "batch1/10-60-1280x720.mp4", "batch1/solo.mp4", "batch1/x_left.mp4")
    root = "6th ABAW Annotations/VA_Estimation_Challenge/Train_Set"
    for name in ("10-60-1280x720_left", "10-60-1280x720_right", "solo", "x_left"):
        note(tmp_path, f"{root}/{name}.txt")
    note(
        tmp_path,
        "6th ABAW Annotations/EXPR_Recognition_Challenge/Train_Set/x_left.txt",
        EXPR_HEADER,
    )
    result = scan(tmp_path, "affwild2")
    assert result.failures == []
    clips = by_id(result)
    video = str(tmp_path / "batch1/10-60-1280x720.mp4")
    for side in ("left", "right"):
        clip = clips[f"10-60-1280x720_{side}"]
        assert (clip.path, clip.speaker, clip.split) == (video, "10-60-1280x720", "train")
        assert result.tracks[clip.clip_id].side == side
    # a video whose own name ends in _left is one person
    assert clips["x_left"].speaker == "x_left" and result.tracks["x_left"].side is None
    assert result.tracks["x_left"].expr is not None
    assert "10-60-1280x720" not in clips  # the video itself is not a third clip


def test_missing_video_unannotated_video_and_duplicates(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "batch1/a.mp4", "batch1/test1.mp4", "batch1/dup.mp4", "batch2/dup.avi",
        "batch1/a.wav",  # audio extracted next to the video: ignored
    )  # fmt: skip
    va = "annotations/VA_Estimation_Challenge"
    note(tmp_path, f"{va}/Train_Set/a.txt")
    note(tmp_path, f"{va}/Validation_Set/a.txt")  # a second VA file of one video
    note(tmp_path, f"{va}/Train_Set/gone.txt")
    note(tmp_path, f"{va}/Train_Set/gone_left.txt")
    note(tmp_path, f"{va}/Train_Set/dup.txt")
    result = scan(tmp_path, "affwild2")
    assert kinds(result) == {
        "a": ["duplicate_id"], "dup": ["duplicate_id"],
        "gone": ["not_found"], "gone_left": ["not_found"],
    }  # fmt: skip
    assert "Train_Set/gone.txt" in message(result, "gone") and "'gone'" in message(result, "gone")
    assert "Validation_Set/a.txt" in message(result, "a")
    assert "batch2/dup.avi" in message(result, "dup")
    clips = by_id(result)
    assert clips["a"].split == "train" and clips["a"].path.endswith("a.mp4")
    assert clips["dup"].path == str(tmp_path / "batch1/dup.mp4")
    assert clips["test1"].split == "test" and result.tracks["test1"] == TrackSource()
    assert sorted(result.tracks) == ["a", "dup", "test1"]


def test_label_tracks_selects_the_challenge(tmp_path: Path) -> None:
    touch(tmp_path, "v/both.mp4", "v/expr_only.mp4", "v/none.mp4")
    note(tmp_path, "a/VA_Estimation_Challenge/Train_Set/both.txt")
    note(tmp_path, "a/EXPR_Classification_Challenge/Validation_Set/both.txt", EXPR_HEADER)
    note(tmp_path, "a/EXPR_Classification_Challenge/Train_Set/expr_only.txt", EXPR_HEADER)
    va_only = scan(tmp_path, "affwild2", label_tracks=["va"])
    assert {c.clip_id: c.split for c in va_only.clips} == {"both": "train", "none": "test"}
    assert va_only.tracks["none"].files == ()
    assert va_only.tracks["both"].expr is None and va_only.failures == []
    both = scan(tmp_path, "affwild2")
    assert {c.clip_id: c.split for c in both.clips} == {
        "both": "val", "expr_only": "train", "none": "test"
    }  # fmt: skip
    # allowed labels apply to clip labels, which these clips do not have: nothing is rejected
    assert len(scan(tmp_path, "affwild2", labels=["happy", "sad"]).clips) == 3


def test_layout_errors(tmp_path: Path) -> None:
    touch(tmp_path, "videos/a.mp4")
    with pytest.raises(ConfigError, match="no Aff-Wild2 annotation folder"):
        scan(tmp_path, "affwild2")
    note(tmp_path, "annotations/VA_Set/Train_Set/a.txt")
    note(tmp_path, "new/VA_Estimation_Challenge/Train_Set/a.txt")
    with pytest.raises(ConfigError, match="2 VA annotation folders"):
        scan(tmp_path, "affwild2")
    with pytest.raises(ConfigError, match="label_tracks"):
        scan(tmp_path, "affwild2", label_tracks=["au"])


def test_new_keys_have_no_defaults() -> None:
    """Existing configs validate to the same filled section (so their hashes do not move)."""
    section = validate_config({"dataset": {"name": "x", "adapter": "csv", "root": "."}})["dataset"]
    assert "label_tracks" not in section and "track_columns" not in section
    assert "label_file" not in section["columns"]


# --- timeseries -----------------------------------------------------------------------------


def test_timeseries_end2you_input_file(tmp_path: Path) -> None:
    touch(tmp_path, "media/p1.wav", "media/p2.mp4", "media/p3.wav")
    note(tmp_path, "labels/p1.csv", "time,V,A\n0.0,0.1,0.2\n0.04,0.3,-0.4\n")
    note(tmp_path, "labels/p2.csv", "time,V,A\n0.0,0.1,0.2\n")
    write_csv(
        tmp_path / "list.csv",
        ["file", "label_file", "speaker", "split"],
        [
            ["media/p1.wav", "labels/p1.csv", "s1", "Train"],
            ["media/p2.mp4", str(tmp_path / "labels/p2.csv"), "s2", "Dev"],
            ["media/p3.wav", "labels/missing.csv", "s3", "train"],
            ["media/p4.wav", "labels/p1.csv", "s4", "train"],
            ["media/p1.wav", "labels/p2.csv", "s1", "train"],  # the same clip again
        ],
    )
    result = scan(
        tmp_path,
        "timeseries",
        labels_csv="list.csv",
        track_columns={"valence": "V", "arousal": "A"},
    )
    assert kinds(result) == {
        "media/p1": ["duplicate_id"], "media/p3": ["not_found"], "media/p4": ["not_found"]
    }  # fmt: skip
    assert "labels/missing.csv" in message(result, "media/p3")
    clips = by_id(result)
    assert {c: (r.speaker, r.split, r.label) for c, r in clips.items()} == {
        "media/p1": ("s1", "train", None),
        "media/p2": ("s2", "val", None),
    }
    source = result.tracks["media/p1"]
    assert source == TrackSource(
        table=str(tmp_path / "labels/p1.csv"), columns=(("A", "arousal"), ("V", "valence"))
    )
    track = read_track(source, fps=None)
    assert track["valence"].tolist() == [pytest.approx(0.1), pytest.approx(0.3)]
    assert track["arousal"].tolist() == [pytest.approx(0.2), pytest.approx(-0.4)]


def test_timeseries_named_columns_and_paths_outside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    touch(root, "a.wav", "b.wav")
    note(root, "a.csv", "time,valence\n0,0\n")
    note(tmp_path, "outside.csv", "time,valence\n0,0\n")
    write_csv(
        root / "t.csv",
        ["media", "labels", "who"],
        [["a.wav", "a.csv", "x"], ["b.wav", "../outside.csv", "y"]],
    )
    cfg = {"labels_csv": "t.csv", "columns": {"path": "media", "label_file": "labels"}}
    result = scan(root, "timeseries", **cfg)
    assert kinds(result) == {"b": ["outside_root"]}
    assert result.tracks == {"a": TrackSource(table=str(root / "a.csv"))}
    assert by_id(result)["a"].speaker is None  # no speaker column of that name
    allowed = scan(root, "timeseries", allow_outside_root=True, **cfg)
    assert sorted(allowed.tracks) == ["a", "b"]
    write_csv(root / "bad.csv", ["path"], [["a.wav"]])
    with pytest.raises(ConfigError, match="label_file"):
        scan(root, "timeseries", labels_csv="bad.csv")


def test_annotation_links_inside_and_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    touch(root, "videos/a.mp4", "videos/b.mp4")
    note(root, "shared/a.txt")
    note(tmp_path, "elsewhere/b.txt")
    folder = root / "annotations/VA_Estimation_Challenge/Train_Set"
    folder.mkdir(parents=True)
    (folder / "a.txt").symlink_to(root / "shared/a.txt")
    (folder / "b.txt").symlink_to(tmp_path / "elsewhere/b.txt")
    result = scan(root, "affwild2")
    assert kinds(result) == {"b": ["outside_root"]}
    assert result.tracks["a"].va == str(root / "shared/a.txt")
    assert by_id(result)["b"].split == "test"  # its only annotation was refused
    allowed = scan(root, "affwild2", allow_outside_root=True)
    assert allowed.failures == [] and allowed.tracks["b"].va == str(tmp_path / "elsewhere/b.txt")


def test_generated_corpus_is_byte_identical_from_run_to_run(tmp_path: Path) -> None:
    made = [
        make_affwild_corpus(tmp_path / name, seed=3, durations=(4.0,), two_person_s=3.2)
        for name in ("one", "two")
    ]
    files = [sorted(p.relative_to(c["root"]) for p in c["root"].rglob("*.*")) for c in made]
    assert files[0] == files[1] and len(files[0]) == 8  # 2 videos, 3 clips x 2 tracks
    for rel in files[0]:
        assert (made[0]["root"] / rel).read_bytes() == (made[1]["root"] / rel).read_bytes()
