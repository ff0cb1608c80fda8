"""Dataset adapters on tiny fake trees in each corpus's real naming (files are a few bytes:
the scan never decodes)."""

from __future__ import annotations

import csv
import os
import signal
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from emoflow.datasets.records import ClipRecord, ScanResult
from emoflow.datasets.registry import ADAPTERS, scan_dataset
from emoflow.datasets.walk import walk_media
from emoflow.errors import ConfigError


def touch(root: Path, *rels: str) -> None:
    """Create each file (with its folders) holding a few bytes."""
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"fake")


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def scan(root: Path, adapter: str, **extra: Any) -> ScanResult:
    return scan_dataset({"name": "test", "adapter": adapter, "root": str(root), **extra})


def by_id(result: ScanResult) -> dict[str, ClipRecord]:
    return {clip.clip_id: clip for clip in result.clips}


def kinds(result: ScanResult) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in result.failures:
        out.setdefault(f.clip_id, []).append(f.kind)
    return out


def message(result: ScanResult, clip_id: str) -> str:
    (found,) = [f.message for f in result.failures if f.clip_id == clip_id]
    return found


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail (instead of hanging) when the test runs past 5 s."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("the scan did not finish within 5 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --- RAVDESS ---------------------------------------------------------------------------


def test_ravdess_actor_tree_flat_files_and_both_media(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "Actor_01/01-01-03-02-01-01-01.mp4",  # full-AV, happy, strong, actor 1
        "Actor_01/03-01-01-01-01-01-01.wav",  # audio-only, neutral
        "Actor_24/02-02-08-01-02-02-24.mp4",  # video-only, song, surprised
        "02-01-02-01-01-01-12.mp4",  # flat demo layout, calm
        "Actor_01/notes.txt",  # not media
        "Actor_01/.01-01-05-01-01-01-01.mp4",  # hidden
        "Actor_01/01-01-06-01-01-01-01.mp4~",  # editor backup
    )
    result = scan(tmp_path, "ravdess")
    clips = by_id(result)
    assert list(clips) == [
        "02-01-02-01-01-01-12",
        "Actor_01/01-01-03-02-01-01-01",
        "Actor_01/03-01-01-01-01-01-01",
        "Actor_24/02-02-08-01-02-02-24",
    ]
    assert result.failures == []
    first = clips["Actor_01/01-01-03-02-01-01-01"]
    assert (first.label, first.speaker, first.split) == ("happy", "Actor_01", None)
    assert first.path == str((tmp_path / "Actor_01/01-01-03-02-01-01-01.mp4").resolve())
    assert clips["Actor_01/03-01-01-01-01-01-01"].path.endswith(".wav")
    assert clips["Actor_01/03-01-01-01-01-01-01"].label == "neutral"
    assert (
        clips["Actor_24/02-02-08-01-02-02-24"].label,
        clips["Actor_24/02-02-08-01-02-02-24"].speaker,
    ) == ("surprised", "Actor_24")
    assert (clips["02-01-02-01-01-01-12"].label, clips["02-01-02-01-01-01-12"].speaker) == (
        "calm",
        "Actor_12",
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("01-01-01-01-01-01-01", "neutral"),
        ("01-01-02-01-01-01-01", "calm"),
        ("01-01-03-01-01-01-01", "happy"),
        ("01-01-04-01-01-01-01", "sad"),
        ("01-01-05-01-01-01-01", "angry"),
        ("01-01-06-01-01-01-01", "fearful"),
        ("01-01-07-01-01-01-01", "disgust"),
        ("01-01-08-01-01-01-01", "surprised"),
    ],
)
def test_ravdess_emotion_codes(tmp_path: Path, name: str, expected: str) -> None:
    touch(tmp_path, f"{name}.mp4")
    assert [c.label for c in scan(tmp_path, "ravdess").clips] == [expected]


def test_ravdess_bad_names_are_bad_labels_with_readable_messages(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "02-01-09-01-01-01-01.mp4",  # emotion 09
        "04-01-01-01-01-01-01.mp4",  # modality 04
        "01-01-01-01-01-01-25.mp4",  # actor 25
        "interview.mp4",
        "01-01-01-01-01-01.mp4",  # six fields
    )
    result = scan(tmp_path, "ravdess")
    assert result.clips == []
    assert [f.kind for f in result.failures] == ["bad_label"] * 5
    assert message(result, "02-01-09-01-01-01-01") == (
        "emotion code '09' in '02-01-09-01-01-01-01' is not a RAVDESS emotion (01–08)"
    )
    assert "modality code '04'" in message(result, "04-01-01-01-01-01-01")
    assert "actor code '25'" in message(result, "01-01-01-01-01-01-25")
    assert "does not follow the RAVDESS pattern MM-VV-EE-II-SS-RR-AA" in message(
        result, "interview"
    )
    assert "does not follow" in message(result, "01-01-01-01-01-01")


def test_labels_list_rejects_other_labels(tmp_path: Path) -> None:
    touch(tmp_path, "01-01-01-01-01-01-01.mp4", "01-01-02-01-01-01-01.mp4")
    result = scan(tmp_path, "ravdess", labels=["neutral", "happy"])
    assert [c.clip_id for c in result.clips] == ["01-01-01-01-01-01-01"]
    assert kinds(result) == {"01-01-02-01-01-01-01": ["bad_label"]}
    text = message(result, "01-01-02-01-01-01-01")
    assert "'calm'" in text and "neutral, happy" in text


# --- CREMA-D ---------------------------------------------------------------------------


def test_cremad(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "VideoFlash/1001_DFA_ANG_XX.flv",
        "VideoFlash/1091_IEO_SAD_HI.flv",
        "AudioWAV/1001_DFA_ANG_XX.wav",
        "AudioWAV/1015_TIE_FEA_LO.wav",
        "VideoFlash/1002_DFA_XYZ_XX.flv",
        "VideoFlash/1003_DFA_HAP_QQ.flv",
        "VideoFlash/readme_clip.flv",
    )
    result = scan(tmp_path, "cremad")
    clips = by_id(result)
    assert list(clips) == [
        "AudioWAV/1001_DFA_ANG_XX",
        "AudioWAV/1015_TIE_FEA_LO",
        "VideoFlash/1001_DFA_ANG_XX",
        "VideoFlash/1091_IEO_SAD_HI",
    ]
    assert (
        clips["VideoFlash/1001_DFA_ANG_XX"].label,
        clips["VideoFlash/1001_DFA_ANG_XX"].speaker,
    ) == ("angry", "1001")
    assert clips["AudioWAV/1015_TIE_FEA_LO"].label == "fearful"
    assert (
        clips["VideoFlash/1091_IEO_SAD_HI"].label,
        clips["VideoFlash/1091_IEO_SAD_HI"].speaker,
    ) == ("sad", "1091")
    assert kinds(result) == {
        "VideoFlash/1002_DFA_XYZ_XX": ["bad_label"],
        "VideoFlash/1003_DFA_HAP_QQ": ["bad_label"],
        "VideoFlash/readme_clip": ["bad_label"],
    }
    assert "emotion code 'XYZ'" in message(result, "VideoFlash/1002_DFA_XYZ_XX")
    assert "ANG, DIS, FEA, HAP, NEU, SAD" in message(result, "VideoFlash/1002_DFA_XYZ_XX")
    assert "intensity code 'QQ'" in message(result, "VideoFlash/1003_DFA_HAP_QQ")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ANG", "angry"),
        ("DIS", "disgust"),
        ("FEA", "fearful"),
        ("HAP", "happy"),
        ("NEU", "neutral"),
        ("SAD", "sad"),
    ],
)
def test_cremad_emotion_codes(tmp_path: Path, code: str, expected: str) -> None:
    touch(tmp_path, f"1050_ITS_{code}_MD.flv")
    assert [c.label for c in scan(tmp_path, "cremad").clips] == [expected]


# --- eNTERFACE'05 ------------------------------------------------------------------------


def test_enterface_with_and_without_sentence_level(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "subject 1/anger/sentence 1/s1_an_1.avi",
        "subject 1/happiness/sentence 5/s1_ha_5.avi",
        "subject 6/sadness/s6_sa_2.avi",  # the real corpus's subject 6: no sentence level
        "subject 12/fear/sentence 3/s12_fe_3.avi",
        "subject 12/disgust/sentence 2/s12_di_2.avi",
        "subject 3/surprise/sentence 4/s3_su_4.avi",
        "subject 2/boredom/sentence 1/s2_bo_1.avi",
        "loose.avi",
    )
    result = scan(tmp_path, "enterface")
    clips = by_id(result)
    expected = {
        "subject 1/anger/sentence 1/s1_an_1": ("angry", "subject 1"),
        "subject 1/happiness/sentence 5/s1_ha_5": ("happy", "subject 1"),
        "subject 6/sadness/s6_sa_2": ("sad", "subject 6"),
        "subject 12/fear/sentence 3/s12_fe_3": ("fearful", "subject 12"),
        "subject 12/disgust/sentence 2/s12_di_2": ("disgust", "subject 12"),
        "subject 3/surprise/sentence 4/s3_su_4": ("surprised", "subject 3"),
    }
    assert {cid: (c.label, c.speaker) for cid, c in clips.items()} == expected
    assert kinds(result) == {
        "loose": ["bad_label"],
        "subject 2/boredom/sentence 1/s2_bo_1": ["bad_label"],
    }
    assert "'boredom'" in message(result, "subject 2/boredom/sentence 1/s2_bo_1")
    assert "subject N" in message(result, "loose")


# --- AFEW ----------------------------------------------------------------------------------


def test_afew_folders_and_splits(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "Train/Angry/000046280.avi",
        "Train/Surprise/000149120.avi",
        "Val/Fear/002205560.avi",
        "Val_AFEW/Disgust/003.avi",
        "Neutral/004.avi",
        "Happy/005.avi",
        "Test/006.avi",
        "Bored/007.avi",
        "Train/008.avi",
    )
    result = scan(tmp_path, "afew")
    got = {cid: (c.label, c.split, c.speaker) for cid, c in by_id(result).items()}
    assert got == {
        "Train/Angry/000046280": ("angry", "train", None),
        "Train/Surprise/000149120": ("surprised", "train", None),
        "Val/Fear/002205560": ("fearful", "val", None),
        "Val_AFEW/Disgust/003": ("disgust", "val", None),
        "Neutral/004": ("neutral", None, None),
        "Happy/005": ("happy", None, None),
        "Test/006": (None, "test", None),
    }
    assert kinds(result) == {"Bored/007": ["bad_label"], "Train/008": ["bad_label"]}


# --- OMG-Emotion ---------------------------------------------------------------------------

OMG_HEADER = ["link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote"]


def test_omg_csv_with_split_from_name(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "0a1b2c3d4/utterance_1.mp4",
        "0a1b2c3d4/utterance_2.mp4",
        "ffeeddcc/utterance_7.mp4",
        "ffeeddcc/utterance_8.mp4",
    )
    write_csv(
        tmp_path / "omg_TrainVideos.csv",
        OMG_HEADER,
        [
            [
                "https://youtu.be/x",
                "0:01",
                "0:04",
                "0a1b2c3d4",
                "utterance_1.mp4",
                "0.51",
                "-0.25",
                "3",
            ],
            [
                "https://youtu.be/x",
                "0:05",
                "0:09",
                "0a1b2c3d4",
                "utterance_2.mp4",
                "0.2",
                "0.4",
                "6",
            ],
            [
                "https://youtu.be/y",
                "0:00",
                "0:02",
                "ffeeddcc",
                "utterance_7.mp4",
                "0.9",
                "0.1",
                "0.0",
            ],
            [
                "https://youtu.be/y",
                "0:02",
                "0:03",
                "ffeeddcc",
                "utterance_8.mp4",
                "0.3",
                "0.3",
                "7",
            ],
            [
                "https://youtu.be/z",
                "0:00",
                "0:01",
                "missingvid",
                "utterance_1.mp4",
                "0.1",
                "0.1",
                "4",
            ],
        ],
    )
    result = scan(tmp_path, "omg", labels_csv="omg_TrainVideos.csv")
    got = {
        cid: (c.label, c.speaker, c.valence, c.arousal, c.split) for cid, c in by_id(result).items()
    }
    assert got == {
        "0a1b2c3d4/utterance_1": ("happy", "0a1b2c3d4", -0.25, 0.51, "train"),
        "0a1b2c3d4/utterance_2": ("surprised", "0a1b2c3d4", 0.4, 0.2, "train"),
        "ffeeddcc/utterance_7": ("angry", "ffeeddcc", 0.1, 0.9, "train"),
    }
    assert kinds(result) == {
        "ffeeddcc/utterance_8": ["bad_label"],
        "missingvid/utterance_1": ["not_found"],
    }
    assert "EmotionMaxVote '7'" in message(result, "ffeeddcc/utterance_8")


def test_omg_split_column_and_all_csvs_when_unset(tmp_path: Path) -> None:
    touch(tmp_path, "v1/utterance_1.mp4", "v2/utterance_1.mp4", "v3/utterance_1.mp4")
    header = ["video", "utterance", "valence", "arousal", "EmotionMaxVote"]
    write_csv(
        tmp_path / "omg_ValidationVideos.csv", header, [["v1", "utterance_1.mp4", "0", "0", "4"]]
    )
    write_csv(tmp_path / "omg_TestVideos.csv", header, [["v2", "utterance_1.mp4", "", "", ""]])
    write_csv(
        tmp_path / "extra.csv",
        [*header, "split"],
        [["v3", "utterance_1.mp4", "1", "1", "5", "train"]],
    )
    result = scan(tmp_path, "omg")
    got = {cid: (c.label, c.valence, c.split) for cid, c in by_id(result).items()}
    assert got == {
        "v1/utterance_1": ("neutral", 0.0, "val"),
        "v2/utterance_1": (None, None, "test"),
        "v3/utterance_1": ("sad", 1.0, "train"),
    }
    assert result.failures == []


def test_omg_real_validation_rows_make_a_scored_validation_part(tmp_path: Path) -> None:
    """The challenge's own CSV (header and rows as published): validation clips, speaker = the
    video, and under the official protocol the labelled validation part is the test set."""
    from emoflow.protocols.folds import make_split

    src = Path(__file__).parent / "data" / "omg" / "omg_ValidationVideos.csv"
    (tmp_path / src.name).write_bytes(src.read_bytes())
    rows = list(csv.DictReader(src.open()))
    touch(tmp_path, *(f"{r['video']}/{r['utterance']}" for r in rows))
    touch(tmp_path, "trainvid/utterance_1.mp4", "trainvid2/utterance_1.mp4")
    touch(tmp_path, "trainvid3/utterance_1.mp4")
    header = ["video", "utterance", "arousal", "valence", "EmotionMaxVote"]
    train = [[f"trainvid{s}", "utterance_1.mp4", "0.5", "0.1", "4"] for s in ("", "2", "3")]
    write_csv(tmp_path / "omg_TrainVideos.csv", header, train)
    result = scan(tmp_path, "omg")
    got = by_id(result)
    clip = got["74de88564/utterance_6"]
    assert (clip.speaker, clip.split, clip.label) == ("74de88564", "val", "surprised")
    assert (clip.arousal, clip.valence) == (0.541360409764, 0.14135798020999998)
    assert got["8c49a05d3_1/utterance_4"].label == "sad"
    assert result.failures == []
    table = pd.DataFrame(
        [{"clip_id": c, "speaker": r.speaker, "label": r.label, "valence": r.valence,
          "arousal": r.arousal, "split": r.split} for c, r in sorted(got.items())]
    )  # fmt: skip
    split = make_split(table, {"val_speakers": 0.34}, "dimensional", "omg")
    test = split.folds.loc[split.folds.role == "test", "clip_id"].tolist()
    assert sorted(test) == sorted(f"{r['video']}/{r['utterance'][:-4]}" for r in rows)
    assert split.protocol["name"] == "official"


def test_omg_missing_column(tmp_path: Path) -> None:
    write_csv(tmp_path / "omg.csv", ["video", "valence"], [["v1", "0.1"]])
    with pytest.raises(ConfigError, match="'utterance'.*'video', 'valence'"):
        scan(tmp_path, "omg", labels_csv="omg.csv")


# --- generic CSV ---------------------------------------------------------------------------


def test_csv_columns_empty_cells_and_numbers(tmp_path: Path) -> None:
    touch(tmp_path, "clips/a.mp4", "clips/b.mov", "clips/c.mkv", "clips/d.webm")
    write_csv(
        tmp_path / "labels.csv",
        ["file", "who", "emotion", "v", "a", "fold"],
        [
            ["clips/a.mp4", "spk1", "happy", "0.5", "-0.5", "Train"],
            ["clips/b.mov", "", "", "", "", ""],
            [str(tmp_path / "clips/c.mkv"), "spk2", "sad", "high", "0.1", "test"],
            ["clips/d.webm", "spk3", " angry ", "1e-1", "2", "validation"],
            ["clips/missing.mp4", "spk4", "sad", "0", "0", ""],
            ["", "spk5", "sad", "0", "0", ""],
        ],
    )
    columns = {
        "path": "file",
        "speaker": "who",
        "label": "emotion",
        "valence": "v",
        "arousal": "a",
        "split": "fold",
    }
    result = scan(tmp_path, "csv", labels_csv="labels.csv", columns=columns)
    got = {
        cid: (c.speaker, c.label, c.valence, c.arousal, c.split) for cid, c in by_id(result).items()
    }
    assert got == {
        "clips/a": ("spk1", "happy", 0.5, -0.5, "train"),
        "clips/b": (None, None, None, None, None),
        "clips/d": ("spk3", "angry", 0.1, 2.0, "val"),
    }
    assert by_id(result)["clips/b"].path == str((tmp_path / "clips/b.mov").resolve())
    assert kinds(result) == {
        "clips/c": ["bad_label"],
        "clips/missing": ["not_found"],
        "labels.csv line 7": ["not_found"],
    }
    assert "valence 'high'" in message(result, "clips/c")


def test_csv_missing_optional_columns_are_none(tmp_path: Path) -> None:
    touch(tmp_path, "x.wav")
    write_csv(tmp_path / "l.csv", ["path", "label"], [["x.wav", "calm"]])
    (clip,) = scan(tmp_path, "csv", labels_csv="l.csv").clips
    assert (clip.clip_id, clip.label, clip.speaker, clip.valence, clip.split) == (
        "x",
        "calm",
        None,
        None,
        None,
    )


def test_csv_missing_path_column_names_it(tmp_path: Path) -> None:
    write_csv(tmp_path / "l.csv", ["file", "label"], [["x.mp4", "sad"]])
    with pytest.raises(ConfigError, match=r"missing column\(s\) 'path'.*'file', 'label'"):
        scan(tmp_path, "csv", labels_csv="l.csv")


def test_csv_without_labels_csv_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="labels_csv"):
        scan(tmp_path, "csv")


def test_csv_outside_root_rejected_unless_allowed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    touch(tmp_path, "root/in.mp4", "elsewhere/out.mp4")
    (root / "link.mp4").symlink_to(tmp_path / "elsewhere/out.mp4")
    rows = [
        ["in.mp4", "sad"],
        ["../elsewhere/out.mp4", "sad"],
        ["link.mp4", "happy"],
        [str(tmp_path / "elsewhere/out.mp4"), "sad"],
    ]
    write_csv(root / "l.csv", ["path", "label"], rows)

    strict = scan(root, "csv", labels_csv="l.csv")
    assert [c.clip_id for c in strict.clips] == ["in"]
    # the relative and the absolute spelling of the outside file give the same id
    assert kinds(strict) == {
        "../elsewhere/out": ["duplicate_id", "outside_root"],
        "link": ["outside_root"],
    }

    allowed = scan(root, "csv", labels_csv="l.csv", allow_outside_root=True)
    outside = str((tmp_path / "elsewhere/out.mp4").resolve())
    assert {c.clip_id: c.path for c in allowed.clips} == {
        "../elsewhere/out": outside,
        "in": str((root / "in.mp4").resolve()),
        "link": outside,
    }
    assert kinds(allowed) == {"../elsewhere/out": ["duplicate_id"]}


# --- discovery: symlinks, duplicates, names ------------------------------------------------


def test_symlink_loops_are_reported_and_do_not_hang(tmp_path: Path, deadline: None) -> None:
    touch(tmp_path, "Happy/a.mp4", "Sad/deep/b.mp4")
    os.symlink(".", tmp_path / "loop")  # ln -s . loop
    os.symlink("self", tmp_path / "self")  # a link to itself
    os.symlink("self.mp4", tmp_path / "Happy/self.mp4")
    os.symlink("../..", tmp_path / "Sad/deep/up")  # to an ancestor two levels up
    os.symlink("ping", tmp_path / "pong")  # a two-link cycle
    os.symlink("pong", tmp_path / "ping")
    result = walk_media(tmp_path, [".mp4"])
    assert [f.rel for f in result.files] == ["Happy/a.mp4", "Sad/deep/b.mp4"]
    assert {f.clip_id: f.kind for f in result.failures} == {
        "Happy/self.mp4": "symlink_loop",
        "Sad/deep/up": "symlink_loop",
        "loop": "symlink_loop",
        "ping": "symlink_loop",
        "pong": "symlink_loop",
        "self": "symlink_loop",
    }
    assert {f.stage for f in result.failures} == {"scan"}


def test_symlinks_to_files_and_sibling_folders_are_followed(tmp_path: Path) -> None:
    touch(tmp_path, "store/Angry/a.mp4", "Happy/real.mp4")
    os.symlink("../../Happy/real.mp4", tmp_path / "store/Angry/linked.mp4")
    os.symlink("store/Angry", tmp_path / "Angry")
    os.symlink("nowhere.mp4", tmp_path / "Happy/dangling.mp4")
    result = scan(tmp_path, "afew")
    real = str((tmp_path / "Happy/real.mp4").resolve())
    assert {c.clip_id: (c.label, c.path) for c in result.clips} == {
        "Angry/a": ("angry", str((tmp_path / "store/Angry/a.mp4").resolve())),
        "Angry/linked": ("angry", real),
        "Happy/real": ("happy", real),
        "store/Angry/a": ("angry", str((tmp_path / "store/Angry/a.mp4").resolve())),
        "store/Angry/linked": ("angry", real),
    }
    assert kinds(result) == {"Happy/dangling": ["not_found"]}


def test_symlink_folder_outside_root(tmp_path: Path) -> None:
    touch(tmp_path, "outside/Sad/x.mp4", "root/Happy/y.mp4")
    os.symlink(tmp_path / "outside/Sad", tmp_path / "root/Sad")
    strict = scan(tmp_path / "root", "afew")
    assert [c.clip_id for c in strict.clips] == ["Happy/y"]
    assert kinds(strict) == {"Sad": ["outside_root"]}
    allowed = scan(tmp_path / "root", "afew", allow_outside_root=True)
    assert [(c.clip_id, c.label) for c in allowed.clips] == [("Happy/y", "happy"), ("Sad/x", "sad")]
    assert allowed.failures == []


def test_duplicate_ids_keep_the_first_in_sorted_order(tmp_path: Path) -> None:
    touch(tmp_path, "Happy/a.mp4", "Happy/a.avi", "Happy/b.wav")
    result = scan(tmp_path, "afew")
    assert [(c.clip_id, Path(c.path).name) for c in result.clips] == [
        ("Happy/a", "a.avi"),
        ("Happy/b", "b.wav"),
    ]
    assert kinds(result) == {"Happy/a": ["duplicate_id"]}
    text = message(result, "Happy/a")
    assert "'Happy/a.avi'" in text and "'Happy/a.mp4'" in text


def test_nfc_and_nfd_twins_are_duplicates(tmp_path: Path) -> None:
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    touch(tmp_path, f"Sad/{nfc}.mp4", f"Sad/{nfd}.mp4")
    if len(os.listdir(tmp_path / "Sad")) != 2:
        pytest.skip("this file system normalises names")
    result = scan(tmp_path, "afew")
    (clip,) = result.clips
    assert clip.clip_id == f"Sad/{nfc}"
    assert Path(clip.path).name == f"{nfd}.mp4"  # NFD sorts first and is kept as on disk
    assert kinds(result) == {f"Sad/{nfc}": ["duplicate_id"]}


WEIRD = [
    "with  two spaces",
    'it\'s "quoted"',
    "$(touch pwned)",
    "-rf leading dash",
    "; rm -rf ~",
    "日本語のクリップ",
    "Ünïcødé ✓",
]


def test_weird_file_names_pass_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "data"
    nfd = unicodedata.normalize("NFD", "crème brûlée")
    touch(root, *(f"Angry/{name}.mp4" for name in WEIRD), f"Angry/{nfd}.MP4")
    result = scan(root, "afew")
    expected = {f"Angry/{name}" for name in WEIRD} | {"Angry/" + unicodedata.normalize("NFC", nfd)}
    assert {c.clip_id for c in result.clips} == expected
    assert all(Path(c.path).is_file() for c in result.clips)
    assert result.failures == []
    assert not (tmp_path / "pwned").exists() and not (root / "pwned").exists()

    write_csv(root / "l.csv", ["path", "label"], [[f"Angry/{n}.mp4", n] for n in WEIRD])
    listed = scan(root, "csv", labels_csv="l.csv")
    assert [(c.clip_id, c.label) for c in listed.clips] == sorted(
        (f"Angry/{n}", n.strip()) for n in WEIRD
    )


def test_non_utf8_name_is_reported(tmp_path: Path) -> None:
    touch(tmp_path, "Happy/ok.mp4")
    try:
        fd = os.open(os.fsencode(tmp_path / "Happy") + b"/bad\xff.mp4", os.O_CREAT | os.O_WRONLY)
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    os.close(fd)
    result = scan(tmp_path, "afew")
    assert [c.clip_id for c in result.clips] == ["Happy/ok"]
    assert [f.kind for f in result.failures] == ["unreadable"]
    assert "UTF-8" in result.failures[0].message


def test_hidden_folders_and_extensions(tmp_path: Path) -> None:
    touch(tmp_path, ".git/Happy/a.mp4", "Happy/B.MP4", "Happy/c.txt", "Happy/d.mkv")
    result = scan(tmp_path, "afew", extensions=["mp4"])
    assert [c.clip_id for c in result.clips] == ["Happy/B"]


def test_results_are_sorted_and_deterministic(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "b/01-01-01-01-01-01-02.mp4",
        "a/01-01-01-01-01-01-01.mp4",
        "z/bad.mp4",
        "c/bad.wav",
        "a-b/01-01-03-01-01-01-03.wav",
    )
    first = scan(tmp_path, "ravdess")
    ids = [c.clip_id for c in first.clips]
    assert (
        ids
        == sorted(ids)
        == ["a-b/01-01-03-01-01-01-03", "a/01-01-01-01-01-01-01", "b/01-01-01-01-01-01-02"]
    )
    assert [f.clip_id for f in first.failures] == ["c/bad", "z/bad"]
    assert scan(tmp_path, "ravdess") == first


# --- configuration ---------------------------------------------------------------------------


def test_config_errors(tmp_path: Path) -> None:
    assert sorted(ADAPTERS) == [
        "afew",
        "affwild2",
        "cremad",
        "csv",
        "enterface",
        "omg",
        "ravdess",
        "savee",
        "tess",
        "timeseries",
    ]
    with pytest.raises(ConfigError, match="adapter"):
        scan(tmp_path, "voxceleb")
    with pytest.raises(ConfigError, match="not a folder"):
        scan(tmp_path / "nope", "ravdess")
    with pytest.raises(ConfigError, match="file not found"):
        scan(tmp_path, "csv", labels_csv="absent.csv")
