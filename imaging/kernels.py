"""Compiled pixel loops: the one home of the project's numba kernels.

Some steps of the hot path are one pass over the pixels in a loop, but several passes of
whole-image numpy or scipy calls: scipy's feature transform, for instance, finds every
pixel's nearest labelled pixel over the whole image when growth needs it only a few pixels
out. numba (a well-kept LLVM compiler for numeric Python, already a dependency of cellpose)
compiles such loops to machine code. Each kernel here:

- is a plain loop whose result is defined by a rule stated in its docstring, tested against
  the library function it replaces on random inputs with many ties (the tests name it);
- is compiled on first use and cached on disk (``cache=True``: a worker process loads it in
  milliseconds), and releases the GIL (``nogil=True``) so :mod:`imaging.tiles` runs it on
  threads;
- is imported lazily by its caller, so ``imaging --help`` does not pay numba's import;
- indexes its inner loops by the loop counter, over row or shifted slices, or by unsigned
  integers: numba checks every signed index it cannot prove non-negative for wraparound
  (``a[-1]``), and that check keeps LLVM from vectorising the loop (the Gaussian's row pass
  and the block means ran 3-4x slower with ``a[c + half - k]``).
"""

from __future__ import annotations

import numba
import numpy as np

_FAR = 1 << 30  # farther than any pixel of an image: "no labelled pixel in this column"


@numba.njit(cache=True, nogil=True)
def nearest_label_within(labels: np.ndarray, beyond: int) -> np.ndarray:  # pragma: no cover - compiled
    """Each background pixel of ``labels`` takes the label of its nearest labelled pixel when
    the squared distance to it is under ``beyond``; labelled pixels keep theirs, others get 0.

    Of equidistant labelled pixels the one in the leftmost column wins, then the uppermost
    row: the choice scipy's feature transform makes, so the result equals
    ``skimage.segmentation.expand_labels`` (tested with many ties in
    ``tests/test_label_stats.py``).

    Two separable passes (the squared distance is a row part plus a column part):

    1. down each column, the nearest labelled pixel above and below (the upper on a tie),
       row by row over all columns at once;
    2. along each row, the column offset ``k`` that minimises ``k^2 + h^2``, ``h`` the
       column distance found in pass 1, over ``|k| <= reach``; the first strict minimum
       scanned from the left is the leftmost. A column with ``h > reach`` never wins, so
       each row first finds every pixel's offset to the nearest column that can (two
       sweeps); a pixel with none within reach stays 0 unsearched, and the others start
       their search at that offset, the nearer offsets holding nothing that can win.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels; 0 is background.
    beyond : int
        The least squared distance that is too far (at least 1).

    Returns
    -------
    (M, N) ndarray, ``labels``' dtype
    """
    rows, columns = labels.shape
    reach = 0
    while (reach + 1) * (reach + 1) < beyond:
        reach += 1
    out = np.zeros_like(labels)
    column_distance = np.empty((rows, columns), np.int32)
    nearest_row = np.empty((rows, columns), np.int32)
    last = np.full(columns, -_FAR, np.int32)
    for r in range(rows):
        for c in range(columns):
            if labels[r, c] != 0:
                last[c] = r
            column_distance[r, c] = r - last[c] if last[c] > -_FAR else _FAR
            nearest_row[r, c] = last[c]
    following = np.full(columns, _FAR, np.int32)
    for r in range(rows - 1, -1, -1):
        for c in range(columns):
            if labels[r, c] != 0:
                following[c] = r
            if following[c] < _FAR and following[c] - r < column_distance[r, c]:
                column_distance[r, c] = following[c] - r
                nearest_row[r, c] = following[c]
    # one row of squared column distances, padded by ``reach`` each side, ``beyond`` where too far
    squared = np.empty(columns + 2 * reach, np.int64)
    # the sweeps for the offset to the nearest winnable column cost more than they save
    # when the search is at most one column each side
    sweep_gaps = reach > 1
    gap = np.zeros(columns, np.int64)
    squared[:reach] = beyond
    squared[reach + columns :] = beyond
    middle = squared[reach : reach + columns]  # column c's square at middle[c]
    for r in range(rows):
        distances = column_distance[r]
        for c in range(columns):
            h = distances[c]
            middle[c] = h * h if h <= reach else beyond
        if sweep_gaps:
            seen = -_FAR
            for c in range(columns):
                if middle[c] < beyond:
                    seen = c
                gap[c] = c - seen
            seen = _FAR
            for i in range(columns):
                c = columns - 1 - i
                if middle[c] < beyond:
                    seen = c
                if seen - c < gap[c]:
                    gap[c] = seen - c
        row_labels = labels[r]
        row_out = out[r]
        for c in range(columns):
            if row_labels[c] != 0:
                row_out[c] = row_labels[c]
                continue
            if gap[c] > reach:
                continue
            # outwards from the pixel's own column, so the search stops once the column
            # offset alone reaches the best found; an equal distance further left still wins
            # (unsigned indices: module docstring)
            best = middle[c]
            best_k = reach
            d = max(1, gap[c])
            while d <= reach and d * d <= best:
                q = d * d + squared[np.uint64(c + reach - d)]
                if q <= best:
                    best = q
                    best_k = reach - d
                q = d * d + squared[np.uint64(c + reach + d)]
                if q < best:
                    best = q
                    best_k = reach + d
                d += 1
            if best < beyond:
                c_near = c + best_k - reach
                row_out[c] = labels[nearest_row[r, c_near], c_near]
    return out


@numba.njit(cache=True, nogil=True)
def _envelope(ys: np.ndarray, xs: np.ndarray, n: int, sign: int) -> int:  # pragma: no cover - compiled
    """In place, the vertices of the lower convex envelope of the points ``(ys[i], xs[i])``,
    ``i < n``, ``ys`` increasing (``sign`` 1), or of the upper concave one (``sign`` -1);
    returns their count (Andrew's monotone chain, exact in integers)."""
    m = 0
    for i in range(n):
        while m >= 2:
            cross = (ys[m - 1] - ys[m - 2]) * (xs[i] - xs[m - 2]) - (xs[m - 1] - xs[m - 2]) * (ys[i] - ys[m - 2])
            if sign * cross > 0:  # a strict turn the right way: the middle point stays
                break
            m -= 1  # on or inside the chord from its neighbours: not a vertex
        ys[m] = ys[i]
        xs[m] = xs[i]
        m += 1
    return m


@numba.njit(cache=True, nogil=True)
def convex_hull_mask(mask: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """The pixels of ``mask``'s convex hull: ``skimage.morphology.convex_hull_image(mask)``.

    skimage's hull is the closed convex polygon around the midpoints of every mask pixel's
    four edges, and a pixel belongs to it when its centre lies inside or on the polygon. In
    doubled coordinates (row ``Y = 2r``, column ``X = 2c``) those midpoints are integers, so
    the hull is computed exactly: each row's leftmost and rightmost pixel give the extreme
    midpoints (the others lie between them), the hull's left side is the lower convex
    envelope of the least ``X`` at each ``Y`` and its right side the upper concave envelope of
    the greatest, and each pixel row is filled between them (ceil and floor of exact
    fractions). Tested against skimage on 1,500 random masks (``tests/segment/test_segment.py``);
    the labels of the DSB and benchmark-field segmentations are unchanged.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        Pixels (any number of components).

    Returns
    -------
    (M, N) ndarray of bool
    """
    rows, columns = mask.shape
    out = np.zeros((rows, columns), np.bool_)
    n_y = 2 * rows + 1  # Y from -1 to 2 * rows - 1
    least = np.full(n_y, 1 << 40, np.int64)
    most = np.full(n_y, -(1 << 40), np.int64)
    for r in range(rows):
        first = -1
        last = -1
        for c in range(columns):
            if mask[r, c]:
                if first < 0:
                    first = c
                last = c
        if first < 0:
            continue
        for dy, left, right in ((-1, 2 * first, 2 * last), (0, 2 * first - 1, 2 * last + 1), (1, 2 * first, 2 * last)):
            i = 2 * r + dy + 1
            least[i] = min(least[i], left)
            most[i] = max(most[i], right)
    ys_left = np.empty(n_y, np.int64)
    xs_left = np.empty(n_y, np.int64)
    ys_right = np.empty(n_y, np.int64)
    xs_right = np.empty(n_y, np.int64)
    n = 0
    for i in range(n_y):
        if most[i] >= least[i]:
            ys_left[n] = i - 1
            xs_left[n] = least[i]
            ys_right[n] = i - 1
            xs_right[n] = most[i]
            n += 1
    if n == 0:
        return out
    n_left = _envelope(ys_left, xs_left, n, 1)
    n_right = _envelope(ys_right, xs_right, n, -1)
    j_left = 0
    j_right = 0
    for r in range(rows):
        y = 2 * r
        if y < ys_left[0] or y > ys_left[n_left - 1]:
            continue
        while j_left < n_left - 2 and ys_left[j_left + 1] < y:
            j_left += 1
        while j_right < n_right - 2 and ys_right[j_right + 1] < y:
            j_right += 1
        if n_left == 1:
            low_column = -((-xs_left[0]) // 2)
        else:
            y0, y1, x0, x1 = ys_left[j_left], ys_left[j_left + 1], xs_left[j_left], xs_left[j_left + 1]
            numerator = x0 * (y1 - y) + x1 * (y - y0)  # X = numerator / (y1 - y0); column >= X / 2
            low_column = -((-numerator) // (2 * (y1 - y0)))
        if n_right == 1:
            high_column = xs_right[0] // 2
        else:
            y0, y1, x0, x1 = ys_right[j_right], ys_right[j_right + 1], xs_right[j_right], xs_right[j_right + 1]
            numerator = x0 * (y1 - y) + x1 * (y - y0)
            high_column = numerator // (2 * (y1 - y0))
        for c in range(max(low_column, 0), min(high_column, columns - 1) + 1):
            out[r, c] = True
    return out


@numba.njit(cache=True, nogil=True)
def linear_resize(
    values, rows_low, rows_high, row_fraction, columns_low, columns_high, column_fraction, low, high, out
):  # pragma: no cover
    """The two passes of :func:`imaging.filters.resize_linear`, into ``out``: each row of the
    small image resampled along columns, ``values[:, lo] * (1 - f) + values[:, hi] * f``,
    then each output row from two of those, ``columns[lo] * (1 - f) + columns[hi] * f``,
    clipped to ``[low, high]``; numpy's roundings (each product and sum rounded to
    ``values``' dtype, then to ``out``'s), so it equals the numpy expressions it replaces
    (tested bit for bit), in two passes instead of ten.

    Parameters
    ----------
    values : (m, n) ndarray of float
        The small image, in the working dtype.
    rows_low, rows_high : (M,) ndarray of int
        The two input rows of each output row.
    row_fraction : (M,) ndarray of float
        The weight of the second, ``values``' dtype.
    columns_low, columns_high : (N,) ndarray of int
        The two input columns of each output column.
    column_fraction : (N,) ndarray of float
        The weight of the second, ``values``' dtype.
    low, high : float
        The clip range, ``values``' dtype.
    out : (M, N) ndarray of float
        Written in place.

    Returns
    -------
    (M, N) ndarray
        ``out``.
    """
    one = values.dtype.type(1)
    n_columns = out.shape[1]
    column_keep = np.empty(n_columns, values.dtype)
    for j in range(n_columns):
        column_keep[j] = one - column_fraction[j]
    columns = np.empty((values.shape[0], n_columns), values.dtype)
    for r in range(values.shape[0]):
        source = values[r]
        for j in range(n_columns):
            columns[r, j] = source[columns_low[j]] * column_keep[j] + source[columns_high[j]] * column_fraction[j]
    for i in range(out.shape[0]):
        weight = row_fraction[i]
        keep = one - weight
        first = columns[rows_low[i]]
        second = columns[rows_high[i]]
        for j in range(n_columns):
            value = first[j] * keep + second[j] * weight
            out[i, j] = min(max(value, low), high)
    return out


NEAR_SEARCH_PX = 48  # rows of the distance transform no deeper than this are searched directly


@numba.njit(cache=True, nogil=True)
def exact_distance_transform(mask: np.ndarray, out: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Euclidean distance of each True pixel of ``mask`` to the nearest False pixel (0 on
    False), as ``scipy.ndimage.distance_transform_edt(mask)`` gives it; ``mask`` must hold
    at least one False pixel (pixels beyond the image are not background).

    Squared distances are integers, found exactly in two passes (Felzenszwalb and
    Huttenlocher): down each column, the row distance to the column's nearest False pixel
    (row by row over all columns at once); along each row, the lower envelope of the
    parabolas ``(c - c')^2 + g(c')^2`` (an envelope breakpoint lies at least 1/8192 px from
    an integer, so its float64 position never puts a pixel under the wrong parabola).
    Their float64 square roots are scipy's, written into ``out`` (a float32 ``out`` holds
    them rounded once, as ``astype(np.float32)`` of scipy's would).

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        Foreground, with some background.
    out : (M, N) ndarray of float
        Written in place.

    Returns
    -------
    (M, N) ndarray
        ``out``.
    """
    rows, columns = mask.shape
    far = rows + columns + 1  # more than any distance inside the image
    column_distance = np.empty((rows, columns), np.int32)
    last = np.full(columns, -far, np.int32)
    for r in range(rows):
        for c in range(columns):
            if not mask[r, c]:
                last[c] = r
            column_distance[r, c] = r - last[c] if last[c] > -far else far
    following = np.full(columns, 2 * far, np.int32)
    for r in range(rows - 1, -1, -1):
        for c in range(columns):
            if not mask[r, c]:
                following[c] = r
            if following[c] - r < column_distance[r, c]:
                column_distance[r, c] = following[c] - r
    vertices = np.empty(columns, np.int64)  # columns whose parabolas form the envelope
    heights = np.empty(columns, np.int64)  # their g^2 + c^2
    breaks = np.empty(columns, np.float64)  # where each vertex's parabola starts to lead
    for r in range(rows):
        # rows whose foreground lies near background (nuclei: a few px) search each pixel's
        # columns outwards, stopping once the column offset alone is past the best square
        # found: the same integer minimum, without the envelope's divisions
        deepest = 0
        for c in range(columns):
            deepest = max(deepest, column_distance[r, c])
        if deepest <= NEAR_SEARCH_PX:
            for c in range(columns):
                g = np.int64(column_distance[r, c])
                best = g * g
                d = 1
                while d * d < best:
                    if c >= d:
                        h = np.int64(column_distance[r, c - d])
                        best = min(best, d * d + h * h)
                    if c + d < columns:
                        h = np.int64(column_distance[r, c + d])
                        best = min(best, d * d + h * h)
                    d += 1
                out[r, c] = np.sqrt(np.float64(best))
            continue
        n = 0
        for q in range(columns):
            g = np.int64(column_distance[r, q])
            if g >= far:
                continue  # no background in this column: no parabola
            height = g * g + q * q
            start = -np.inf
            while n > 0:
                start = (height - heights[n - 1]) / (2.0 * (q - vertices[n - 1]))
                if start > breaks[n - 1]:
                    break
                n -= 1
                start = -np.inf
            vertices[n] = q
            heights[n] = height
            breaks[n] = start
            n += 1
        j = 0
        for c in range(columns):
            while j + 1 < n and breaks[j + 1] < c:
                j += 1
            v = vertices[j]
            out[r, c] = np.sqrt(np.float64(heights[j] - 2 * c * v + c * c))  # (c - v)^2 + g^2
    return out


@numba.njit(cache=True, nogil=True)
def _reflected(i: int, n: int) -> int:  # pragma: no cover - compiled
    """Index ``i`` of a line of ``n`` samples extended by scipy's ``mode="reflect"``
    (``d c b a | a b c d | d c b a``, repeated for reaches past a whole line)."""
    period = 2 * n
    i %= period
    return i if i < n else period - 1 - i


@numba.njit(cache=True, nogil=True)
def separable_correlate_2d(image, row_weights, row_sign, column_weights, column_sign, out):  # pragma: no cover
    """``scipy.ndimage.correlate1d`` with ``row_weights`` along axis 0, then with
    ``column_weights`` along axis 1, ``mode="reflect"``, into ``out`` (also the
    intermediate, as scipy's ``gaussian_filter`` keeps it). Each set of weights is odd and
    symmetric (``sign`` 1: a Gaussian) or antisymmetric (``sign`` -1: its first derivative);
    scipy then sums in float64 the centre tap and each pair of taps from the outermost in,
    ``(x[i - k] + sign * x[i + k]) * w[h - k]``, and so does this loop, each result rounded to
    ``out``'s dtype: scipy's values bit for bit (tested).

    Parameters
    ----------
    image : (M, N) ndarray of float
        The image.
    row_weights, column_weights : (2 h + 1,) ndarray of float64
        The taps along axis 0 and along axis 1.
    row_sign, column_sign : float
        1.0 for symmetric taps, -1.0 for antisymmetric.
    out : (M, N) ndarray of float
        Written in place.

    Returns
    -------
    (M, N) ndarray
        ``out``.
    """
    rows, columns = image.shape
    half = row_weights.shape[0] // 2
    centre = row_weights[half]
    line = np.empty(columns, np.float64)
    for r in range(rows):  # axis 0: whole rows at a time, so the inner loop runs along memory
        middle = image[r]
        for c in range(columns):
            line[c] = np.float64(middle[c]) * centre
        for k in range(half, 0, -1):
            above = image[_reflected(r - k, rows)]
            below = image[_reflected(r + k, rows)]
            w = row_weights[half - k]
            for c in range(columns):
                line[c] += (np.float64(above[c]) + row_sign * np.float64(below[c])) * w
        target = out[r]
        for c in range(columns):
            target[c] = line[c]
    half = column_weights.shape[0] // 2
    centre = column_weights[half]
    padded = np.empty(columns + 2 * half, np.float64)
    # shifted rows as slices indexed by the loop counter, so the loop vectorises (module docstring)
    middle = padded[half : half + columns]
    for r in range(rows):  # axis 1, on the rounded result of axis 0
        row = out[r]
        for i in range(half):  # the reflected ends; the middle is the row itself
            padded[i] = row[_reflected(i - half, columns)]
            padded[columns + half + i] = row[_reflected(columns + i, columns)]
        for c in range(columns):
            middle[c] = row[c]
        for c in range(columns):
            line[c] = middle[c] * centre
        for k in range(half, 0, -1):
            w = column_weights[half - k]
            left = padded[half - k : half - k + columns]
            right = padded[half + k : half + k + columns]
            for c in range(columns):
                line[c] += (left[c] + column_sign * right[c]) * w
        for c in range(columns):
            row[c] = line[c]
    return out


@numba.njit(cache=True, nogil=True)
def _window_maximum(values: np.ndarray, reach: int) -> np.ndarray:  # pragma: no cover - compiled
    """Maximum over the ``(2 reach + 1)`` square window, clipped to the array (scipy's
    ``maximum_filter`` with ``mode="nearest"``: the edge values repeated add nothing to a max)."""
    rows, columns = values.shape
    across = np.empty_like(values)
    for r in range(rows):
        for c in range(columns):
            best = values[r, c]
            for cc in range(max(0, c - reach), min(columns, c + reach + 1)):
                best = max(best, values[r, cc])
            across[r, c] = best
    out = np.empty_like(values)
    for r in range(rows):
        for c in range(columns):
            best = across[r, c]
            for rr in range(max(0, r - reach), min(rows, r + reach + 1)):
                best = max(best, across[rr, c])
            out[r, c] = best
    return out


@numba.njit(cache=True, nogil=True)
def _isolated_pixels(inside: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``inside ^ scipy.ndimage.binary_opening(inside)`` (cross-shaped structure, pixels
    beyond the array background): the pixels an opening removes."""
    rows, columns = inside.shape
    eroded = np.zeros((rows, columns), np.bool_)
    for r in range(rows):
        for c in range(columns):
            eroded[r, c] = (
                inside[r, c]
                and r > 0
                and inside[r - 1, c]
                and r < rows - 1
                and inside[r + 1, c]
                and c > 0
                and inside[r, c - 1]
                and c < columns - 1
                and inside[r, c + 1]
            )
    out = np.zeros((rows, columns), np.bool_)
    for r in range(rows):
        for c in range(columns):
            opened = (
                eroded[r, c]
                or (r > 0 and eroded[r - 1, c])
                or (r < rows - 1 and eroded[r + 1, c])
                or (c > 0 and eroded[r, c - 1])
                or (c < columns - 1 and eroded[r, c + 1])
            )
            out[r, c] = inside[r, c] != opened
    return out


@numba.njit(cache=True, nogil=True)
def _root(parent, i):  # pragma: no cover - compiled
    """Union-find root of ``i``, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True)
def fill_holes_up_to(mask, max_area):  # pragma: no cover - compiled
    """``mask`` with each hole of at most ``max_area`` pixels filled: a hole is a
    4-connected region of background not touching the image border (what labelling
    ``~mask`` with scipy's default cross and counting each label finds).

    The background is taken as runs along rows, runs of neighbouring rows that overlap are
    joined (union-find), and each region's area and border contact are summed over its
    runs: work in runs, not pixels, where scipy's labelling of the one large background
    region of a field took most of the step.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        Foreground.
    max_area : float
        Largest hole filled (px).

    Returns
    -------
    (M, N) ndarray of bool
    """
    rows, columns = mask.shape
    n_runs = 0
    for r in range(rows):
        for c in range(columns):
            if not mask[r, c] and (c == 0 or mask[r, c - 1]):
                n_runs += 1
    starts = np.empty(n_runs, np.int64)
    stops = np.empty(n_runs, np.int64)
    first_run = np.empty(rows + 1, np.int64)  # runs of row r: first_run[r] .. first_run[r + 1]
    k = 0
    for r in range(rows):
        first_run[r] = k
        c = 0
        while c < columns:
            if mask[r, c]:
                c += 1
                continue
            starts[k] = c
            while c < columns and not mask[r, c]:
                c += 1
            stops[k] = c
            k += 1
    first_run[rows] = k
    parent = np.arange(n_runs)
    for r in range(1, rows):
        a, a_end = first_run[r - 1], first_run[r]
        b, b_end = first_run[r], first_run[r + 1]
        while a < a_end and b < b_end:  # runs of rows r - 1 and r, both left to right
            if starts[a] < stops[b] and starts[b] < stops[a]:  # sharing a column: 4-connected
                root_a, root_b = _root(parent, a), _root(parent, b)
                if root_a != root_b:
                    parent[max(root_a, root_b)] = min(root_a, root_b)
            if stops[a] < stops[b]:
                a += 1
            else:
                b += 1
    area = np.zeros(n_runs, np.int64)
    on_border = np.zeros(n_runs, np.bool_)
    for r in range(rows):
        for k in range(first_run[r], first_run[r + 1]):
            root = _root(parent, k)
            area[root] += stops[k] - starts[k]
            if r == 0 or r == rows - 1 or starts[k] == 0 or stops[k] == columns:
                on_border[root] = True
    out = mask.copy()
    for r in range(rows):
        for k in range(first_run[r], first_run[r + 1]):
            root = _root(parent, k)
            if not on_border[root] and area[root] <= max_area:
                out[r, starts[k] : stops[k]] = True
    return out


@numba.njit(cache=True, nogil=True)
def far_from_labels(labels, reach):  # pragma: no cover - compiled
    """Pixels with no labelled pixel (above 0) within chessboard distance ``reach``: the
    complement of a ``2 reach + 1`` square maximum filter of ``labels > 0`` with nothing
    labelled beyond the edges, in two separable passes: each row's runs of labelled pixels
    widened by ``reach`` each side, then each column's rows counted since (and until) the
    nearest widened pixel.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels; 0 is background.
    reach : int
        Half-width of the square (px), 0 or more.

    Returns
    -------
    (M, N) ndarray of bool
    """
    rows, columns = labels.shape
    far = np.int64(reach) + 1  # "no labelled pixel within reach"; counts only grow past it
    near_in_row = np.zeros((rows, columns), np.bool_)
    for r in range(rows):
        row = labels[r]
        near = near_in_row[r]
        c = 0
        while c < columns:  # each run of labelled pixels marks itself and ``reach`` each side
            if row[c] <= 0:
                c += 1
                continue
            start = c
            while c < columns and row[c] > 0:
                c += 1
            near[max(0, start - reach) : min(columns, c + reach)] = True
    out = np.empty((rows, columns), np.bool_)
    since = np.full(columns, far, np.int64)  # rows since one near in its row, down each column
    for r in range(rows):
        near = near_in_row[r]
        for c in range(columns):
            since[c] = 0 if near[c] else since[c] + 1
            out[r, c] = since[c] > reach
    since[:] = far
    for r in range(rows - 1, -1, -1):  # and up each column
        near = near_in_row[r]
        for c in range(columns):
            since[c] = 0 if near[c] else since[c] + 1
            out[r, c] = out[r, c] and since[c] > reach
    return out


@numba.njit(cache=True, nogil=True)
def maxima_by_label(values, labels, n):  # pragma: no cover - compiled
    """``np.maximum.at(m, labels, values)`` over the pixels labelled 1..n, ``m`` starting at
    -inf, in one pass without float64 and index copies of the image: a tie takes the new
    value (``maximum(-0.0, 0.0)`` is 0.0) and a NaN, once met, stays (numpy's ``maximum``).

    Parameters
    ----------
    values : ndarray of float
        Per-pixel values (read in memory order).
    labels : ndarray of int
        Labels, ``values``' shape; 0 and labels above ``n`` are left out.
    n : int
        The highest label.

    Returns
    -------
    (n + 1,) ndarray of float64
        -inf where a label has no pixel (and at 0).
    """
    flat_values = values.ravel()
    flat_labels = labels.ravel()
    maxima = np.full(n + 1, -np.inf)
    for i in range(flat_labels.shape[0]):
        label = flat_labels[i]
        if label <= 0 or label > n:
            continue
        value = np.float64(flat_values[i])
        kept = maxima[label]
        if not (kept > value or kept != kept):  # numpy's maximum(kept, value): value on a tie
            maxima[label] = value
    return maxima


@numba.njit(cache=True, nogil=True)
def drop_dim_growth(labels, grown, values, floor, least_by_label):  # pragma: no cover - compiled
    """Undo growth into dim pixels, in place: each pixel of ``grown`` that was background in
    ``labels`` keeps its label only where ``values`` exceeds ``floor`` (compared in
    ``values``' dtype) and exceeds ``least_by_label`` of its label (compared in float64);
    others become 0.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Before the growth.
    grown : (M, N) ndarray of int32
        After it; changed in place.
    values : (M, N) ndarray of float
        The image the growth is judged on.
    floor : float
        The least value for any label, ``values``' dtype.
    least_by_label : (n + 1,) ndarray of float64
        The least value for each label.

    Returns
    -------
    (M, N) ndarray of int32
        ``grown``.
    """
    flat_labels = labels.ravel()
    flat_grown = grown.ravel()
    flat_values = values.ravel()
    for i in range(flat_labels.shape[0]):
        owner = flat_grown[i]
        if flat_labels[i] != 0 or owner <= 0:
            continue
        value = flat_values[i]
        if not (value > floor and np.float64(value) > least_by_label[owner]):
            flat_grown[i] = 0
    return grown


@numba.njit(cache=True, nogil=True)
def bounding_boxes(labels, n):  # pragma: no cover - compiled
    """Each label's bounding box, ``ndi.find_objects(labels, n)`` as numbers in one pass.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels; 0 and labels above ``n`` are left out.
    n : int
        The number of labels.

    Returns
    -------
    (n, 4) ndarray of int64
        Row start, row stop, column start, column stop of label ``i + 1`` in row ``i``; -1
        throughout for a label absent from the image.
    """
    boxes = np.full((n, 4), -1, np.int64)
    rows, columns = labels.shape
    for r in range(rows):
        for c in range(columns):
            label = labels[r, c]
            if label <= 0 or label > n:
                continue
            i = label - 1
            if boxes[i, 0] < 0:
                boxes[i, 0] = r
                boxes[i, 2] = c
                boxes[i, 3] = c + 1
            boxes[i, 1] = r + 1  # rows only grow in raster order
            if c < boxes[i, 2]:
                boxes[i, 2] = c
            if c >= boxes[i, 3]:
                boxes[i, 3] = c + 1
    return boxes


@numba.njit(cache=True, nogil=True)
def _pair_code(a, b, n):  # pragma: no cover - compiled
    return np.int64(min(a, b)) * n + np.int64(max(a, b))


@numba.njit(cache=True, nogil=True)
def touching_pair_codes(labels, n):  # pragma: no cover - compiled
    """``low * n + high`` for every two 4-connected neighbour pixels with different labels
    above 0, in one pass (a run of one pair along a row boundary written once): after
    ``np.unique``, the pairs of labels that share an edge.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels.
    n : int
        More than the largest label.

    Returns
    -------
    (K,) ndarray of int64
        Codes, with repeats.
    """
    rows, columns = labels.shape
    count = 0
    for writing in range(2):  # count, then fill
        codes = np.empty(count if writing else 0, np.int64)
        k = 0
        for r in range(rows):
            last_below = np.int64(-1)
            for c in range(columns):
                a = labels[r, c]
                if a <= 0:
                    last_below = -1
                    continue
                if c + 1 < columns:
                    b = labels[r, c + 1]
                    if b > 0 and b != a:
                        if writing:
                            codes[k] = _pair_code(a, b, n)
                        k += 1
                below = np.int64(-1)
                if r + 1 < rows:
                    b = labels[r + 1, c]
                    if b > 0 and b != a:
                        below = _pair_code(a, b, n)
                        if below != last_below:
                            if writing:
                                codes[k] = below
                            k += 1
                last_below = below
        count = k
    return codes


@numba.njit(cache=True, nogil=True)
def label_peaks_in_boxes(image, labels, boxes, min_distance, threshold, max_candidates):  # pragma: no cover
    """Each label's peaks as ``skimage.feature.peak_local_max(image, labels=labels,
    min_distance=min_distance, threshold_abs=threshold, exclude_border=False)`` finds them,
    label after label, each on its bounding box ``boxes[i - 1]`` = (row start, row stop,
    column start, column stop; a negative start for an absent label).

    skimage's steps on each box: pixels of other labels set to the dtype's lowest value; a
    candidate equals the maximum of its ``2 min_distance + 1`` window (clipped to the box);
    if every pixel of the label is one (a flat object), the candidates are the pixels an
    opening removes instead; candidates must exceed ``threshold``; ordered by decreasing
    value, ties in raster order (a stable sort); kept greedily, highest first, unless nearer
    than ``min_distance`` (Chebyshev) to one kept. A label with more than ``max_candidates``
    candidates is left to skimage (its KD-tree thinning works in batches).

    Parameters
    ----------
    image : (M, N) ndarray of float
        The surface.
    labels : (M, N) ndarray of int
        Labels 1..n.
    boxes : (n, 4) ndarray of int64
        Each label's bounding box.
    min_distance : int
        Least distance between peaks (px).
    threshold : float
        Peaks lie above it.
    max_candidates : int
        More candidates than this: the label is returned in ``delegated``.

    Returns
    -------
    peaks : (K, 3) ndarray of int64
        Label, row and column of each peak, in skimage's order.
    delegated : (D,) ndarray of int64
        Labels left to skimage.
    """
    lowest = np.finfo(image.dtype).min
    capacity = 1024
    peaks = np.empty((capacity, 3), np.int64)
    n_peaks = 0
    delegated = np.empty(boxes.shape[0], np.int64)
    n_delegated = 0
    size = 2 * min_distance + 1
    for index in range(boxes.shape[0]):
        r0, r1, c0, c1 = boxes[index, 0], boxes[index, 1], boxes[index, 2], boxes[index, 3]
        if r0 < 0:
            continue
        label = index + 1
        rows, columns = r1 - r0, c1 - c0
        inside = np.empty((rows, columns), np.bool_)
        values = np.empty((rows, columns), image.dtype)
        for r in range(rows):
            for c in range(columns):
                inside[r, c] = labels[r0 + r, c0 + c] == label
                values[r, c] = image[r0 + r, c0 + c] if inside[r, c] else lowest
        candidate = np.empty((rows, columns), np.bool_)
        if rows * columns == 1:
            candidate[0, 0] = values[0, 0] > threshold
        else:
            top = _window_maximum(values, size // 2)
            flat = True
            for r in range(rows):
                for c in range(columns):
                    candidate[r, c] = values[r, c] == top[r, c]
                    if inside[r, c] and not candidate[r, c]:
                        flat = False
            if flat:
                candidate = _isolated_pixels(inside)
            for r in range(rows):
                for c in range(columns):
                    candidate[r, c] = candidate[r, c] and values[r, c] > threshold
        n = 0
        for r in range(rows):
            for c in range(columns):
                n += candidate[r, c]
        if n > max_candidates:
            delegated[n_delegated] = label
            n_delegated += 1
            continue
        found_rows = np.empty(n, np.int64)
        found_columns = np.empty(n, np.int64)
        found_values = np.empty(n, image.dtype)
        k = 0
        for r in range(rows):
            for c in range(columns):
                if candidate[r, c]:
                    # insertion sort by decreasing value; equal values stay in raster order
                    j = k
                    while j > 0 and found_values[j - 1] < values[r, c]:
                        found_rows[j] = found_rows[j - 1]
                        found_columns[j] = found_columns[j - 1]
                        found_values[j] = found_values[j - 1]
                        j -= 1
                    found_rows[j] = r
                    found_columns[j] = c
                    found_values[j] = values[r, c]
                    k += 1
        kept = np.zeros(n, np.bool_)
        for i in range(n):
            keep = True
            if min_distance > 1:
                for j in range(i):
                    if (
                        kept[j]
                        and max(abs(found_rows[i] - found_rows[j]), abs(found_columns[i] - found_columns[j]))
                        < min_distance
                    ):
                        keep = False
                        break
            kept[i] = keep
            if keep:
                if n_peaks == capacity:
                    capacity *= 2
                    grown = np.empty((capacity, 3), np.int64)
                    grown[:n_peaks] = peaks[:n_peaks]
                    peaks = grown
                peaks[n_peaks, 0] = label
                peaks[n_peaks, 1] = r0 + found_rows[i]
                peaks[n_peaks, 2] = c0 + found_columns[i]
                n_peaks += 1
    return peaks[:n_peaks].copy(), delegated[:n_delegated].copy()


@numba.njit(cache=True, nogil=True)
def _queued_before(values, ages, a, b):  # pragma: no cover - compiled
    """Whether queue entry ``a`` is flooded before ``b``: lower value, then earlier queued."""
    if values[a] != values[b]:
        return values[a] < values[b]
    return ages[a] < ages[b]


@numba.njit(cache=True, nogil=True)
def _swap_entries(values, ages, places, a, b):  # pragma: no cover - compiled
    values[a], values[b] = values[b], values[a]
    ages[a], ages[b] = ages[b], ages[a]
    places[a], places[b] = places[b], places[a]


@numba.njit(cache=True, nogil=True)
def _queue_push(values, ages, places, items, value, age, place):  # pragma: no cover - compiled
    """Append an entry to the binary heap of ``items`` entries and sift it up (heapq's rule)."""
    child = items
    values[child], ages[child], places[child] = value, age, place
    while child > 0:
        parent = (child - 1) // 2
        if not _queued_before(values, ages, child, parent):
            break
        _swap_entries(values, ages, places, child, parent)
        child = parent
    return items + 1


@numba.njit(cache=True, nogil=True)
def _queue_pop(values, ages, places, items):  # pragma: no cover - compiled
    """Remove the first entry (left at index ``items - 1``) and sift the last one down."""
    items -= 1
    if items == 0:
        return items
    _swap_entries(values, ages, places, 0, items)
    i = 0
    while True:
        left = 2 * i + 1
        if left >= items:
            break
        first = left if _queued_before(values, ages, left, i) else i
        if left + 1 < items and _queued_before(values, ages, left + 1, first):
            first = left + 1
        if first == i:
            break
        _swap_entries(values, ages, places, i, first)
        i = first
    return items


@numba.njit(cache=True, nogil=True)
def flood_components(surface, markers, components, boxes, wanted, out):  # pragma: no cover - compiled
    """Marker-based watershed of each wanted component on its own bounding box, written to
    ``out``: for component ``i + 1`` with ``wanted[i]``, the labels
    ``skimage.segmentation.watershed(surface[box], markers[box] * inside, mask=inside)`` gives
    (``inside`` the component's pixels of its box, 4-connected), bit for bit.

    skimage's flooding, step for step (``watershed_raveled`` without compactness or lines):
    the component's markers are queued in raster order at their own value and age 0; the
    queue is a binary heap ordered by value, then age (strictly: the heap's own order settles
    full ties); each entry taken off the queue labels its unlabelled neighbours in the order
    up, left, right, down, each queued with age one more than the last and value the larger
    of its own and the entry's (so no pixel is flooded below the level that reached it).
    Tested against skimage on random surfaces with plateaus and ties in
    ``tests/segment/test_segment.py``.

    Parameters
    ----------
    surface : (M, N) ndarray of float
        The surface flooded.
    markers : (M, N) ndarray of int
        Marker labels (0: none).
    components : (M, N) ndarray of int
        Connected components 1..n.
    boxes : (n, 4) ndarray of int64
        Each component's bounding box (row start, row stop, column start, column stop; a
        negative start for an absent component).
    wanted : (n,) ndarray of bool
        The components flooded; ``out`` is left as it is elsewhere.
    out : (M, N) ndarray of int32
        Written in place inside the wanted components.
    """
    capacity = 0
    for i in range(boxes.shape[0]):
        if wanted[i] and boxes[i, 0] >= 0:
            capacity = max(capacity, (boxes[i, 1] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 2]))
    values = np.empty(capacity, np.float64)  # each pixel is queued at most once
    ages = np.empty(capacity, np.int64)
    places = np.empty(capacity, np.int64)  # raster index within the box
    for i in range(boxes.shape[0]):
        r0, r1, c0, c1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        if not wanted[i] or r0 < 0:
            continue
        component = i + 1
        width = c1 - c0
        items = 0
        for r in range(r0, r1):
            for c in range(c0, c1):
                if components[r, c] != component:
                    continue
                out[r, c] = markers[r, c]
                if markers[r, c] != 0:
                    items = _queue_push(
                        values, ages, places, items, np.float64(surface[r, c]), 0, (r - r0) * width + c - c0
                    )
        age = 1
        while items > 0:
            level, place = values[0], places[0]
            items = _queue_pop(values, ages, places, items)
            r, c = r0 + place // width, c0 + place % width
            for step in range(4):
                nr, nc = (
                    (r - 1, c) if step == 0 else (r, c - 1) if step == 1 else (r, c + 1) if step == 2 else (r + 1, c)
                )
                if nr < r0 or nr >= r1 or nc < c0 or nc >= c1 or components[nr, nc] != component or out[nr, nc] != 0:
                    continue
                age += 1
                out[nr, nc] = out[r, c]
                value = max(np.float64(surface[nr, nc]), level)
                items = _queue_push(values, ages, places, items, value, age, (nr - r0) * width + nc - c0)


@numba.njit(cache=True, nogil=True)
def uniform_histogram(values, first, denominator, n_bins, edges):  # pragma: no cover - compiled
    """Counts of ``values`` in ``n_bins`` equal bins from ``first`` over ``denominator``, as
    ``numpy.histogram(values, n_bins, range)`` counts them: the bin index
    ``int((v - first) / denominator * n_bins)`` in the values' own dtype (numpy computes in
    the edges' dtype, here the same), the last edge in the last bin, then one bin down or up
    where the computed index disagrees with ``edges`` (numpy's correction for rounding).
    Values outside the range are not counted.

    Parameters
    ----------
    values : ndarray of float
        Any shape (read in memory order).
    first, denominator : float
        The first edge and the range's width, ``values``' dtype.
    n_bins : int
        Bins.
    edges : (n_bins + 1,) ndarray
        ``numpy.histogram_bin_edges`` of the same range, ``values``' dtype.

    Returns
    -------
    (n_bins,) ndarray of int64
    """
    flat = values.ravel()
    counts = np.zeros(n_bins, np.int64)
    scale = edges.dtype.type(n_bins)
    last = edges[n_bins]
    for i in range(flat.shape[0]):
        v = flat[i]
        if not (v >= first and v <= last):
            continue
        index = int(((v - first) / denominator) * scale)
        if index == n_bins:
            index -= 1
        if v < edges[index]:
            index -= 1
        elif index != n_bins - 1 and v >= edges[index + 1]:
            index += 1
        counts[index] += 1
    return counts


@numba.njit(cache=True, nogil=True)
def horizontal_difference_counts(image, offset):  # pragma: no cover - compiled
    """Counts of the differences between horizontal neighbours of an integer image,
    ``image[r, c + 1] - image[r, c] + offset``, each an index in ``[0, 2 offset)``: what
    ``np.bincount(np.diff(image.astype(np.int32), axis=1).ravel() + offset)`` gives, in one
    pass without the difference image.

    Parameters
    ----------
    image : (M, N) ndarray of int
        8- or 16-bit pixels.
    offset : int
        More than any difference's magnitude (``2 ** bits``).

    Returns
    -------
    (2 offset,) ndarray of int64
    """
    counts = np.zeros(2 * offset, np.int64)
    rows, columns = image.shape
    for r in range(rows):
        for c in range(columns - 1):
            counts[np.int64(image[r, c + 1]) - np.int64(image[r, c]) + offset] += 1
    return counts


@numba.njit(cache=True, nogil=True)
def label_counts_and_sums_of_difference(image, surface, labels, exclude, size):  # pragma: no cover - compiled
    """Per label, the pixel count and the sum of ``float64(image) - float64(surface)`` over
    the pixels with a label above 0 and, where ``exclude`` has the image's shape, ``exclude``
    0 there, in pixel order: what ``np.bincount`` without and with ``weights=`` gives over
    those pixels (the same additions in the same order), scanning the label image itself
    rather than a list of its pixels (no index arrays: 8 bytes per labelled pixel saved). A
    ``surface`` of one value is that value everywhere.

    A label's pixels come in runs along rows: each run is added up in a register and stored
    once, the same additions in the same order as adding into the table pixel by pixel. The
    tables have a fixed length ``size`` (a label beyond it is an error, not a reason to grow
    them): tables that could be replaced inside the loop kept numba from holding the run in
    registers (39 ms a pass over a dense 2048 px field, against 3 ms).

    Parameters
    ----------
    image : (M, N) ndarray
        Intensities.
    surface : (M, N) or (1,) ndarray of float
        What is subtracted.
    labels : (M, N) ndarray of int
        Labels, 0 (not measured) to ``size - 1``.
    exclude : (M, N) or (1,) ndarray
        Pixels left out where not 0 (a cytoplasm: the nuclei); a one-element array: none.
    size : int
        The tables' length: more than the largest label.

    Returns
    -------
    counts : (size,) ndarray of int64
    sums : (size,) ndarray of float64
        Indexed by label; 0 at label 0.
    """
    values = image.ravel()
    below = surface.ravel()
    flat = labels.ravel()
    left_out = exclude.ravel()
    constant = below.shape[0] == 1 and values.shape[0] != 1
    use_exclude = left_out.shape[0] == flat.shape[0] and flat.shape[0] != 1
    size = max(size, 1)
    counts = np.zeros(size, np.int64)
    sums = np.zeros(size, np.float64)
    current, running, n = 0, 0.0, 0
    for i in range(flat.shape[0]):
        label = flat[i]
        if label == 0 or (use_exclude and left_out[i] != 0):
            continue
        if np.uint64(label) >= size:  # a negative label wraps to a huge one
            raise ValueError("label_counts_and_sums_of_difference needs labels of 0 or more, under size")
        if label != current:
            sums[current], counts[current] = running, n
            current = label
            running, n = sums[current], counts[current]
        n += 1
        running += np.float64(values[i]) - np.float64(below[0] if constant else below[i])
    sums[current], counts[current] = running, n
    counts[0], sums[0] = 0, 0.0  # label 0 is not measured (its slot held no run but the first)
    return counts, sums


@numba.njit(cache=True, nogil=True)
def compartment_counts_and_sums_of_difference(image, surface, nuclei, cells, size):  # pragma: no cover
    """Per label, the pixel count and the sum of ``float64(image) - float64(surface)`` over
    each of a field's three compartments, in one pass over the two label images: row 0 the
    nucleus (``nuclei`` > 0), row 1 the cytoplasm (``cells`` > 0 where ``nuclei`` is 0), row
    2 the whole cell (``cells`` > 0). Each row is what
    :func:`label_counts_and_sums_of_difference` gives for that compartment (``nuclei``;
    ``cells`` excluding ``nuclei``; ``cells``): the same additions in the same pixel order,
    so the same float64 sums bit for bit, with the image and the surface read once instead
    of three times.

    Parameters
    ----------
    image : (M, N) ndarray
        Intensities.
    surface : (M, N) or (1,) ndarray of float
        What is subtracted (one value: that value everywhere).
    nuclei, cells : (M, N) ndarray of int
        Nucleus and cell labels, 0 to ``size - 1``.
    size : int
        The tables' length: more than the largest label of either.

    Returns
    -------
    counts : (3, size) ndarray of int64
    sums : (3, size) ndarray of float64
        Indexed by compartment, then label; 0 at label 0.
    """
    values = image.ravel()
    below = surface.ravel()
    nucleus_flat = nuclei.ravel()
    cell_flat = cells.ravel()
    constant = below.shape[0] == 1 and values.shape[0] != 1
    size = max(size, 1)
    counts = np.zeros((3, size), np.int64)
    sums = np.zeros((3, size), np.float64)
    # the three runs in flight, as scalars that numba keeps in registers (held in arrays of
    # three, the pass took 7 times as long)
    current_n, running_n, count_n = 0, 0.0, 0  # nucleus
    current_y, running_y, count_y = 0, 0.0, 0  # cytoplasm
    current_c, running_c, count_c = 0, 0.0, 0  # cell
    for i in range(cell_flat.shape[0]):
        nucleus, cell = nucleus_flat[i], cell_flat[i]
        if nucleus == 0 and cell == 0:
            continue
        if np.uint64(nucleus) >= size or np.uint64(cell) >= size:  # a negative label wraps to a huge one
            raise ValueError("compartment_counts_and_sums_of_difference needs labels of 0 or more, under size")
        difference = np.float64(values[i]) - np.float64(below[0] if constant else below[i])
        if nucleus != 0:
            if nucleus != current_n:
                sums[0, current_n], counts[0, current_n] = running_n, count_n
                current_n = nucleus
                running_n, count_n = sums[0, current_n], counts[0, current_n]
            count_n += 1
            running_n += difference
        elif cell != 0:
            if cell != current_y:
                sums[1, current_y], counts[1, current_y] = running_y, count_y
                current_y = cell
                running_y, count_y = sums[1, current_y], counts[1, current_y]
            count_y += 1
            running_y += difference
        if cell != 0:
            if cell != current_c:
                sums[2, current_c], counts[2, current_c] = running_c, count_c
                current_c = cell
                running_c, count_c = sums[2, current_c], counts[2, current_c]
            count_c += 1
            running_c += difference
    sums[0, current_n], counts[0, current_n] = running_n, count_n
    sums[1, current_y], counts[1, current_y] = running_y, count_y
    sums[2, current_c], counts[2, current_c] = running_c, count_c
    counts[:, 0], sums[:, 0] = 0, 0.0  # label 0 is not measured
    return counts, sums


@numba.njit(cache=True, nogil=True)
def _pairwise_leaf(values, start, n):  # pragma: no cover - compiled
    """numpy's pairwise sum of at most 128 values: under 8 one after another from -0.0,
    else eight interleaved partial sums combined as a tree, then the rest one by one."""
    if n < 8:
        total = values.dtype.type(-0.0)
        for i in range(n):
            total += values[start + i]
        return total
    r0, r1, r2, r3 = values[start], values[start + 1], values[start + 2], values[start + 3]
    r4, r5, r6, r7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
    i = 8
    while i < n - (n % 8):
        r0 += values[start + i]
        r1 += values[start + i + 1]
        r2 += values[start + i + 2]
        r3 += values[start + i + 3]
        r4 += values[start + i + 4]
        r5 += values[start + i + 5]
        r6 += values[start + i + 6]
        r7 += values[start + i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += values[start + i]
        i += 1
    return total


@numba.njit(cache=True, nogil=True)
def _pairwise_sum(values, start, n):  # pragma: no cover - compiled
    """numpy's pairwise summation of ``values[start:start + n]`` (``pairwise_sum`` in its
    loops): runs over 128 values are the sum of their two halves, split at a multiple of 8.
    Written with an explicit stack: numba's on-disk cache mishandles recursive functions
    (a crash on the second run: numba issues 6061, 6713)."""
    if n <= 128:
        return _pairwise_leaf(values, start, n)
    task_start = np.empty(128, np.int64)
    task_length = np.empty(128, np.int64)
    task_combine = np.empty(128, np.bool_)
    partial = np.empty(128, values.dtype)
    n_tasks, n_partial = 1, 0
    task_start[0], task_length[0], task_combine[0] = start, n, False
    while n_tasks > 0:
        n_tasks -= 1
        s, m = task_start[n_tasks], task_length[n_tasks]
        if task_combine[n_tasks]:  # both halves are done: left + right
            partial[n_partial - 2] = partial[n_partial - 2] + partial[n_partial - 1]
            n_partial -= 1
        elif m <= 128:
            partial[n_partial] = _pairwise_leaf(values, s, m)
            n_partial += 1
        else:
            half = m // 2
            half -= half % 8
            task_start[n_tasks], task_length[n_tasks], task_combine[n_tasks] = s, m, True
            task_start[n_tasks + 1], task_length[n_tasks + 1], task_combine[n_tasks + 1] = s + half, m - half, False
            task_start[n_tasks + 2], task_length[n_tasks + 2], task_combine[n_tasks + 2] = s, half, False
            n_tasks += 3
    return partial[0]


@numba.njit(cache=True, nogil=True)
def block_means(image, rows_factor, columns_factor):  # pragma: no cover - compiled
    """``skimage.transform.downscale_local_mean(image, (rows_factor, columns_factor))`` of a
    float image, bit for bit: the image padded with zeros at its far ends to whole blocks;
    numpy's mean over each block adds each block row by its pairwise summation, then the
    row sums one after another from 0, in the image's dtype, and divides by the block's size.

    Parameters
    ----------
    image : (M, N) ndarray of float
        The image.
    rows_factor, columns_factor : int
        Block size.

    Returns
    -------
    (ceil(M / rows_factor), ceil(N / columns_factor)) ndarray, ``image``'s dtype
    """
    rows, columns = image.shape
    out_rows = (rows + rows_factor - 1) // rows_factor
    out_columns = (columns + columns_factor - 1) // columns_factor
    padded_columns = out_columns * columns_factor
    out = np.empty((out_rows, out_columns), image.dtype)
    zero = image.dtype.type(0)
    count = image.dtype.type(rows_factor * columns_factor)
    line = np.zeros(padded_columns, image.dtype)  # one image row, zeros beyond its end
    totals = np.empty(out_columns, image.dtype)
    partial = np.empty(out_columns, image.dtype)
    negative_zero = image.dtype.type(-0.0)
    if out_columns == 1:  # then each block is contiguous, and numpy sums it as one run
        block = np.zeros(rows_factor * columns_factor, image.dtype)
        for i in range(out_rows):
            block[:] = zero
            for a in range(rows_factor):
                r = i * rows_factor + a
                if r < rows:
                    block[a * columns_factor : a * columns_factor + columns] = image[r]
            out[i, 0] = (zero + _pairwise_sum(block, 0, block.shape[0])) / count
        return out
    for i in range(out_rows):
        totals[:] = zero
        for a in range(rows_factor):
            r = i * rows_factor + a
            if r < rows:
                line[:columns] = image[r]
            else:
                line[:columns] = zero
            if columns_factor < 8:  # the usual case: each block row summed from -0.0 in order
                for j in range(out_columns):
                    partial[j] = negative_zero
                for b in range(columns_factor):
                    column = line[b::columns_factor]  # not line[j * f + b] (module docstring)
                    for j in range(out_columns):
                        partial[j] += column[j]
                for j in range(out_columns):
                    totals[j] += partial[j]
                continue
            for j in range(out_columns):
                if columns_factor <= 128:  # without the stack's set-up
                    totals[j] += _pairwise_leaf(line, j * columns_factor, columns_factor)
                else:
                    totals[j] += _pairwise_sum(line, j * columns_factor, columns_factor)
        for j in range(out_columns):
            out[i, j] = totals[j] / count
    return out


@numba.njit(cache=True, nogil=True)
def count_values(values, minlength):  # pragma: no cover - compiled
    """``np.bincount(values.ravel(), minlength=minlength)`` of non-negative integers, in one
    pass without numpy's cast of the whole array to intp.

    Parameters
    ----------
    values : ndarray of int
        No value negative (any shape, read in memory order).
    minlength : int
        Least length of the result.

    Returns
    -------
    (max(values.max() + 1, minlength),) ndarray of int64
    """
    flat = values.ravel()
    if flat.shape[0] == 0:
        return np.zeros(minlength, np.int64)
    # the extremes by max and min without branches (LLVM vectorises them), in values' dtype
    top = flat[0]
    least = flat[0]
    for i in range(1, flat.shape[0]):
        top = max(top, flat[i])
        least = min(least, flat[i])
    if least < 0:
        raise ValueError("count_values needs values of 0 or more")
    counts = np.zeros(max(np.int64(top) + 1, minlength), np.int64)
    # most pixels of a label image are background: counted in a register, not by adding to
    # one memory cell pixel after pixel (each add waiting on the last; 2x faster)
    zeros = 0
    for i in range(flat.shape[0]):
        value = flat[i]
        if value == 0:
            zeros += 1
        else:
            counts[np.uint64(value)] += 1  # unsigned index: module docstring
    counts[0] += zeros
    return counts


@numba.njit(cache=True, nogil=True)
def count_and_sum_by_label(labels, values, size):  # pragma: no cover - compiled
    """Pixels and sum of ``values`` (float64, in pixel order) per label ``0..size-1``:
    ``np.bincount(labels.ravel(), minlength=size)`` and ``np.bincount(labels.ravel(),
    weights=values.ravel(), minlength=size)``, the same additions in the same order, in one
    pass.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels under ``size``, none negative.
    values : (M, N) ndarray
        Per-pixel values.
    size : int
        Length of the results.

    Returns
    -------
    counts : (size,) ndarray of int64
    sums : (size,) ndarray of float64
    """
    flat_labels = labels.ravel()
    flat_values = values.ravel()
    for i in range(flat_labels.shape[0]):
        if flat_labels[i] < 0 or flat_labels[i] >= size:
            raise ValueError("count_and_sum_by_label needs labels from 0 to size - 1")
    counts = np.zeros(size, np.int64)
    sums = np.zeros(size, np.float64)
    if flat_labels.shape[0] == 0:
        return counts, sums
    # runs of one label (background, above all) are summed in registers and stored once: the
    # same additions in the same order as adding into ``sums`` pixel by pixel
    current = flat_labels[0]
    running, n = 0.0, 0
    for i in range(flat_labels.shape[0]):
        label = flat_labels[i]
        if label != current:
            sums[current], counts[current] = running, n
            current = label
            running, n = sums[current], counts[current]
        n += 1
        running += np.float64(flat_values[i])
    sums[current], counts[current] = running, n
    return counts, sums


@numba.njit(cache=True, nogil=True)
def look_up(table, values):  # pragma: no cover - compiled
    """``table[values]`` for an integer array of indices into ``table`` (numpy's fancy
    indexing, in one pass without its intp copy of the indices).

    Parameters
    ----------
    table : (K,) ndarray
        The lookup table.
    values : ndarray of int
        Indices, each in ``[0, K)``.

    Returns
    -------
    ndarray, ``values``' shape, ``table``'s dtype
    """
    flat = values.ravel()
    out = np.empty(flat.shape[0], table.dtype)
    size = table.shape[0]
    for i in range(flat.shape[0]):
        v = flat[i]
        if v < 0 or v >= size:
            raise ValueError("look_up needs indices inside the table")
        out[i] = table[v]
    return out.reshape(values.shape)


@numba.njit(cache=True, nogil=True)
def label_moment_sums(labels, size):  # pragma: no cover - compiled
    """Per label above 0, the pixel count and the sums of row, column, row^2, column^2 and
    row x column over its pixels, in float64 and in pixel order: what
    ``np.bincount(labels.ravel(), weights=...)`` gives for each, in one pass over the label
    image without the coordinate and product arrays.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels from 0 (not measured) to ``size - 1``.
    size : int
        Length of the results.

    Returns
    -------
    (6, size) ndarray of float64
        Count, sum of rows, of columns, of rows^2, of columns^2, of rows x columns (0 for
        label 0).
    """
    sums = np.zeros((6, size), np.float64)
    for r in range(labels.shape[0]):
        row = np.float64(r)
        line = labels[r]
        for c in range(line.shape[0]):
            label = line[c]
            if label == 0:
                continue
            if label < 0 or label >= size:
                raise ValueError("label_moment_sums needs labels from 0 to size - 1")
            column = np.float64(c)
            sums[0, label] += 1.0
            sums[1, label] += row
            sums[2, label] += column
            sums[3, label] += row * row
            sums[4, label] += column * column
            sums[5, label] += row * column
    return sums


@numba.njit(cache=True, nogil=True)
def masked_difference(image, surface, mask):  # pragma: no cover - compiled
    """``image.ravel()[i].astype(float) - surface.ravel()[i]`` at every True pixel ``i`` of
    ``mask``, in pixel order (``np.flatnonzero(mask)``'s), without the index or gathered
    arrays. A ``surface`` of one value is that value everywhere.

    Parameters
    ----------
    image : (M, N) ndarray
        Intensities.
    surface : (M, N) or (1,) ndarray of float
        What is subtracted.
    mask : (M, N) ndarray of bool
        The pixels wanted.

    Returns
    -------
    (K,) ndarray of float64
    """
    values = image.ravel()
    below = surface.ravel()
    chosen = mask.ravel()
    constant = below.shape[0] == 1 and values.shape[0] != 1
    n = 0
    for i in range(chosen.shape[0]):
        n += chosen[i]
    out = np.empty(n, np.float64)
    k = 0
    for i in range(chosen.shape[0]):
        if chosen[i]:
            out[k] = np.float64(values[i]) - np.float64(below[0] if constant else below[i])
            k += 1
    return out


@numba.njit(cache=True, nogil=True)
def _shifted_word(words, i, d):  # pragma: no cover - compiled
    """Word ``i`` of a packed row whose bit for column ``c`` is the row's bit for ``c + d``
    (bits beyond the row's ends read 0); bit ``j`` of word ``i`` is column ``64 i + j``."""
    n = words.shape[0]
    q = d // 64  # floor division: negative shifts borrow from the words before
    s = d - 64 * q
    lo = i + q
    first = words[lo] if 0 <= lo < n else np.uint64(0)
    if s == 0:
        return first
    second = words[lo + 1] if 0 <= lo + 1 < n else np.uint64(0)
    return (first >> np.uint64(s)) | (second << np.uint64(64 - s))


@numba.njit(cache=True, nogil=True)
def _centred_runs(source, w, erode, work, out):  # pragma: no cover - compiled
    """Into ``out``, the packed row ``source`` with each bit the AND (``erode``) or the OR of
    the bits within ``w`` columns of it: runs of ``2 w + 1`` columns combined by doubling
    (a run of length ``2 L`` is two runs of length ``L`` side by side), then centred."""
    n = source.shape[0]
    length = 2 * w + 1
    work[:] = source
    span = 1
    while span < length:
        step = min(span, length - span)  # the last step overlaps: harmless for AND and OR
        for i in range(n):
            out[i] = _shifted_word(work, i, step)
        for i in range(n):
            work[i] = work[i] & out[i] if erode else work[i] | out[i]
        span += step
    for i in range(n):
        out[i] = _shifted_word(work, i, -w)


@numba.njit(cache=True, nogil=True)
def binary_opening_packed(mask, half_widths):  # pragma: no cover - compiled
    """Binary opening of ``mask`` by a symmetric structuring element given as one centred
    horizontal run per row offset (``half_widths[k]`` for offset ``k - h``), pixels beyond the
    image background: ``scipy.ndimage.binary_opening(mask, structure=disk)`` for a disk.

    Rows are packed 64 pixels to a word. Erosion: a row's pixels whose whole run of
    ``2 w + 1`` columns is set (ANDs of shifted words, by doubling: about ``log2(2 w + 1)``
    word operations per 64 pixels), ANDed over the row offsets (a row offset beyond the image
    erodes everything). Dilation: the eroded rows' runs ORed the same way. Exact (bits).

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        Foreground.
    half_widths : (2 h + 1,) ndarray of int64
        The element's half-width on each row offset, top to bottom.

    Returns
    -------
    (M, N) ndarray of bool
    """
    rows, columns = mask.shape
    reach = half_widths.shape[0] // 2
    # zero words beyond both ends, wider than any run: a run that starts left of the image (a
    # dilation's, reaching in) is held like any other
    margin = (half_widths.max() + 63) // 64 + 1
    n_words = (columns + 63) // 64 + 2 * margin
    offset = 64 * margin
    packed = np.zeros((rows, n_words), np.uint64)
    for r in range(rows):
        for c in range(columns):
            if mask[r, c]:
                b = c + offset
                packed[r, b // 64] |= np.uint64(1) << np.uint64(b % 64)
    # each distinct half-width's runs of every row, found once (a row serves 2 h + 1 rows)
    widths = np.unique(half_widths)
    slot = np.empty(half_widths.shape[0], np.int64)
    for k in range(half_widths.shape[0]):
        slot[k] = np.searchsorted(widths, half_widths[k])
    work = np.empty(n_words, np.uint64)
    runs = np.empty((rows, widths.shape[0], n_words), np.uint64)
    for r in range(rows):
        for j in range(widths.shape[0]):
            _centred_runs(packed[r], widths[j], True, work, runs[r, j])
    eroded = np.zeros((rows, n_words), np.uint64)
    for r in range(rows):
        if r < reach or r + reach >= rows:
            continue  # the element reaches past the top or bottom: nothing survives
        acc = eroded[r]
        acc[:] = ~np.uint64(0)
        for k in range(2 * reach + 1):
            source = runs[r + k - reach, slot[k]]
            for i in range(n_words):
                acc[i] &= source[i]
    for r in range(rows):
        for j in range(widths.shape[0]):
            _centred_runs(eroded[r], widths[j], False, work, runs[r, j])
    opened = np.zeros((rows, n_words), np.uint64)
    for r in range(rows):
        acc = opened[r]
        for k in range(2 * reach + 1):
            source_row = r + k - reach
            if source_row < 0 or source_row >= rows:
                continue
            source = runs[source_row, slot[k]]
            for i in range(n_words):
                acc[i] |= source[i]
    out = np.empty((rows, columns), np.bool_)
    for r in range(rows):
        for c in range(columns):
            b = c + offset
            out[r, c] = (opened[r, b // 64] >> np.uint64(b % 64)) & np.uint64(1) != 0
    return out


@numba.njit(cache=True, nogil=True)
def farthest_from_segments(coords, starts, ends, cos, sin, segment_dist):  # pragma: no cover - compiled
    """The inner step of ``skimage.measure.approximate_polygon`` (Douglas-Peucker) for many
    segments at once: for segment ``k`` (points ``starts[k]`` to ``ends[k]`` of ``coords``,
    (K, 2) float64 rows, columns), each point between its ends is measured against it
    (perpendicular distance where it projects onto the segment, else the distance to the
    nearer end, by skimage's expressions in skimage's order), and the first farthest point's
    index and distance are returned (-1 and -1.0 for a segment with no point between).

    The segments' ``cos``, ``sin`` (of minus the angle ``arctan2(dr, dc)``) and
    ``segment_dist`` come from the caller, computed by numpy as skimage computes them: numba's
    trigonometry differs from numpy's in the last bit (1,553 of 20,000 angles here), and this
    keeps the result bit for bit. Tested against skimage on real nucleus outlines."""
    index = np.full(starts.size, -1, np.int64)
    farthest = np.full(starts.size, -1.0)
    for k in range(starts.size):
        start, end = starts[k], ends[k]
        r0, c0 = coords[start, 0], coords[start, 1]
        r1, c1 = coords[end, 0], coords[end, 1]
        dr = r1 - r0
        dc = c1 - c0
        for i in range(start + 1, end):
            dr0 = coords[i, 0] - r0
            dc0 = coords[i, 1] - c0
            dr1 = coords[i, 0] - r1
            dc1 = coords[i, 1] - c1
            if dr0 * dr + dc0 * dc > 0 and -dr1 * dr - dc1 * dc > 0:
                dist = np.abs(coords[i, 0] * cos[k] + coords[i, 1] * sin[k] - segment_dist[k])
            else:
                dist = min(np.sqrt(dc0 * dc0 + dr0 * dr0), np.sqrt(dc1 * dc1 + dr1 * dr1))
            if dist > farthest[k]:
                farthest[k], index[k] = dist, i
    return index, farthest
