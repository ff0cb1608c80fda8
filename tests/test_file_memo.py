"""Values of files kept by the file's identity (:mod:`emoflow.storage.file_memo`): the tools'
versions and the landmark model's sha256 in a stage's spec are computed once per cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from emoflow.config import validate_config
from emoflow.extraction.specs import stage_cache
from emoflow.media import ffmpeg
from emoflow.storage import file_memo


@pytest.fixture(autouse=True)
def no_folder():
    yield
    file_memo.keep_in(None)
    ffmpeg.ffmpeg_version.cache_clear()
    file_memo.forget()


def counting(values: list[str]):
    calls = []

    def compute() -> str:
        calls.append(1)
        return values[len(calls) - 1]

    return compute, calls


def test_a_value_is_computed_once_until_the_file_changes(tmp_path: Path) -> None:
    f = tmp_path / "tool bin"
    f.write_bytes(b"v1")
    compute, calls = counting(["a", "b", "c", "d"])
    file_memo.keep_in(tmp_path / "kept")
    assert [file_memo.file_value(f, "-version", compute) for _ in range(3)] == ["a"] * 3
    assert len(calls) == 1
    assert file_memo.file_value(f, "sha256", compute) == "b"  # another value of the same file
    f.write_bytes(b"v2")  # same size, new content (and mtime)
    os.utime(f, ns=(1, 1))
    assert file_memo.file_value(f, "-version", compute) == "c"
    os.utime(f, ns=(2, 2))  # only touched
    assert file_memo.file_value(f, "-version", compute) == "d"
    assert len(calls) == 4
    file_memo.keep_in(None)  # no folder: computed every time
    again, calls = counting(["e", "f"])
    assert [file_memo.file_value(f, "-version", again) for _ in range(2)] == ["e", "f"]


def test_a_damaged_entry_is_computed_again(tmp_path: Path) -> None:
    f = tmp_path / "model.dat"
    f.write_bytes(b"weights")
    file_memo.keep_in(tmp_path / "kept")
    compute, calls = counting(["a", "b"])
    file_memo.file_value(f, "sha256", compute)
    (entry,) = (tmp_path / "kept").iterdir()
    entry.write_text("{not json")
    assert file_memo.file_value(f, "sha256", compute) == "b"
    assert json.loads(entry.read_text())["value"] == "b"


def test_the_faces_spec_reads_its_kept_values(tmp_path: Path) -> None:
    """``stage_cache`` keeps the ffmpeg version and the predictor's sha256 under the cache; a
    later job (its in-process caches empty) takes them from there instead of computing them."""
    cfg = validate_config({
        "dataset": {"name": "m", "adapter": "ravdess", "root": str(tmp_path)},
        "results": str(tmp_path / "r"), "cache": {"dir": str(tmp_path / "c")},
    })  # fmt: skip
    spec, _ = stage_cache(cfg, "faces")
    real_sha = spec["backend_versions"]["predictor_sha256"]
    entries = sorted((tmp_path / "c" / "files").iterdir())
    assert len(entries) == 2
    for entry in entries:  # a value only the kept entries can give
        kept = json.loads(entry.read_text())
        kept["value"] = "kept-" + kept["key"][0]
        entry.write_text(json.dumps(kept))
    ffmpeg.ffmpeg_version.cache_clear()
    file_memo.forget()
    again, _ = stage_cache(cfg, "faces")
    assert again["backend_versions"]["predictor_sha256"] == "kept-sha256" != real_sha
    assert again["ffmpeg_version"] == "kept--version" != spec["ffmpeg_version"]
