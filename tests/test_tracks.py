"""The label-track readers: Aff-Wild2 / ABAW annotation files and End2You label files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from emoflow.errors import FAILURE_KINDS, ClipError
from emoflow.labels.tracks import TRACK_COLUMNS, TrackSource, read_track

EXPR8 = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
EXPR7 = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise"


def write(path: Path, text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(data)
    return str(path)


def clip_error(source: TrackSource, fps: float | None = 30.0) -> ClipError:
    with pytest.raises(ClipError) as info:
        read_track(source, fps)
    assert info.value.kind in FAILURE_KINDS
    return info.value


# --- Aff-Wild2 ------------------------------------------------------------------------------


def test_affwild_va_and_expr_per_frame(tmp_path: Path) -> None:
    va = write(tmp_path / "v.txt", "valence,arousal\n0.5,-0.25\n-5,-5\n-1,1\n0.125,0\n")
    expr = write(tmp_path / "e.txt", f"{EXPR8}\n4\n-1\n1\n7\n")
    track = read_track(TrackSource(va=va, expr=expr), fps=25.0)
    assert list(track.columns) == list(TRACK_COLUMNS)
    assert track["time_s"].dtype == np.float64
    assert track["valence"].dtype == np.float32 and track["arousal"].dtype == np.float32
    assert track["expression"].dtype == object
    np.testing.assert_allclose(track["time_s"], [0.0, 0.04, 0.08, 0.12])
    np.testing.assert_array_equal(track["valence"], np.float32([0.5, np.nan, -1, 0.125]))
    np.testing.assert_array_equal(track["arousal"], np.float32([-0.25, np.nan, 1, 0]))
    assert track["expression"].tolist() == ["happy", None, "angry", "other"]


def test_affwild_abaw_class_names_map_to_the_projects(tmp_path: Path) -> None:
    expr = write(tmp_path / "e.txt", f"{EXPR8}\n" + "\n".join(map(str, range(8))) + "\n")
    track = read_track(TrackSource(expr=expr), fps=30.0)
    assert track["expression"].tolist() == [
        "neutral", "angry", "disgust", "fearful", "happy", "sad", "surprised", "other",
    ]  # fmt: skip
    assert track["valence"].isna().all() and track["arousal"].isna().all()


def test_affwild_2020_seven_classes_crlf_bom_and_header_case(tmp_path: Path) -> None:
    """ABAW 2020/2021 files have no Other; a BOM, CRLF line ends, header case and spaces and a
    trailing blank line are read."""
    expr = write(tmp_path / "e.txt", "\ufeff" + EXPR7 + "\r\n6\r\n0\r\n\r\n")
    va = write(tmp_path / "v.txt", "Valence, Arousal\r\n0.1,0.2\r\n")
    track = read_track(TrackSource(va=va, expr=expr), fps=10.0)
    assert track["expression"].tolist() == ["surprised", "neutral"]
    assert track["valence"].tolist()[0] == pytest.approx(0.1)
    assert math.isnan(track["valence"].tolist()[1])  # the VA file is shorter: unannotated
    with pytest.raises(ClipError, match="not a class index"):
        read_track(TrackSource(expr=write(tmp_path / "x.txt", f"{EXPR7}\n7\n")), fps=10.0)


def test_affwild_header_order_is_read(tmp_path: Path) -> None:
    va = write(tmp_path / "v.txt", "arousal,valence\n0.9,-0.3\n")
    track = read_track(TrackSource(va=va), fps=30.0)
    assert track["valence"].tolist() == [pytest.approx(-0.3)]
    assert track["arousal"].tolist() == [pytest.approx(0.9)]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0.1,0.2\n0.3,0.4\n", "line 1 is '0.1,0.2'"),  # no header
        ("valence\n0.1\n", "line 1 is 'valence'"),
        ("valence,arousal\n0.1,abc\n", "arousal 'abc' on v.txt line 2 is not a number"),
        ("valence,arousal\n0.1,0.2\n1.5,0\n", "valence '1.5' on v.txt line 3 is outside [-1, 1]"),
        ("valence,arousal\n-4,0\n", "outside [-1, 1]"),  # only -5 marks unannotated
        ("valence,arousal\n0.1\n", "v.txt line 2 has 1 values"),
        ("valence,arousal\n0.1,0.1\n\n0.2,0.2\n", "v.txt line 3 is blank"),
        ("", "is empty"),
    ],
)
def test_affwild_bad_va_files(tmp_path: Path, text: str, fragment: str) -> None:
    error = clip_error(TrackSource(va=write(tmp_path / "v.txt", text)))
    assert error.kind == "bad_label"
    assert fragment in error.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Neutral,Anger,Joy\n0\n", "line 1 is 'Neutral,Anger,Joy'"),
        ("valence,arousal\n0\n", "starts with the class names"),
        (f"{EXPR8}\n8\n", "expression '8' on e.txt line 2 is not a class index (0 to 7"),
        (f"{EXPR8}\n0\nhappy\n", "expression 'happy' on e.txt line 3"),
        (f"{EXPR8}\n1.5\n", "expression '1.5'"),
    ],
)
def test_affwild_bad_expr_files(tmp_path: Path, text: str, fragment: str) -> None:
    error = clip_error(TrackSource(expr=write(tmp_path / "e.txt", text)))
    assert error.kind == "bad_label"
    assert fragment in error.message


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    missing = clip_error(TrackSource(va=str(tmp_path / "nope.txt")))
    assert missing.kind == "not_found" and "nope.txt" in missing.message
    latin = write(tmp_path / "l.txt", "valence,arousal\n0.1,0.2 \xe9\n".encode("latin-1"))
    error = clip_error(TrackSource(va=latin))
    assert error.kind == "bad_label" and "not UTF-8" in error.message and "l.txt" in error.message


def test_affwild_needs_a_frame_rate(tmp_path: Path) -> None:
    va = write(tmp_path / "v.txt", "valence,arousal\n0,0\n")
    for fps in (None, 0.0, float("nan")):
        with pytest.raises(ValueError, match="frame rate"):
            read_track(TrackSource(va=va), fps)
    with pytest.raises(ValueError):
        read_track(TrackSource(), 30.0)


# --- End2You --------------------------------------------------------------------------------


def test_end2you_table_by_column_names(tmp_path: Path) -> None:
    table = write(
        tmp_path / "p1.csv",
        "time,arousal,valence,expression\n0.00,0.1,-0.2,happy\n0.04,,0.3,\n0.08,-5,nan,-1\n",
    )
    track = read_track(TrackSource(table=table), fps=None)
    assert list(track.columns) == list(TRACK_COLUMNS)
    np.testing.assert_allclose(track["time_s"], [0.0, 0.04, 0.08])
    np.testing.assert_array_equal(track["valence"], np.float32([-0.2, 0.3, np.nan]))
    np.testing.assert_array_equal(track["arousal"], np.float32([0.1, np.nan, np.nan]))
    assert track["expression"].tolist() == ["happy", None, None]


def test_end2you_columns_mapping_and_semicolons(tmp_path: Path) -> None:
    """Older End2You files use ';'; ``columns`` maps file columns to targets; others ignored."""
    table = write(tmp_path / "p.csv", "frameTime;A;V;other\n0.0;0.5;0.25;9\n0.4;0.75;-0.5;9\n")
    source = TrackSource(table=table, columns=(("V", "valence"), ("A", "arousal")))
    assert not source.needs_fps and source.files == (table,)
    track = read_track(source, fps=None)
    assert track["valence"].tolist() == [0.25, -0.5]
    assert track["arousal"].tolist() == [0.5, 0.75]
    assert track["expression"].tolist() == [None, None]


@pytest.mark.parametrize(
    ("text", "columns", "fragment"),
    [
        ("0.0,0.1,0.2\n0.04,0.1,0.2\n", (), "line 1 holds numbers, not a header"),
        ("time,label1,label2\n0.0,0.1,0.2\n", (), "no label column valence, arousal"),
        ("time,V\n0.0,0.1\n", (("A", "arousal"),), "no label column 'A'"),
        ("time,valence\n0.0,x\n", (), "valence 'x' on t.csv line 2 is not a number"),
        ("time,valence\n0.0,2\n", (), "valence '2' on t.csv line 2 is outside [-1, 1]"),
        ("time,valence\n0.0,0.1\n0.0,0.1\n", (), "time '0.0' on t.csv line 3"),
        ("time,valence\n0.1,0.1\n0.05,0.1\n", (), "time '0.05' on t.csv line 3"),
        ("time,valence\nabc,0.1\n", (), "time 'abc' on t.csv line 2 is not a number"),
        ("time,valence\n0.0,0.1,0.3\n", (), "t.csv line 2 has 3 values; the header has 2"),
        ("time\n0.0\n", (), "names no label column"),
    ],
)
def test_end2you_bad_files(
    tmp_path: Path, text: str, columns: tuple[tuple[str, str], ...], fragment: str
) -> None:
    error = clip_error(TrackSource(table=write(tmp_path / "t.csv", text), columns=columns), None)
    assert error.kind == "bad_label"
    assert fragment in error.message


def test_track_source_kinds(tmp_path: Path) -> None:
    source = TrackSource(va="a.txt", expr="b.txt", side="left")
    assert source.needs_fps and source.files == ("a.txt", "b.txt")
    with pytest.raises(ValueError, match="either"):
        read_track(TrackSource(va="a.txt", table="t.csv"), 30.0)
