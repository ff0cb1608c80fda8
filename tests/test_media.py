"""The media layer on real files made with ffmpeg."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emoflow import media
from emoflow.errors import ClipError, ToolMissingError
from tests.mediagen import face_png, make_clip, set_rotation


def test_probe_decode_and_sample(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a b $(touch pwned) 'q'.mp4", duration=2.0, tone_hz=440)
    info = media.probe(clip)
    assert info.has_audio and info.has_video
    assert info.width == 320 and info.height == 240 and info.fps == pytest.approx(25)
    assert info.duration_s == pytest.approx(2.0, abs=0.1)
    audio = media.decode_audio(clip, 16000, info=info)
    assert audio.dtype == np.float32
    assert len(audio) == pytest.approx(32000, abs=2000)
    # the 440 Hz tone survives decoding and resampling
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert np.fft.rfftfreq(16000, 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=2)
    frames, times = media.sample_frames(clip, 16, info=info)
    assert frames.shape == (16, 240, 320, 3) and frames.dtype == np.uint8
    assert np.all(np.diff(times) > 0) and 0 <= times[0] < 0.2 and 1.8 < times[-1] <= 2.0
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_leading_dash_and_unicode(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "x.mp4", duration=1.0)
    odd = tmp_path / "-rf Émotion ü.mp4"
    clip.rename(odd)
    assert media.probe(odd).has_video


def test_frames_scaled_and_rotated(tmp_path: Path) -> None:
    clip = set_rotation(make_clip(tmp_path / "a.mp4", duration=1.0), tmp_path / "rot.mp4", 90)
    info = media.probe(clip)
    assert info.rotation in (90, 270)
    frames, _ = media.sample_frames(clip, 4, max_side=160, info=info)
    assert frames.shape[1:3] == (160, 120)  # 320x240 landscape displayed as portrait


def test_still_image_video_samples_the_face(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "face.mp4", duration=1.0, image=face_png(tmp_path / "f.png"))
    frames, _ = media.sample_frames(clip, 3, max_side=320)
    assert frames.shape == (3, 320, 320, 3) and frames.std() > 20


@pytest.mark.parametrize(
    ("make", "kind", "needle"),
    [
        (lambda p: p.write_bytes(b""), "unreadable", "empty"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(50_000)), "unreadable", "ffprobe"),
    ],
)
def test_unreadable_files(tmp_path: Path, make, kind: str, needle: str) -> None:
    bad = tmp_path / "bad.mp4"
    make(bad)
    with pytest.raises(ClipError) as err:
        media.probe(bad)
    assert err.value.kind == kind and needle in err.value.message


def test_missing_streams(tmp_path: Path) -> None:
    silent = make_clip(tmp_path / "silent.mp4", duration=1.0, audio=False)
    with pytest.raises(ClipError) as err:
        media.decode_audio(silent)
    assert err.value.kind == "no_audio"
    voice = make_clip(tmp_path / "voice.m4a", duration=1.0, video=False)
    with pytest.raises(ClipError) as err:
        media.sample_frames(voice, 4)
    assert err.value.kind == "no_video"


def test_one_frame_video_repeats_it(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "one.mp4", duration=0.04, audio=False)
    frames, times = media.sample_frames(clip, 16)
    assert frames.shape[0] == 16
    assert np.all(frames == frames[0])
    assert len(set(times.tolist())) == 1


def test_missing_ffmpeg_is_one_clear_message(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a.mp4", duration=1.0)
    with pytest.raises(ToolMissingError, match="apt-get install ffmpeg"):
        media.decode_audio(clip, ffmpeg_bin="/nonexistent/ffmpeg")


def test_timeout_is_classified(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a.mp4", duration=1.0)
    with pytest.raises(ClipError) as err:
        media.probe(clip, timeout_s=1e-6)
    assert err.value.kind == "tool_timeout"
