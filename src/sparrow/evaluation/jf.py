"""Region similarity J and contour accuracy F, identical to the davis2017 toolkit (METRICS.md §1.1-1.2).

Definitions (per frame; masks cast to bool; an optional void mask is removed from both first):

- ``J = |A ∧ B| / |A ∨ B|``, and ``J = 1`` when the union is empty.
- ``F``: one-pixel boundaries by ``seg2bmap`` (a pixel differs from its east, south or south-east
  neighbour, with the last-row / last-column rules of the BSDS code), matched within a disk of radius
  ``ceil(0.008 * sqrt(H² + W²))`` (``cv2.dilate`` semantics), then ``F = 2PR / (P + R)`` with the
  official table for empty boundaries (both empty: 1; exactly one empty: 0).

How it is made fast without changing a single value (the tests compare with :mod:`.jf_reference`, the
full-frame algorithm, on hundreds of random shapes):

- ``seg2bmap`` equals the plain "differs from E, S or SE" rule with the image replicated at its right and
  bottom edges, so no boundary pixel lies outside the mask's bounding box grown by one pixel up and left.
  Each mask is processed only inside that box (:class:`MaskGeometry`), once per frame.
- Inside the box, pixels are bit-packed: 64 pixels of a row per ``uint64`` word, so one numpy operation
  handles 64 pixels. The dilation by the disk is a union of horizontal dilations (shifts with carries
  between words) moved up and down by whole rows (``disk = ⋃_dy {dy} × [-w(dy), w(dy)]``,
  ``w(dy) = isqrt(r² - dy²)``). Each array carries zero padding (``r`` rows, and enough words) so that
  every shift is a shift of one flat contiguous array.
- A mask's boundary and dilation are computed once and reused for every pairing (the unsupervised
  protocols pair every proposal with every object); a pairing only counts bits in the overlap of two
  padded boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

__all__ = [
    "DEFAULT_BOUND_TH",
    "MaskGeometry",
    "boundary_radius",
    "disk",
    "f_measure",
    "f_pair",
    "jaccard",
    "jaccard_pair",
    "jf_pairwise",
    "jf_series",
    "prepare_mask",
]

DEFAULT_BOUND_TH = 0.008
_WORD = np.dtype("<u8")
_ONE = np.uint64(1)


def boundary_radius(shape: tuple[int, int], bound_th: float = DEFAULT_BOUND_TH) -> int:
    """F's tolerance radius in pixels for a frame of ``shape = (H, W)``.

    ``bound_th >= 1`` is a radius in pixels (must be integral); otherwise the radius is
    ``ceil(bound_th * sqrt(H² + W²))`` -- 8 px at 480×854, 18 px at 1080×1920.
    """
    if bound_th >= 1:
        if float(bound_th) != int(bound_th):
            raise ValueError(f"a pixel radius bound_th >= 1 must be an integer, got {bound_th}")
        return int(bound_th)
    h, w = int(shape[0]), int(shape[1])
    return math.ceil(bound_th * math.sqrt(h * h + w * w))


@lru_cache(maxsize=64)
def disk(radius: int) -> np.ndarray:
    """Disk structuring element, uint8 ``(2r+1, 2r+1)``: ones where ``dy² + dx² <= r²`` (skimage ``disk``)."""
    offsets = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    out = (dy * dy + dx * dx <= radius * radius).astype(np.uint8)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=64)
def _half_widths(radius: int) -> tuple[int, ...]:
    """``w(dy) = isqrt(r² - dy²)`` for ``dy = -r .. r``: the disk's half-width on each row."""
    return tuple(math.isqrt(radius * radius - dy * dy) for dy in range(-radius, radius + 1))


# ---------------------------------------------------------------------------------------------------
# Bit-packed flat arrays. A padded block of ``rows × cols`` words is stored flat (row-major); bit j of word
# k of a row is pixel 64·k + j of that row. Shifting "toward higher x" by k bits is a left shift with the
# carry taken from the previous word; because every row starts and ends with zero padding words that no
# shift fills beyond its first/last ``r`` bits, carries never cross from one row into the next.
# ---------------------------------------------------------------------------------------------------


def _toward_high_x(a: np.ndarray, k: int) -> np.ndarray:
    """Pixels move by ``+k`` columns (``0 < k < 64``): ``out[x] = a[x - k]``."""
    out = np.left_shift(a, np.uint64(k))
    out[1:] |= a[:-1] >> np.uint64(64 - k)
    return out


def _toward_low_x(a: np.ndarray, k: int) -> np.ndarray:
    """Pixels move by ``-k`` columns (``0 < k < 64``): ``out[x] = a[x + k]``."""
    out = np.right_shift(a, np.uint64(k))
    out[:-1] |= a[1:] << np.uint64(64 - k)
    return out


def _horizontal_dilations(flat: np.ndarray, widths: Sequence[int]) -> dict[int, np.ndarray]:
    """Flat bit arrays dilated horizontally by ``[-w, w]`` for every ``w`` in ``widths``.

    Grows the width by doubling-like steps (``[-a, a] ⊕ {-s, 0, s}`` covers ``[-(a+s), a+s]`` without gaps
    when ``s <= 2a + 1``), so all widths up to ``r`` cost about as many steps as there are distinct widths.
    """
    table: dict[int, np.ndarray] = {0: flat}
    cur, cur_w = flat, 0
    for w in sorted(set(widths)):
        while cur_w < w:
            step = min(w - cur_w, 2 * cur_w + 1, 63)
            nxt = _toward_high_x(cur, step)
            nxt |= cur
            nxt |= _toward_low_x(cur, step)
            cur, cur_w = nxt, cur_w + step
        table[w] = cur
    return table


def _disk_dilation(flat: np.ndarray, cols: int, radius: int) -> np.ndarray:
    """Dilate a flat padded bit array by ``disk(radius)`` (needs ``radius`` zero rows top and bottom)."""
    widths = _half_widths(radius)
    table = _horizontal_dilations(flat, widths)
    n = flat.size
    out = table[widths[radius]].copy()  # dy = 0
    for i, w in enumerate(widths):
        dy = i - radius
        if dy == 0:
            continue
        s = dy * cols
        if s > 0:
            out[s:] |= table[w][: n - s]
        else:
            out[: n + s] |= table[w][-s:]
    return out


def _popcount(a: np.ndarray) -> int:
    return int(np.bitwise_count(a).sum(dtype=np.int64))


@dataclass(frozen=True, eq=False)
class MaskGeometry:
    """One mask of one frame, prepared once for J and F against any number of other masks.

    The three bit arrays share one padded block in frame coordinates: rows ``row0 .. row0 + rows`` and
    words ``word0 .. word0 + cols`` (word k covers pixel columns ``64k .. 64k + 63``); ``row0`` and
    ``word0`` may be negative (padding). Outside the block every map is empty.

    Attributes:
        shape: frame size ``(H, W)``.
        radius: F tolerance radius the dilation was made with.
        area: foreground pixel count (void removed).
        n_boundary: number of ``seg2bmap`` boundary pixels.
        row0, word0, rows, cols: the block (``rows = cols = 0`` for an empty mask).
        mask, boundary, dilated: ``(rows, cols)`` uint64 bit arrays of the foreground, its boundary, and
            the boundary dilated by ``disk(radius)``.
    """

    shape: tuple[int, int]
    radius: int
    area: int
    n_boundary: int
    row0: int
    word0: int
    rows: int
    cols: int
    mask: np.ndarray
    boundary: np.ndarray
    dilated: np.ndarray


def _as_bool(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    return m if m.dtype == bool else m.astype(bool)


def _empty_geometry(shape: tuple[int, int], radius: int) -> MaskGeometry:
    z = np.zeros((0, 0), dtype=_WORD)
    return MaskGeometry(shape, radius, 0, 0, 0, 0, 0, 0, z, z, z)


def prepare_mask(
    mask: np.ndarray,
    void: np.ndarray | None = None,
    *,
    radius: int | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
) -> MaskGeometry:
    """Prepare one frame's mask for :func:`jaccard_pair` / :func:`f_pair`.

    Args:
        mask: ``(H, W)``, any dtype; non-zero is foreground.
        void: optional ``(H, W)`` mask of pixels to ignore (non-zero = void); removed from the mask.
        radius: F tolerance radius; default from ``bound_th`` and the frame size.
        bound_th: as in the official ``f_measure`` (0.008 of the diagonal).
    """
    m = _as_bool(mask)
    if m.ndim != 2:
        raise ValueError(f"expected one (H, W) mask, got shape {m.shape}")
    if void is not None:
        v = _as_bool(void)
        if v.shape != m.shape:
            raise ValueError(f"void shape {v.shape} differs from mask shape {m.shape}")
        m = m & ~v
    m = np.ascontiguousarray(m)
    h, w = m.shape
    r = boundary_radius((h, w), bound_th) if radius is None else int(radius)
    x, y, bw, bh = cv2.boundingRect(m.view(np.uint8))
    if bw == 0 or bh == 0:
        return _empty_geometry((h, w), r)
    y0, y1, x0, x1 = y, y + bh, x, x + bw

    # Real region: boundary rows y0-1 .. y1-1 plus one row of context below (background, or the frame's
    # last row, replicated), columns likewise, rounded out to whole words.
    ya, yb = max(0, y0 - 1), min(h, y1 + 1)
    wa, wb = max(0, x0 - 1) // 64, (min(w, x1 + 1) + 63) // 64
    pad_words = 1 + (2 * r) // 64
    rows, cols = (yb - ya) + 2 * r, (wb - wa) + 2 * pad_words
    packed = np.packbits(m[ya:yb, 64 * wa : min(w, 64 * wb)], axis=1, bitorder="little")
    block = np.zeros((rows, cols * 8), dtype=np.uint8)
    block[r : r + (yb - ya), pad_words * 8 : pad_words * 8 + packed.shape[1]] = packed
    s = block.view(_WORD).reshape(-1)

    # seg2bmap: differs from E, S or SE, the image replicated beyond its right and bottom edges.
    south = np.zeros_like(s)
    south[:-cols] = s[cols:]
    if yb == h:  # the frame's last row reads itself as its south neighbour
        last = (r + yb - ya - 1) * cols
        south[last : last + cols] = s[last : last + cols]
    east = _toward_low_x(s, 1)
    south_east = _toward_low_x(south, 1)
    if 64 * wb >= w:  # the frame's last column reads itself as its east neighbour
        word = (w - 1) // 64 - wa + pad_words
        bit = np.uint64(1) << np.uint64((w - 1) % 64)
        east[word::cols] |= s[word::cols] & bit
        south_east[word::cols] |= south[word::cols] & bit
    boundary = (s ^ east) | (s ^ south) | (s ^ south_east)
    # Only the real rows and words hold true boundary values; padding may hold artefacts of the shifts.
    b2 = boundary.reshape(rows, cols)
    b2[:r] = 0
    b2[r + (yb - ya) :] = 0
    b2[:, :pad_words] = 0
    b2[:, cols - pad_words :] = 0

    dilated = _disk_dilation(boundary, cols, r)
    return MaskGeometry(
        shape=(h, w),
        radius=r,
        area=_popcount(s),
        n_boundary=_popcount(boundary),
        row0=ya - r,
        word0=wa - pad_words,
        rows=rows,
        cols=cols,
        mask=s.reshape(rows, cols),
        boundary=b2,
        dilated=dilated.reshape(rows, cols),
    )


def _overlap_count(a: MaskGeometry, a_bits: np.ndarray, b: MaskGeometry, b_bits: np.ndarray) -> int:
    """Number of pixels set in both bit arrays (in frame coordinates); 0 if the blocks are apart."""
    r0, r1 = max(a.row0, b.row0), min(a.row0 + a.rows, b.row0 + b.rows)
    c0, c1 = max(a.word0, b.word0), min(a.word0 + a.cols, b.word0 + b.cols)
    if r0 >= r1 or c0 >= c1:
        return 0
    sa = a_bits[r0 - a.row0 : r1 - a.row0, c0 - a.word0 : c1 - a.word0]
    sb = b_bits[r0 - b.row0 : r1 - b.row0, c0 - b.word0 : c1 - b.word0]
    return _popcount(sa & sb)


def _check_pair(a: MaskGeometry, b: MaskGeometry) -> None:
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    if a.radius != b.radius:
        raise ValueError(f"masks prepared with different F radii: {a.radius} vs {b.radius}")


def jaccard_pair(gt: MaskGeometry, pred: MaskGeometry) -> float:
    """J of two prepared masks: ``|A ∧ B| / |A ∨ B|``, 1.0 when the union is empty."""
    _check_pair(gt, pred)
    inter = _overlap_count(gt, gt.mask, pred, pred.mask) if gt.area and pred.area else 0
    union = gt.area + pred.area - inter
    if union == 0:
        return 1.0
    return inter / union


def f_pair(gt: MaskGeometry, pred: MaskGeometry) -> float:
    """Boundary F-measure of two prepared masks (symmetric in its arguments)."""
    _check_pair(gt, pred)
    n_fg, n_gt = pred.n_boundary, gt.n_boundary
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        fg_match = _overlap_count(pred, pred.boundary, gt, gt.dilated)
        gt_match = _overlap_count(gt, gt.boundary, pred, pred.dilated)
        precision = fg_match / float(n_fg)
        recall = gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def jf_pairwise(gts: Sequence[MaskGeometry], preds: Sequence[MaskGeometry]) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every (prediction, annotation) pair of one frame: float64 ``(len(preds), len(gts))`` each.

    Every mask is prepared once (boundary and dilation), so pairing P proposals with K objects costs
    P + K preparations plus P·K overlap counts.
    """
    j = np.empty((len(preds), len(gts)), dtype=np.float64)
    f = np.empty((len(preds), len(gts)), dtype=np.float64)
    for pi, p in enumerate(preds):
        for gi, g in enumerate(gts):
            j[pi, gi] = jaccard_pair(g, p)
            f[pi, gi] = f_pair(g, p)
    return j, f


def _frames(x: np.ndarray | None, name: str) -> np.ndarray | None:
    if x is None:
        return None
    a = np.asarray(x)
    if a.ndim not in (2, 3):
        raise ValueError(f"{name} must be (H, W) or (T, H, W), got shape {a.shape}")
    return a


def _check_shapes(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None) -> None:
    if gt.shape != pred.shape:
        raise ValueError(f"annotation {gt.shape} and prediction {pred.shape} shapes differ")
    if void is not None and void.shape != gt.shape:
        raise ValueError(f"void {void.shape} and annotation {gt.shape} shapes differ")


def jf_series(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None, *, bound_th: float = DEFAULT_BOUND_TH
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F of two stacks.

    Args:
        gt: annotation ``(T, H, W)`` (or one ``(H, W)`` frame); non-zero = foreground.
        pred: prediction, same shape.
        void: optional void pixels, same shape.

    Returns:
        ``(J, F)``, float64 arrays of shape ``(T,)`` (``(1,)`` for a single frame).
    """
    g, p, v = _frames(gt, "annotation"), _frames(pred, "prediction"), _frames(void, "void")
    _check_shapes(g, p, v)
    if g.ndim == 2:
        g, p = g[None], p[None]
        v = None if v is None else v[None]
    radius = boundary_radius(g.shape[1:], bound_th)
    j = np.empty(g.shape[0], dtype=np.float64)
    f = np.empty(g.shape[0], dtype=np.float64)
    for t in range(g.shape[0]):
        vt = None if v is None else v[t]
        mg = prepare_mask(g[t], vt, radius=radius)
        mp = prepare_mask(p[t], vt, radius=radius)
        j[t] = jaccard_pair(mg, mp)
        f[t] = f_pair(mg, mp)
    return j, f


def jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float | np.ndarray:
    """J of one frame ``(H, W)`` (float) or per frame of a stack ``(T, H, W)`` (float64 ``(T,)``)."""
    g, p, v = _frames(gt, "annotation"), _frames(pred, "prediction"), _frames(void, "void")
    _check_shapes(g, p, v)
    gb, pb = _as_bool(g), _as_bool(p)
    keep = None if v is None else ~_as_bool(v)
    both, either = gb & pb, gb | pb
    if keep is not None:
        both &= keep
        either &= keep
    inter = np.count_nonzero(both, axis=(-2, -1))
    union = np.count_nonzero(either, axis=(-2, -1))
    if g.ndim == 2:
        return 1.0 if union == 0 else int(inter) / int(union)
    out = np.ones(g.shape[0], dtype=np.float64)
    nz = union != 0
    out[nz] = inter[nz] / union[nz]
    return out


def f_measure(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None, *, bound_th: float = DEFAULT_BOUND_TH
) -> float | np.ndarray:
    """F of one frame ``(H, W)`` (float) or per frame of a stack ``(T, H, W)`` (float64 ``(T,)``)."""
    g = _frames(gt, "annotation")
    _, f = jf_series(gt, pred, void, bound_th=bound_th)
    return float(f[0]) if g.ndim == 2 else f
