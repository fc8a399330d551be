"""Dynamic time warping, for training and validation as well as for the metrics.

Training needs DTW only to carry a reference onto a free-running hypothesis' timing (the ``delta`` criterion's
``align: dtw`` and the refinement gain's ``refine_from: free_running``). It lives here, apart from
:mod:`ebm.metrics`, so that training does not import the evaluation stack (librosa, pysptk, pyworld).

:func:`dtw_path` is exact DTW with steps (1, 1), (0, 1), (1, 0), unit weights and Euclidean frame distance, from
(0, 0) to the two last frames; where several predecessors tie, the first of diagonal, horizontal, vertical wins.
That is the convention of ``librosa.sequence.dtw(metric="euclidean")``, so paths (and the MCD measured on them)
are the same as with librosa. The accumulated cost is filled one anti-diagonal at a time: every cell of an
anti-diagonal depends only on the two before it, so each diagonal is a few vectorised numpy operations.
"""

from typing import List, Sequence, Tuple

import numpy as np
import torch
from scipy.spatial.distance import cdist

from ebm.cli import EbmError

# predecessor offsets (frames of a, frames of b), in tie-breaking order
_STEPS = np.array([[1, 1], [0, 1], [1, 0]])


def _frames(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x  # 1-D: one value per frame


def dtw_paths(pairs: Sequence[Tuple[np.ndarray, np.ndarray]]) -> List[Tuple[np.ndarray, np.ndarray]]:
    """:func:`dtw_path` of every ``(a, b)`` pair, computed together (one pass over the anti-diagonals for all).

    The pairs' cost matrices are stacked, padded with infinite cost; a cell's path cost depends only on cells
    above and left of it, so the padding changes no path, and a batch costs about as many numpy calls as its
    longest pair.
    """
    pairs = [(_frames(a), _frames(b)) for a, b in pairs]
    for a, b in pairs:
        if len(a) == 0 or len(b) == 0:
            raise EbmError(f"DTW needs frames on both sides (got {len(a)} and {len(b)})")
        if a.shape[1] != b.shape[1]:
            raise EbmError(f"DTW needs equal feature sizes (got {a.shape[1]} and {b.shape[1]})")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise EbmError("DTW got frames that are not finite (a diverged hypothesis?)")
    if not pairs:
        return []
    B, n, m = len(pairs), max(len(a) for a, _ in pairs), max(len(b) for _, b in pairs)
    cost = np.full((B, n, m), np.inf)
    for k, (a, b) in enumerate(pairs):
        cost[k, :len(a), :len(b)] = cdist(a, b, metric="euclidean")
    # Anti-diagonal d holds the cells (i, d - i). prev1/prev2 hold the cheapest path costs to the cells of the
    # diagonals d - 1 and d - 2 at position i + 1, with an infinite border at 0 and beyond the matrix.
    flipped = cost[:, :, ::-1]  # cost[:, i, d - i] lies on one diagonal of the flipped matrices
    prev2, prev1 = np.full((B, n + 1), np.inf), np.full((B, n + 1), np.inf)
    prev1[:, 1] = cost[:, 0, 0]
    step = np.zeros((B, n + m - 1, n), dtype=np.int8)  # step[., d, i]: index into _STEPS of (i, d - i)'s way back
    for d in range(1, n + m - 1):
        lo, hi = max(0, d - m + 1), min(n - 1, d)
        c = np.ascontiguousarray(np.diagonal(flipped, offset=m - 1 - d, axis1=1, axis2=2))
        cur = np.full((B, n + 1), np.inf)
        value = cur[:, lo + 1:hi + 2]
        np.add(prev2[:, lo:hi + 1], c, out=value)  # diagonal: from (i - 1, j - 1)
        best = step[:, d, lo:hi + 1]
        for s, pred in ((1, prev1[:, lo + 1:hi + 2]), (2, prev1[:, lo:hi + 1])):  # horizontal, vertical
            cand = pred + c
            better = cand < value  # strict: the first of equal costs wins
            np.copyto(value, cand, where=better)
            np.copyto(best, s, where=better)
        prev2, prev1 = prev1, cur
    out = []
    for k, (a, b) in enumerate(pairs):
        i, j = len(a) - 1, len(b) - 1
        path = [(i, j)]
        while (i, j) != (0, 0):
            di, dj = _STEPS[step[k, i + j, i]]
            i, j = i - di, j - dj
            path.append((i, j))
        path = np.array(path[::-1], dtype=int)
        out.append((path[:, 0].copy(), path[:, 1].copy()))
    return out


def dtw_path(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(i, j)``, increasing, of the exact DTW path between ``a (Ta, D)`` and ``b (Tb, D)``.

    1-D inputs are one value per frame.
    """
    return dtw_paths([(a, b)])[0]


def dtw_warped_reference(ref: torch.Tensor, lengths: torch.Tensor, hyp: torch.Tensor,
                         hyp_lengths: torch.Tensor) -> torch.Tensor:
    """The reference carried onto each hypothesis' own timing along their DTW path, (B, T_hyp, D).

    A free-running hypothesis has its own durations, so ``Y+ - Y-`` is undefined frame by frame; each hypothesis
    frame gets the mean of the reference frames DTW pairs it with, the same pairing MCD is scored on. No
    gradient flows through the alignment.
    """
    r, h = ref.detach().float().cpu().numpy(), hyp.detach().float().cpu().numpy()
    out = np.zeros(h.shape, dtype=np.float32)
    rows = [b for b in range(h.shape[0]) if int(lengths[b]) > 0 and int(hyp_lengths[b]) > 0]
    paths = dtw_paths([(r[b, :int(lengths[b])], h[b, :int(hyp_lengths[b])]) for b in rows])
    for b, (i, j) in zip(rows, paths):
        # j is non-decreasing and covers every hypothesis frame: sum each run of equal j in path order
        starts = np.flatnonzero(np.r_[True, j[1:] != j[:-1]])
        sums = np.add.reduceat(r[b, i].astype(np.float64), starts, axis=0)
        out[b, :int(hyp_lengths[b])] = sums / np.diff(np.r_[starts, len(j)])[:, None]
    return torch.from_numpy(out).to(device=hyp.device, dtype=hyp.dtype)


__all__ = ["dtw_path", "dtw_paths", "dtw_warped_reference"]
