"""Walking flat loss elements in runs along the innermost axis of the weights view.

The kernels visit flat loss elements ``[start, stop)`` with the ``(A, M, I)`` broadcast view
``w`` of the weights (`lossforge.inputs.weights_view`), in which flat element ``j`` has the
weight ``w[ia, im, ii]``. They go run by run, a run being the elements up to the end of one
row ``w[ia, im]`` (or to ``stop``), so that their inner loops index ``row`` with no index
bookkeeping (and can be vectorised)::

    ia, im, ii = run_start(w, start)
    j = start
    while j < stop:
        run = run_length(w, ii, j, stop)
        row = w[ia, im]
        ...  # elements j .. j + run - 1, weighted by row[ii] .. row[ii + run - 1]
        j += run
        ia, im, ii = next_run(w, ia, im)

Every kernel module generated from the templates imports these. ``inline="always"`` puts
them into numba's IR of each caller, so they cost what the bookkeeping written out there did,
and the callers still cache: numba keys a cached kernel on its own file only, but
`lossforge.kernels` fingerprints this file with the templates, so an edit here lands in fresh
kernel modules rather than under stale cached ones.
"""
from numba import njit


@njit(inline="always")
def run_start(w, start):
    """``(ia, im, ii)``: where flat element ``start`` lies in ``w``."""
    inner = w.shape[2]
    middle = w.shape[1]
    ia = start // (middle * inner)
    rest = start - ia * middle * inner
    im = rest // inner
    return ia, im, rest - im * inner


@njit(inline="always")
def run_length(w, ii, j, stop):
    """How many elements from flat element ``j`` (at ``ii`` in its row) the run holds."""
    return min(w.shape[2] - ii, stop - j)


@njit(inline="always")
def next_run(w, ia, im):
    """``(ia, im, ii)`` of the run after the one in row ``w[ia, im]``: the next row's start."""
    im += 1
    if im == w.shape[1]:
        im = 0
        ia += 1
    return ia, im, 0
