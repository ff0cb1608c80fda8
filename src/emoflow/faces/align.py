"""Similarity alignment of faces to OpenFace's template (pure numpy).

OpenFace's ``FaceAnalysis::AlignFace`` warps a frame so that the detected 68 landmarks match
the x/y part of the PDM mean shape (``In-the-wild_aligned_PDM_68``) times ``sim_scale`` (0.7),
with the PDM origin at the centre of a 112x112 output. The scale and rotation come from a
least-squares fit on a subset of *rigid* landmarks (face outline near the ears, nose, eye
corners and lids), so expressions (mouth, brows) do not move the crop.

:data:`MEAN_SHAPE_3D` is that mean shape: the widely reproduced "OpenFace in-the-wild 68-point
3-D face model" (units roughly millimetres, x to the subject's left = image right, y down).
We fit the translation by least squares too (rigid centroid onto the template's rigid centroid)
instead of OpenFace's PDM origin, which needs the PDM fit; the difference is a sub-pixel to
one-pixel shift for frontal faces.
"""

from __future__ import annotations

import numpy as np

# fmt: off
MEAN_SHAPE_3D = np.array([
    [-73.393523, -29.801432, 47.667532], [-72.775014, -10.949766, 45.909403],
    [-70.533638, 7.929818, 44.842580], [-66.850058, 26.074280, 43.141114],
    [-59.790187, 42.564390, 38.635298], [-48.368973, 56.481080, 30.750622],
    [-34.121101, 67.246992, 18.456453], [-17.875411, 75.056892, 3.609035],
    [0.098749, 77.061286, -0.881698], [17.477031, 74.758448, 5.181201],
    [32.648966, 66.929021, 19.176563], [46.372358, 56.311389, 30.770570],
    [57.343480, 42.419126, 37.628629], [64.388482, 25.455880, 40.886309],
    [68.212038, 6.990805, 42.281449], [70.486405, -11.666193, 44.142567],
    [71.375822, -30.365191, 47.140426], [-61.119406, -49.361602, 14.254422],
    [-51.287588, -58.769795, 7.268147], [-37.804800, -61.996155, 0.442051],
    [-24.022754, -61.033399, -6.606501], [-11.635713, -56.686759, -11.967398],
    [12.056636, -57.391033, -12.051204], [25.106256, -61.902186, -7.315098],
    [38.338588, -62.777713, -1.022953], [51.191007, -59.302347, 5.349435],
    [60.053851, -50.190255, 11.615746], [0.653940, -42.193790, -13.380835],
    [0.804809, -30.993721, -21.150853], [0.992204, -19.944596, -29.284036],
    [1.226783, -8.414541, -36.948060], [-14.772472, 2.598255, -20.132003],
    [-7.180239, 4.751589, -23.536684], [0.555920, 6.562900, -25.944448],
    [8.272499, 4.661005, -23.695741], [15.214351, 2.643046, -20.858157],
    [-46.047290, -37.471411, 7.037989], [-37.674688, -42.730510, 3.021217],
    [-27.883856, -42.711517, 1.353629], [-19.648268, -36.754742, -0.111088],
    [-28.272965, -35.134493, -0.147273], [-38.082418, -34.919043, 1.476612],
    [19.265868, -37.032306, -0.665746], [27.894191, -43.342445, 0.247660],
    [37.437529, -43.110822, 1.696435], [45.170805, -38.086515, 4.894163],
    [38.196454, -35.532024, 0.282961], [28.764989, -35.484289, -1.172675],
    [-28.916267, 28.612716, -2.240310], [-17.533194, 22.172187, -15.934335],
    [-6.684590, 19.029051, -22.611355], [0.381001, 20.721118, -23.748437],
    [8.375443, 19.035460, -22.721995], [18.876618, 22.394109, -15.610679],
    [28.794412, 28.079924, -3.217393], [19.057574, 36.298248, -14.987997],
    [8.956375, 39.634575, -22.554245], [0.381549, 40.395647, -23.591626],
    [-7.428895, 39.836405, -22.406106], [-18.160634, 36.677899, -15.121907],
    [-24.377490, 28.677771, -4.785684], [-6.897633, 25.475976, -20.893742],
    [0.340663, 26.014269, -22.220479], [8.444722, 25.326198, -21.025520],
    [24.474473, 28.323008, -5.712776], [8.449166, 30.596216, -20.671489],
    [0.205322, 31.408738, -21.903670], [-7.198266, 30.844876, -20.328022],
], dtype=np.float64)
# fmt: on

#: The landmarks OpenFace's ``extract_rigid_points`` keeps for the alignment fit.
RIGID_INDICES = np.array(
    [1, 2, 3, 4, 12, 13, 14, 15, 27, 28, 29, 31, 32, 33, 34, 35, 36, 39, 40, 41, 42, 45, 46, 47]
)

#: Eye centres (mean of the six eye landmarks each), useful for checks.
LEFT_EYE = np.arange(36, 42)
RIGHT_EYE = np.arange(42, 48)


def openface_template(size: int = 112, scale: float = 0.7) -> np.ndarray:
    """Target positions (68, 2) of the landmarks in a ``size`` x ``size`` aligned crop.

    The mean shape's x/y times ``scale`` (OpenFace's ``sim_scale``), its origin at the centre;
    for other sizes than 112 the shape is scaled by ``size / 112`` so crops look the same.
    """
    factor = scale * size / 112.0
    return (MEAN_SHAPE_3D[:, :2] * factor + size / 2.0).astype(np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping ``src`` (N, 2) onto ``dst``.

    Returns a 2x3 matrix ``M`` with ``dst ≈ src @ M[:, :2].T + M[:, 2]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points are degenerate (all equal)")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    c = (sig * sign).sum() / var_s
    a = c * rot
    t = mu_d - a @ mu_s
    return np.hstack([a, t[:, None]])


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points (N, 2)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def alignment_matrix(landmarks: np.ndarray, size: int = 112, scale: float = 0.7) -> np.ndarray:
    """The 2x3 matrix mapping frame pixels to the aligned crop, fitted on the rigid points."""
    template = openface_template(size, scale)
    return similarity_transform(landmarks[RIGID_INDICES], template[RIGID_INDICES])


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp ``image`` (H, W, C) uint8 with the forward 2x3 ``matrix`` into (size, size, C).

    Bilinear; pixels from outside the frame are black (as OpenFace's ``warpAffine``). Where
    the crop shrinks the face by 2x or more (a high-resolution frame), the part of the frame
    it reads is first averaged over k x k blocks (k = the whole shrink factor), so the crop
    keeps the detail a lower-resolution frame gives instead of aliasing it.
    """
    a = matrix[:, :2]
    shrink = int(1.0 / np.sqrt(abs(np.linalg.det(a))))
    inv = np.linalg.inv(a)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    dst = np.stack([xs.ravel(), ys.ravel()], axis=1) - matrix[:, 2]
    src = dst @ inv.T  # (N, 2) as x, y in the frame
    # only the part of the frame the crop reads from (plus a margin for interpolation)
    h, w = image.shape[:2]
    x0 = int(np.clip(np.floor(src[:, 0].min()) - 1, 0, w))
    x1 = int(np.clip(np.ceil(src[:, 0].max()) + 2, 0, w))
    y0 = int(np.clip(np.floor(src[:, 1].min()) - 1, 0, h))
    y1 = int(np.clip(np.ceil(src[:, 1].max()) + 2, 0, h))
    out = np.zeros((size, size, image.shape[2]), dtype=np.uint8)
    if x1 <= x0 or y1 <= y0:
        return out
    patch = image[y0:y1, x0:x1]
    coords = np.stack([src[:, 1] - y0, src[:, 0] - x0])  # row, col in the patch
    # outside the frame is black: pad the patch by one black pixel where it touches a border
    pad = ((int(y0 == 0), int(y1 == h)), (int(x0 == 0), int(x1 == w)), (0, 0))
    if shrink >= 2:
        patch, coords = _block_mean(patch, shrink), (coords - (shrink - 1) / 2) / shrink
    patch = np.pad(patch, pad)
    coords[0] += pad[0][0]
    coords[1] += pad[1][0]
    vals = bilinear(patch, coords)
    return np.clip(np.rint(vals), 0, 255).astype(np.uint8).reshape(size, size, image.shape[2])


def bilinear(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """``image`` (H, W, C) sampled at ``coords`` (2, N) rows, cols: (N, C) float32.

    Bilinear, and 0 where a coordinate falls outside [0, H - 1] x [0, W - 1]: the numbers of
    ``scipy.ndimage.map_coordinates(channel, coords, output=np.float32, order=1,
    mode="constant")`` bit for bit (its weights ``1 - f`` and ``1 - (1 - f)``, its products
    ``(value * row weight) * column weight`` summed in the same order, in float64), all
    channels at once and without importing scipy (0.4-0.5 s per process).
    """
    h, w, c = image.shape
    rows, cols = coords[0], coords[1]
    inside = (rows >= 0) & (rows <= h - 1) & (cols >= 0) & (cols <= w - 1)
    r0, c0 = np.floor(rows), np.floor(cols)
    wr0 = 1.0 - (rows - r0)
    wc0 = 1.0 - (cols - c0)
    wr1, wc1 = 1.0 - wr0, 1.0 - wc0
    ri = np.clip(r0, 0, h - 1).astype(np.intp)
    ci = np.clip(c0, 0, w - 1).astype(np.intp)
    i00 = ri * w + ci
    # the neighbour after the last row/column has weight 0: any pixel does (this one)
    down = np.where(ri + 1 < h, w, 0)
    right = (ci + 1 < w).astype(np.intp)
    planes = np.ascontiguousarray(np.moveaxis(image, 2, 0)).reshape(c, -1)
    out = np.multiply(np.take(planes, i00, axis=1), wr0)
    out *= wc0
    tmp = np.empty_like(out)
    for idx, wa, wb in ((i00 + right, wr0, wc1), (i00 + down, wr1, wc0),
                        (i00 + down + right, wr1, wc1)):  # fmt: skip
        np.multiply(np.take(planes, idx, axis=1), wa, out=tmp)
        tmp *= wb
        out += tmp
    out[:, ~inside] = 0.0
    return out.T.astype(np.float32)


def _block_mean(patch: np.ndarray, k: int) -> np.ndarray:
    """``patch`` (H, W, C) uint8 averaged over k x k blocks (a last partial block averages the
    pixels it has)."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(patch)).reduce(k))


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = 112, scale: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crop (size, size, 3) uint8 of ``image`` and the 2x3 matrix that made it."""
    matrix = alignment_matrix(landmarks, size, scale)
    return warp_affine(image, matrix, size), matrix
