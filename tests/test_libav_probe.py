"""The in-process probe (``media.ffprobe: bundled``) gives what Debian's ffprobe gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emoflow.errors import ClipError
from emoflow.media.ffmpeg import BUNDLED, decode_audio, probe, probe_version
from tests.mediagen import face_png, make_clip, run_ffmpeg, set_rotation


def _container(src: Path, dst: Path, *codecs: str) -> Path:
    run_ffmpeg("-i", str(src), *codecs, str(dst))
    return dst


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Clips shaped like the corpora's: containers, codecs, rates, rotations, covers, cuts."""
    d = tmp_path_factory.mktemp("probe")
    face = face_png(d / ".face.png", 160)
    ok = make_clip(d / "ok.mp4", 1.0, image=face)
    ntsc = make_clip(d / "ntsc.mov", 1.0, fps=30, audio_rate=48000, channels=2)
    run_ffmpeg("-i", str(ok), "-r", "30000/1001", "-c:a", "copy", str(d / "ntsc.mp4"))
    front = make_clip(d / "front.mp4", 2.0, image=face, extra=("-movflags", "+faststart"))
    (d / "cut_moov_first.mp4").write_bytes(front.read_bytes()[: front.stat().st_size // 2])
    made = [
        ok,
        ntsc,
        d / "ntsc.mp4",
        d / "cut_moov_first.mp4",
        set_rotation(ok, d / "rot90.mp4", 90),
        set_rotation(ok, d / "rot270.mp4", 270),
        _container(
            ok, d / "vp9.webm", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus"
        ),  # fmt: skip
        _container(ok, d / "h264.mkv", "-c", "copy"),
        _container(ok, d / "mjpeg.avi", "-c:v", "mjpeg", "-c:a", "pcm_s16le"),
        _container(ok, d / "flv.flv", "-c:v", "flv", "-c:a", "mp3"),
        _container(ok, d / "ts.ts", "-c", "copy"),
        _container(ok, d / "voice.wav", "-vn", "-ac", "1", "-ar", "16000"),
        make_clip(d / "voice.m4a", 1.0, video=False),
        make_clip(d / "silent.mp4", 1.0, image=face, audio=False),
        make_clip(d / "one_frame.mp4", 0.04, image=face, audio=False),
    ]
    cover = d / "cover.mp3"
    run_ffmpeg("-i", str(ok), "-i", str(face), "-map", "0:a", "-map", "1:v", "-c:a", "mp3",
               "-c:v", "png", "-disposition:v", "attached_pic", str(cover))  # fmt: skip
    return [*made, cover]


def test_same_answer_as_ffprobe(media: list[Path]) -> None:
    *videos, mp3 = media
    for path in videos:
        assert probe(path, BUNDLED) == probe(path, "ffprobe"), path.name
    rotated = probe(media[4], BUNDLED)
    assert (rotated.rotation, rotated.width, rotated.height) == (90, 160, 160)
    # MP3: Debian's ffprobe (5.1) counts the encoder's delay and padding, newer libavformat
    # trims them as both ffmpegs' decoders do: the bundled probe gives the decoded length
    ours, debian = probe(mp3, BUNDLED), probe(mp3, "ffprobe")
    decoded = len(decode_audio(mp3, 16000, info=ours)) / 16000
    assert ours.has_video is False  # a cover picture is not a video
    assert abs(ours.duration_s - decoded) < 0.001 < 0.02 < debian.duration_s - decoded


def test_unreadable_and_odd_names(tmp_path: Path, media: list[Path]) -> None:
    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(50_000))
    with pytest.raises(ClipError) as err:
        probe(bad, BUNDLED)
    assert err.value.kind == "unreadable" and "Invalid data" in err.value.message
    odd = tmp_path / "-a $(touch pwned) 'q' \"dq\" file:x.mp4"
    odd.write_bytes(media[0].read_bytes())
    assert probe(odd, BUNDLED) == probe(media[0], BUNDLED)
    assert not (tmp_path / "pwned").exists()


def test_version_names_the_probe() -> None:
    assert probe_version(BUNDLED).startswith("PyAV ")
    assert probe_version("ffprobe").startswith("ffprobe version")
