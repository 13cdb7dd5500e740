"""The ``relevance`` accessor on ``xarray.DataArray``: conservative pooling of relevance.

Importing this module registers ``R.relevance``. Every method returns a new DataArray,
keeps the attrs and the per-sample coords (``prediction``, ``target``, ``absorbed``) and
appends what it did to ``attrs["pooling"]``, a "; "-separated history such as
``"sum over time; groups on channel (2 groups + remainder 'other')"``.

Pooling here always means *summing*: sums of an f(x) decomposition are again an f(x)
decomposition, so the ledger (relevance + absorbed == prediction) still holds afterwards.
Means and maxima do not conserve anything and are deliberately not offered.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import xarray as xr

from . import display, grouping, summing, windowing
from .contract import find_batch_dim
from .ledger import check_ledger, ledger_residual

__all__ = ["RelevanceAccessor"]


@xr.register_dataarray_accessor("relevance")
class RelevanceAccessor:
    """Conservative operations on a relevance result: ``R.relevance.<method>(...)``.

    The batch dim is the dim that carries the ``prediction`` coord. After pooling over the
    batch dim, ``prediction`` is a scalar coord and the result has no batch dim.
    """

    def __init__(self, R: xr.DataArray) -> None:
        self._R = R

    # ---------------------------------------------------------------- helpers

    @property
    def batch_dim(self) -> str | None:
        """Name of the dim carrying ``prediction`` (None if the batch was pooled away)."""
        return find_batch_dim(self._R)

    # ---------------------------------------------------------------- pooling

    def total(self) -> xr.DataArray:
        """Sum over every non-batch dim.

        Returns
        -------
        xarray.DataArray
            Dims ``(batch,)``: per sample, the total relevance, which for an f(x)
            decomposition equals ``prediction - absorbed``. For ``decomposes ==
            "squared gradient norm"`` it is the squared gradient norm.
        """
        return summing.total(self._R)

    def pool(self, *dims: str) -> xr.DataArray:
        """Sum relevance over the named dims.

        Summing conserves: the per-sample total and the ledger are unchanged. For
        ``decomposes == "squared gradient norm"`` the sums conserve the squared gradient
        norm instead (the ``decomposes`` attr is kept and says so); for ``"none"`` a
        :class:`~sciexplain.result.DecompositionWarning` is emitted.

        Pooling over the batch dim happens only when it is named explicitly. The per-sample
        coords ``prediction`` and ``absorbed`` are then summed as well, so the ledger still
        holds for the pooled batch; ``target`` is kept only if it is the same for all
        samples; other per-sample coords are dropped.

        Parameters
        ----------
        *dims : str
            Dims to sum over.

        Raises
        ------
        ValueError
            If no dim is given, a dim is repeated or a dim does not exist.
        """
        return summing.pool(self._R, *dims)

    def group(
        self,
        dim: str,
        groups: Mapping[Hashable, Sequence[Any]] | None = None,
        *,
        by: str | None = None,
        coord: str | None = None,
        remainder: Any = "other",
        name: str | None = None,
    ) -> xr.DataArray:
        """Sum the entries of ``dim`` by groups of coordinate values.

        Parameters
        ----------
        dim : str
            The dim to group, e.g. ``"channel"``.
        groups : mapping of label -> sequence of coordinate values
            Each group sums the entries of ``dim`` whose ``coord`` value is in its list.
            Groups must not overlap (an entry would be counted twice).
        by : str, optional
            Instead of ``groups``: the name of a coord of integer group indices, either along
            ``dim`` or 2-d along (batch dim, ``dim``) so that every sample has its own grouping
            (subword tokens -> words per document). Entry ``k`` of the result sums the entries
            whose index is ``k``; entries with a negative index (e.g. padding) belong to no
            group and are collected under the label ``-1`` (``remainder=None`` drops them:
            a partial sum).
        coord : str, optional
            A 1-d coord along ``dim`` to match against, e.g. a condition label or a brain
            region per channel. Default: the index coordinate of ``dim`` (positions
            0..n-1 if it has none).
        remainder : str or None, default "other"
            Label of the group that collects entries in no group, so the total is
            conserved; it is omitted when empty. ``remainder=None`` drops those entries
            instead: the result is then a *partial* sum that no longer balances the
            ledger, and ``"partial"`` is recorded in ``attrs["pooling"]``.
        name : str, optional
            Name of the resulting dim (default ``dim``); its index coordinate holds the
            group labels.

        Returns
        -------
        xarray.DataArray
            ``dim`` replaced by one entry per group. Grouping the batch dim sums
            ``prediction`` and ``absorbed`` per group (``target`` is kept only if it is the
            same within every group), so the ledger holds per group. For ``decomposes ==
            "squared gradient norm"`` the group sums conserve the squared gradient norm.

        Raises
        ------
        ValueError
            On unknown coordinate values, overlapping or empty groups, a remainder label
            that is also a group label, or group labels of mixed types.
        """
        return grouping.group(self._R, dim, groups, by=by, coord=coord, remainder=remainder, name=name)

    def windows(
        self,
        dim: str,
        size_or_edges: float | Sequence[float],
        *,
        coord: str | None = None,
        outside: str = "error",
    ) -> xr.DataArray:
        """Sum relevance in windows of a numeric coordinate, e.g. time in seconds.

        Parameters
        ----------
        dim : str
            The dim to window, e.g. ``"time"``.
        size_or_edges : float or sequence of float
            A window size: consecutive half-open windows ``[start, start + size)``
            starting at the smallest coordinate value (the last may hold fewer entries).
            Or window edges ``e0 < e1 < ...``: windows ``[e0, e1), [e1, e2), ...``, the
            last one closed ``[e_{n-1}, e_n]``.
        coord : str, optional
            A numeric 1-d coord along ``dim`` (default: the index coordinate of ``dim``).
        outside : {"error", "drop"}
            What to do with entries outside all windows (edges only): raise, or drop them
            (the result is then partial, recorded in ``attrs["pooling"]``).

        Returns
        -------
        xarray.DataArray
            ``dim`` replaced by one entry per window; index coordinate the window centre,
            plus coords ``<dim>_start`` and ``<dim>_end``. Empty windows sum to 0.

        Notes
        -----
        Coordinate values within a millionth of the sampling step of an edge count as on
        the edge, so floating-point times such as ``np.arange(28) / 100`` fall into
        ``[0, 0.1), [0.1, 0.2), [0.2, 0.3)`` as 10, 10 and 8 samples. Summing conserves
        the total (the squared gradient norm for ``decomposes == "squared gradient
        norm"``).
        """
        return windowing.windows(self._R, dim, size_or_edges, coord=coord, outside=outside)

    # ---------------------------------------------------------------- parts and display

    def positive(self) -> xr.DataArray:
        """The positive part: values > 0, zero elsewhere.

        ``positive() + negative()`` equals the result. A part alone does not add up to
        f(x), so ``decomposes`` is set to ``"none"`` and ``part`` to ``"positive"``.
        """
        return display.positive(self._R)

    def negative(self) -> xr.DataArray:
        """The negative part: values <= 0, zero elsewhere (see :meth:`positive`)."""
        return display.negative(self._R)

    def normalize(self, how: str = "max-abs") -> xr.DataArray:
        """Scale each batch element into [-1, 1] for display. For display only.

        The scaled values are **not a decomposition**: they no longer add up to f(x), so
        the result is named ``"relevance (display)"`` and has ``decomposes = "none"``.
        Pool or group before normalizing, never after.

        Parameters
        ----------
        how : {"max-abs", "sum-abs"}
            Divide by the largest absolute value or by the sum of absolute values of each
            batch element. An all-zero element stays zero.
        """
        return display.normalize(self._R, how)

    # ---------------------------------------------------------------- ledger

    def residual(self) -> xr.DataArray:
        """Per batch element: total relevance + absorbed - prediction (see ``ledger_residual``)."""
        return ledger_residual(self._R)

    def check(self, rtol: float = 1e-4, atol: float = 1e-5) -> None:
        """Raise ``LedgerError`` unless relevance + absorbed == prediction per sample.

        See :func:`sciexplain.result.check_ledger`.
        """
        check_ledger(self._R, rtol=rtol, atol=atol)

    # ---------------------------------------------------------------- figure

    def plot(self, sample: int | None = 0, *, share: bool = False, domain: bool = True, **kwargs: Any):
        """Draw the explanation: the domain's own view, or a view by dims (returns a Figure).

        See :func:`sciexplain.result.plot_result` for the parameters: ``sample`` picks the sample,
        ``share=True`` draws shares of f(x), ``domain=False`` the view by dims; the other keyword
        arguments go to the domain's view.
        """
        from .result_plot import plot_result
        return plot_result(self._R, sample, share=share, domain=domain, **kwargs)
