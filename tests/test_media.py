"""The media layer on real files made with ffmpeg."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emoflow.errors import ClipError, ToolMissingError
from emoflow.media import ffmpeg as media
from emoflow.media.grid import TimeGrid
from tests.mediagen import face_png, make_clip, set_rotation

GRID = TimeGrid(16000, 3.0, 1.5, "pad", 16)


def sample(clip: Path, max_side: int = 640, **tolerance: float) -> tuple[np.ndarray, ...]:
    """Frames at the grid's sample times: (times, decoded frames, pick, decoded times)."""
    info = media.probe(clip)
    times = GRID.frame_times(info.video_duration_s or info.duration_s, info.fps)
    stream = media.FrameStream(clip, times, GRID.rate, info, max_side, tolerance)
    frames = list(stream.chunks(4))
    got = stream.finish()
    return times, np.concatenate(frames), got.pick, got.decoded_t


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
    times, frames, pick, decoded = sample(clip)
    # 16 samples per 3 s at (j + 0.5) / rate up to the last frame (1.96 s): 10 samples
    np.testing.assert_allclose(times, (np.arange(10) + 0.5) * 3 / 16)
    assert frames.shape == (10, 240, 320, 3) and frames.dtype == np.uint8
    assert pick.tolist() == list(range(10))
    # each sample is the first frame at or after its time (25 fps: within 40 ms)
    assert np.all(decoded >= times - 1e-6) and np.all(decoded - times < 0.04 + 1e-6)
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
    _, frames, _, _ = sample(clip, max_side=160)
    assert frames.shape[1:3] == (160, 120)  # 320x240 landscape displayed as portrait


def test_still_image_video_samples_the_face(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "face.mp4", duration=1.0, image=face_png(tmp_path / "f.png"))
    _, frames, _, _ = sample(clip, max_side=320)
    assert frames.shape == (5, 320, 320, 3) and frames.std() > 20


@pytest.mark.parametrize(
    ("make", "kind", "needle"),
    [
        (lambda p: p.write_bytes(b""), "unreadable", "empty"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(50_000)), "unreadable", "read the"),
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
    from emoflow.features.featurize import face_features

    [err] = face_features([("voice", voice)], {"grid": GRID.describe()}, backend=None)
    assert isinstance(err, ClipError) and err.kind == "no_video"


def test_one_frame_video_gives_its_one_frame(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "one.mp4", duration=0.04, audio=False)
    times, frames, pick, _ = sample(clip)
    assert times.tolist() == [0.0] and frames.shape[0] == 1 and pick.tolist() == [0]


def test_low_frame_rate_video_shows_each_frame_where_it_is_on_screen(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "slow.mp4", duration=3.0, fps=4, audio=False)
    times, frames, pick, decoded = sample(clip)
    # 4 fps < 5.33 samples/s: some frames serve two sample times, none is missing
    assert len(times) == 15 and (pick >= 0).all() and len(frames) < len(times)
    assert np.all(decoded[pick] >= times - 1e-6) and np.all(decoded[pick] - times < 0.25 + 1e-6)


def _truncated(tmp_path: Path, keep: float) -> Path:
    clip = make_clip(tmp_path / "full.mp4", duration=3.2, image=face_png(tmp_path / "f.png"),
                     extra=("-movflags", "+faststart"))  # fmt: skip
    data = clip.read_bytes()
    cut = tmp_path / f"cut{keep}.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


def test_truncated_file_fails_as_truncated_naming_both_durations(tmp_path: Path) -> None:
    from emoflow.config import validate_config
    from emoflow.extraction.specs import stage_spec
    from emoflow.features.featurize import audio_features, face_features

    cut = _truncated(tmp_path, 0.45)
    info = media.probe(cut)
    assert info.duration_s == pytest.approx(3.2, abs=0.05)  # the moov atom still says 3.2 s
    with pytest.raises(ClipError) as err:
        sample(cut)
    assert err.value.kind == "truncated" and "3.20 s" in err.value.message
    spec = stage_spec(validate_config({"dataset": {"name": "t", "adapter": "csv", "root": "."}}),
                      "audio")  # fmt: skip
    with pytest.raises(ClipError) as err:  # found once the track has decoded
        audio_features(cut, spec)
    assert err.value.kind == "truncated" and "3.20 s" in err.value.message
    [res] = face_features([("cut", cut)], {"grid": GRID.describe()}, backend=None)
    assert isinstance(res, ClipError) and res.kind == "truncated"
    # a larger tolerance accepts it: the samples past the end have no frame (never a copy)
    times, frames, pick, _ = sample(cut, truncation_tolerance=1.0)
    assert (pick == -1).any() and (pick[pick >= 0] < len(frames)).all()


def test_missing_ffmpeg_is_one_clear_message(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a.mp4", duration=1.0)
    with pytest.raises(ToolMissingError, match="apt-get install ffmpeg"):
        media.decode_audio(clip, ffmpeg_bin="/nonexistent/ffmpeg")


def test_timeout_is_classified(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a.mp4", duration=1.0)
    with pytest.raises(ClipError) as err:
        media.probe(clip, "ffprobe", timeout_s=1e-6)
    assert err.value.kind == "tool_timeout"


def test_bundled_ffmpeg_decodes_what_debians_decodes(tmp_path: Path) -> None:
    """media.ffmpeg: bundled (the default) runs imageio-ffmpeg's static binary; it decodes a
    clip's sampled frames to the same pixels and its audio to the same samples as the ffmpeg on
    PATH (Debian's)."""
    import imageio_ffmpeg

    path = Path(media.tool_path("bundled"))
    assert path.is_file() and Path(imageio_ffmpeg.__file__).parent in path.parents
    assert (
        media.ffmpeg_version() == media.ffmpeg_version("bundled") != media.ffmpeg_version("ffmpeg")
    )
    clip = make_clip(tmp_path / "a.mp4", 2.0, image=face_png(tmp_path / "f.png"), tone_hz=300)
    info = media.probe(clip)
    got = {}
    for ffmpeg in ("bundled", "ffmpeg"):
        audio = media.decode_audio(clip, 16000, ffmpeg, info=info)
        times = GRID.frame_times(info.video_duration_s or info.duration_s, info.fps)
        stream = media.FrameStream(clip, times, GRID.rate, info, media={"ffmpeg": ffmpeg})
        frames = np.concatenate(list(stream.chunks()))
        got[ffmpeg] = (audio, frames, stream.finish().pick)
    (a1, f1, p1), (a2, f2, p2) = got["bundled"], got["ffmpeg"]
    assert len(f1) == len(times) and np.array_equal(p1, p2) and np.array_equal(f1, f2)
    # the same samples; ffmpeg 9 trims the AAC encoder's trailing padding (2.0 s exactly), where
    # Debian's 5.1 keeps about 20 ms of it
    assert len(a1) == 32000 and 32000 <= len(a2) <= 32000 + 1024
    diff = np.abs(a1 - a2[: len(a1)])
    assert diff[:-64].max() < 1e-5 and diff.max() < 1e-3  # the resampler's last 4 ms differ


def test_bundled_ffmpeg_without_its_package_is_one_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)
    media._bundled_ffmpeg.cache_clear()
    try:
        with pytest.raises(ToolMissingError, match="imageio-ffmpeg.*media.ffmpeg: ffmpeg"):
            media.tool_path("bundled")
    finally:
        media._bundled_ffmpeg.cache_clear()
