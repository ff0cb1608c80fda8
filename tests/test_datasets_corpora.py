"""The TESS and SAVEE adapters on tiny fake trees in each corpus's real naming (files are a few
bytes: the scan never decodes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emoflow.datasets.registry import ADAPTERS
from tests.test_datasets import by_id, kinds, message, scan, touch

TESS_TOP = "TESS Toronto emotional speech set data"

# --- TESS ----------------------------------------------------------------------------------


def test_tess_folder_tree_as_published(tmp_path: Path) -> None:
    """The archive's folders (their case and spelling as published) and the file names in them;
    the folder is not read."""
    touch(
        tmp_path,
        f"{TESS_TOP}/OAF_angry/OAF_back_angry.wav",
        f"{TESS_TOP}/OAF_Fear/OAF_back_fear.wav",
        f"{TESS_TOP}/OAF_Pleasant_surprise/OAF_back_ps.wav",
        f"{TESS_TOP}/OAF_Sad/OAF_back_sad.wav",
        f"{TESS_TOP}/OAF_neutral/OA_bite_neutral.wav",  # the corpus's one misnamed file
        f"{TESS_TOP}/YAF_disgust/YAF_bath_disgust.wav",
        f"{TESS_TOP}/YAF_happy/YAF_bean_happy.wav",
        f"{TESS_TOP}/YAF_pleasant_surprised/YAF_bean_ps.wav",
        f"{TESS_TOP}/YAF_neutral/YAF_germ_neutral.wav",
        f"{TESS_TOP}/YAF_neutral/notes.txt",  # not media
    )
    result = scan(tmp_path, "tess")
    got = {cid: (c.speaker, c.label) for cid, c in by_id(result).items()}
    assert got == {
        f"{TESS_TOP}/OAF_Fear/OAF_back_fear": ("OAF", "fearful"),
        f"{TESS_TOP}/OAF_Pleasant_surprise/OAF_back_ps": ("OAF", "surprised"),
        f"{TESS_TOP}/OAF_Sad/OAF_back_sad": ("OAF", "sad"),
        f"{TESS_TOP}/OAF_angry/OAF_back_angry": ("OAF", "angry"),
        f"{TESS_TOP}/OAF_neutral/OA_bite_neutral": ("OAF", "neutral"),
        f"{TESS_TOP}/YAF_disgust/YAF_bath_disgust": ("YAF", "disgust"),
        f"{TESS_TOP}/YAF_happy/YAF_bean_happy": ("YAF", "happy"),
        f"{TESS_TOP}/YAF_neutral/YAF_germ_neutral": ("YAF", "neutral"),
        f"{TESS_TOP}/YAF_pleasant_surprised/YAF_bean_ps": ("YAF", "surprised"),
    }
    assert result.failures == []
    clip = by_id(result)[f"{TESS_TOP}/OAF_angry/OAF_back_angry"]
    assert clip.path == str((tmp_path / TESS_TOP / "OAF_angry/OAF_back_angry.wav").resolve())
    assert clip.split is None


def test_tess_flat_folder_other_spellings_and_case(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "OAF_back_angry.wav",
        "YAF_bath_ps.wav",
        "OAF_dog_pleasant_surprise.wav",  # the folders' spellings in a file name
        "YAF_dog_pleasant_surprised.wav",
        "YAF_germ_Fear.wav",  # odd case is read
        "yaf_keen_SAD.WAV",
    )
    result = scan(tmp_path, "tess")
    got = {cid: (c.speaker, c.label) for cid, c in by_id(result).items()}
    assert got == {
        "OAF_back_angry": ("OAF", "angry"),
        "OAF_dog_pleasant_surprise": ("OAF", "surprised"),
        "YAF_bath_ps": ("YAF", "surprised"),
        "YAF_dog_pleasant_surprised": ("YAF", "surprised"),
        "YAF_germ_Fear": ("YAF", "fearful"),
        "yaf_keen_SAD": ("YAF", "sad"),
    }
    assert result.failures == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("angry", "angry"),
        ("disgust", "disgust"),
        ("fear", "fearful"),
        ("happy", "happy"),
        ("neutral", "neutral"),
        ("ps", "surprised"),
        ("sad", "sad"),
    ],
)
def test_tess_emotion_codes(tmp_path: Path, code: str, expected: str) -> None:
    touch(tmp_path, f"YAF_home_{code}.wav")
    assert [c.label for c in scan(tmp_path, "tess").clips] == [expected]


def test_tess_bad_names_are_bad_labels_with_readable_messages(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "MAF_back_angry.wav",  # no such speaker
        "OAF_back_calm.wav",  # no such emotion
        "OAF_back_surprise.wav",  # TESS's surprise is ps
        "OAF_angry.wav",  # no word
        "OAF_back_angry_2.wav",  # a copy's suffix
        "recording.wav",
    )
    result = scan(tmp_path, "tess")
    assert result.clips == []
    assert kinds(result) == {
        name: ["bad_label"]
        for name in (
            "MAF_back_angry",
            "OAF_angry",
            "OAF_back_angry_2",
            "OAF_back_calm",
            "OAF_back_surprise",
            "recording",
        )
    }
    assert message(result, "MAF_back_angry") == (
        "speaker 'MAF' in 'MAF_back_angry' is not a TESS speaker (OAF, YAF)"
    )
    assert message(result, "OAF_back_calm") == (
        "emotion 'calm' in 'OAF_back_calm' is not a TESS emotion "
        "(angry, disgust, fear, happy, neutral, ps, sad)"
    )
    assert "emotion 'surprise'" in message(result, "OAF_back_surprise")
    assert "does not follow the TESS pattern Speaker_word_emotion" in message(result, "OAF_angry")
    assert "does not follow the TESS pattern" in message(result, "OAF_back_angry_2")
    assert "(like OAF_back_angry)" in message(result, "recording")


def test_tess_labels_list_keeps_its_classes(tmp_path: Path) -> None:
    touch(tmp_path, "OAF_back_angry.wav", "OAF_back_ps.wav", "YAF_back_neutral.wav")
    result = scan(tmp_path, "tess", labels=["neutral", "angry"])
    assert [c.clip_id for c in result.clips] == ["OAF_back_angry", "YAF_back_neutral"]
    assert kinds(result) == {"OAF_back_ps": ["bad_label"]}
    text = message(result, "OAF_back_ps")
    assert "'surprised'" in text and "neutral, angry" in text


# --- SAVEE ---------------------------------------------------------------------------------


def test_savee_speaker_folders_audio_and_video(tmp_path: Path) -> None:
    """The corpus's own layout: AudioData/<speaker>/ and AudioVisualClip/<speaker>/ (the folder
    is the speaker; the archive's Info.txt is not media)."""
    touch(
        tmp_path,
        "AudioData/DC/a01.wav",
        "AudioData/DC/n30.wav",  # neutral has 30 sentences
        "AudioData/JE/sa15.wav",
        "AudioData/JK/su03.wav",
        "AudioData/KL/d07.wav",
        "AudioData/Info.txt",
        "AudioVisualClip/DC/a01.avi",  # same name as the audio: another clip id
        "AudioVisualClip/KL/f1.avi",  # unpadded, as public scripts name the video clips
        "AudioVisualClip/JE/h12.avi",
    )
    result = scan(tmp_path, "savee")
    got = {cid: (c.speaker, c.label) for cid, c in by_id(result).items()}
    assert got == {
        "AudioData/DC/a01": ("DC", "angry"),
        "AudioData/DC/n30": ("DC", "neutral"),
        "AudioData/JE/sa15": ("JE", "sad"),
        "AudioData/JK/su03": ("JK", "surprised"),
        "AudioData/KL/d07": ("KL", "disgust"),
        "AudioVisualClip/DC/a01": ("DC", "angry"),
        "AudioVisualClip/JE/h12": ("JE", "happy"),
        "AudioVisualClip/KL/f1": ("KL", "fearful"),
    }
    assert result.failures == []
    assert by_id(result)["AudioVisualClip/DC/a01"].path.endswith("a01.avi")


def test_savee_flat_all_folder(tmp_path: Path) -> None:
    """Kaggle's ALL/ folder: the speaker is the file name's prefix."""
    touch(
        tmp_path,
        "ALL/DC_a01.wav",
        "ALL/JE_n25.wav",
        "ALL/JK_sa01.wav",
        "ALL/KL_su15.wav",
        "ALL/KL_f12.wav",
        "ALL/DC_h04.wav",
        "JE_d02.wav",  # flat at the root too
        "AudioData/DC/DC_a02.wav",  # a flat name in its own speaker's folder
    )
    result = scan(tmp_path, "savee")
    got = {cid: (c.speaker, c.label) for cid, c in by_id(result).items()}
    assert got == {
        "ALL/DC_a01": ("DC", "angry"),
        "ALL/DC_h04": ("DC", "happy"),
        "ALL/JE_n25": ("JE", "neutral"),
        "ALL/JK_sa01": ("JK", "sad"),
        "ALL/KL_f12": ("KL", "fearful"),
        "ALL/KL_su15": ("KL", "surprised"),
        "AudioData/DC/DC_a02": ("DC", "angry"),
        "JE_d02": ("JE", "disgust"),
    }
    assert result.failures == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("a", "angry"),
        ("d", "disgust"),
        ("f", "fearful"),
        ("h", "happy"),
        ("n", "neutral"),
        ("sa", "sad"),
        ("su", "surprised"),
    ],
)
def test_savee_emotion_codes_in_both_layouts(tmp_path: Path, code: str, expected: str) -> None:
    touch(tmp_path, f"DC_{code}05.wav", f"AudioData/JK/{code}05.wav", f"X/KL/{code.upper()}05.wav")
    result = scan(tmp_path, "savee")
    assert [(c.speaker, c.label) for c in result.clips] == [
        ("JK", expected),
        ("DC", expected),
        ("KL", expected),
    ]


def test_savee_bad_names_are_bad_labels_with_readable_messages(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "AudioData/XY/a01.wav",  # not a speaker folder
        "AudioData/DC/b01.wav",  # no such emotion
        "AudioData/DC/a16.wav",  # anger has 15 sentences
        "AudioData/DC/n31.wav",  # neutral has 30
        "AudioData/DC/a00.wav",
        "AudioData/DC/a001.wav",
        "AudioData/DC/JE_a01.wav",  # prefix and folder disagree
        "AudioData/DC/readme.wav",
        "MM_a01.wav",  # flat, unknown speaker
        "a01.wav",  # neither a folder nor a prefix
    )
    result = scan(tmp_path, "savee")
    assert result.clips == []
    assert set(kinds(result)) == {
        "AudioData/DC/JE_a01",
        "AudioData/DC/a00",
        "AudioData/DC/a001",
        "AudioData/DC/a16",
        "AudioData/DC/b01",
        "AudioData/DC/n31",
        "AudioData/DC/readme",
        "AudioData/XY/a01",
        "MM_a01",
        "a01",
    }
    assert {f.kind for f in result.failures} == {"bad_label"}
    assert message(result, "AudioData/XY/a01").startswith(
        "speaker 'XY' of 'XY/a01' is not a SAVEE speaker (DC, JE, JK, KL; layout: "
    )
    assert message(result, "AudioData/DC/b01") == (
        "emotion code 'b' in 'DC/b01' is not a SAVEE emotion (a, d, f, h, n, sa, su)"
    )
    assert message(result, "AudioData/DC/a16") == (
        "sentence number '16' in 'DC/a16' is not a SAVEE anger sentence (01–15)"
    )
    assert "neutral sentence (01–30)" in message(result, "AudioData/DC/n31")
    assert "sentence number '00'" in message(result, "AudioData/DC/a00")
    assert "sentence number '001'" in message(result, "AudioData/DC/a001")
    assert message(result, "AudioData/DC/JE_a01") == (
        "speaker prefix 'JE' of 'JE_a01' disagrees with its folder 'DC'"
    )
    assert "does not follow the SAVEE layout" in message(result, "AudioData/DC/readme")
    assert "AudioData/DC/a01.wav" in message(result, "AudioData/DC/readme")
    assert "speaker 'MM' of 'MM_a01'" in message(result, "MM_a01")
    assert "not inside a speaker folder and has no speaker prefix" in message(result, "a01")


def test_savee_labels_list_keeps_its_classes(tmp_path: Path) -> None:
    touch(tmp_path, "DC_a01.wav", "DC_su01.wav", "DC_n01.wav")
    result = scan(tmp_path, "savee", labels=["neutral", "angry"])
    assert [c.clip_id for c in result.clips] == ["DC_a01", "DC_n01"]
    assert kinds(result) == {"DC_su01": ["bad_label"]}
    text = message(result, "DC_su01")
    assert "'surprised'" in text and "neutral, angry" in text


# --- both ----------------------------------------------------------------------------------


def test_registry_and_config_schema_name_both_adapters(tmp_path: Path) -> None:
    assert {"tess", "savee"} <= set(ADAPTERS)
    # validated by the schema's adapter enum on the way in (an unknown adapter is a ConfigError)
    touch(tmp_path, "OAF_back_angry.wav", "DC_a01.wav")
    assert [c.clip_id for c in scan(tmp_path, "tess").clips] == ["OAF_back_angry"]
    assert [c.clip_id for c in scan(tmp_path, "savee").clips] == ["DC_a01"]


def test_labels_are_shared_with_ravdess() -> None:
    """Where the corpora overlap, their labels are RAVDESS's names."""
    from emoflow.datasets import ravdess, savee, tess

    ravdess_labels = set(ravdess.EMOTIONS.values())
    assert {label for label, _name, _last in savee.EMOTIONS.values()} <= ravdess_labels
    assert set(tess.EMOTIONS.values()) <= ravdess_labels
