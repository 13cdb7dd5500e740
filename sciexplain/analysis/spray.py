"""Spectral relevance analysis (SpRAy): cluster a class's explanations to find the model's strategies.

Lapuschkin et al., "Unmasking Clever Hans predictors and assessing what machines really learn",
Nature Communications 10:1096 (2019). Given the relevance maps of many samples (usually of one
class), SpRAy

1. preprocesses the maps: sums over named dims (``pool``, the accessor's conservative pooling,
   recorded in the ledger's history), sums blocks of neighbouring entries (``downsample``),
   and scales each map (``normalise``: by its largest absolute value or by its sum of absolute
   values), then flattens each map to one feature vector ``x_i``;
2. builds a sparse symmetric k-nearest-neighbour affinity ``W = (A + A^T) / 2`` where
   ``A_ij = 1`` if ``x_j`` is one of the ``n_neighbors`` nearest (Euclidean) neighbours of
   ``x_i`` (the sample itself excluded);
3. computes the smallest eigenvalues ``0 = lambda_1 <= lambda_2 <= ...`` of the normalised graph
   Laplacian ``L = I - D^{-1/2} W D^{-1/2}`` (``D`` the degree matrix);
4. reads the number of clusters ``k`` from the largest eigengap,
   ``k = argmax_{1 <= i <= max_clusters} (lambda_{i+1} - lambda_i)``, or with ``gap="relative"``
   the largest ratio ``lambda_{i+1} / lambda_i`` for ``i >= 2`` (or takes ``k`` as given);
5. clusters by spectral clustering (Ng, Jordan & Weiss 2002): k-means with a fixed seed on the
   rows of the ``k`` first eigenvectors, each row scaled to unit length.

The features are computed chunk by chunk along the batch dim, so a Dask-backed relevance (a
store written by :func:`sciexplain.explain_dataset`) is read once per pass, never held whole;
only the preprocessed features (``n x d``) and the sparse graph (``n x n_neighbors`` entries)
are kept in memory. The nearest neighbours are found by exact, blocked brute force.
scikit-learn (k-means, t-SNE) is imported on first use.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .._version import __version__
from ..errors import ExplainWarning, InputError, InputTypeError, MissingDependencyError
from ..result.contract import find_batch_dim

__all__ = ["spray", "spray_features", "knn_affinity", "laplacian_spectrum", "eigengap", "check_parameters"]

_NORMALISE = ("max", "sum", None)
_EMBEDDINGS = ("spectral", "tsne")
_GAPS = ("absolute", "relative")
_DENSE_BELOW = 2000  # samples: below this the spectrum is computed densely (exact, fast enough)
_KNN_BLOCK = 1024  # query rows per block of the brute-force neighbour search


def _sklearn(name: str):
    try:
        if name == "KMeans":
            from sklearn.cluster import KMeans as obj
        else:
            from sklearn.manifold import TSNE as obj
    except ImportError as err:  # pragma: no cover - scikit-learn is a core dependency
        raise MissingDependencyError("sx.spray needs scikit-learn: pip install scikit-learn") from err
    return obj


# ---------------------------------------------------------------------------- preprocessing


def _batch_dim(R: xr.DataArray) -> str:
    if "prediction" not in R.coords:  # plain maps: the first dim holds the samples
        return str(R.dims[0])
    bdim = find_batch_dim(R)
    return str(bdim) if bdim is not None else str(R.dims[0])


def _pooled(R: xr.DataArray, bdim: str, pool: str | Sequence[str] | None) -> xr.DataArray:
    if pool is None:
        return R
    dims = [pool] if isinstance(pool, str) else list(pool)
    unknown = [d for d in dims if d not in R.dims]
    if unknown:
        raise InputError(f"pool: unknown dims {unknown}; the relevance has dims {list(R.dims)}")
    if bdim in dims:
        raise InputError(f"pool: the batch dim {bdim!r} cannot be pooled (SpRAy clusters its samples)")
    if "prediction" in R.coords:
        return R.relevance.pool(*dims)
    return R.sum(dims)


def _factors(R: xr.DataArray, bdim: str, downsample: int | Mapping[str, int] | None) -> list[int]:
    """The block size along every non-batch dim (1 = kept)."""
    other = [d for d in R.dims if d != bdim]
    if downsample is None:
        return [1] * len(other)
    factors = {d: downsample for d in other} if isinstance(downsample, (int, np.integer)) else dict(downsample)
    unknown = [d for d in factors if d not in other]
    if unknown:
        raise InputError(f"downsample: unknown or batch dims {unknown}; the maps have dims {other}")
    bad = {d: f for d, f in factors.items() if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1}
    if bad:
        raise InputError(f"downsample factors must be integers >= 1, got {bad}")
    return [int(factors.get(d, 1)) for d in other]


def _block_sums(block: np.ndarray, factors: list[int]) -> np.ndarray:
    """Sums of blocks of neighbouring entries per sample; the last block padded with zeros (keeps the total)."""
    if all(f == 1 for f in factors):
        return block
    pad = [(0, 0)] + [(0, -n % f) for n, f in zip(block.shape[1:], factors)]
    block = np.pad(block, pad)
    shape = [block.shape[0]]
    for n, f in zip(block.shape[1:], factors):
        shape += [n // f, f]
    return block.reshape(shape).sum(axis=tuple(range(2, len(shape), 2)))


def _normalised(X: np.ndarray, normalise: str | None) -> np.ndarray:
    if normalise is None:
        return X
    scale = np.abs(X).max(axis=1) if normalise == "max" else np.abs(X).sum(axis=1)
    scale = np.where(scale > 0, scale, 1.0)  # an all-zero map stays zero
    return X / scale[:, None]


def _blocks(R: xr.DataArray, bdim: str) -> list[tuple[int, int]]:
    n = R.sizes[bdim]
    # the data's own chunks (its coords may be chunked otherwise, e.g. read back from netCDF
    # written chunk by chunk, where R.chunksizes refuses)
    chunks = R.chunks[R.get_axis_num(bdim)] if R.chunks is not None else None
    if chunks:
        edges = np.concatenate([[0], np.cumsum(chunks)])
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    step = max(1, min(n, 4096))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def _read(R: xr.DataArray, bdim: str, start: int, stop: int) -> np.ndarray:
    block = np.asarray(R.isel({bdim: slice(start, stop)}).transpose(bdim, ...).values, dtype=np.float64)
    bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
    if bad.any():
        k = start + int(np.flatnonzero(bad)[0])
        raise InputError(f"the relevance of sample {k} (and {int(bad.sum()) - 1} more in samples {start}..{stop - 1}) "
                         "has NaN or Inf; explain it again or drop it before sx.spray")
    return block


def spray_features(R: xr.DataArray, *, pool: str | Sequence[str] | None = None,
                   downsample: int | Mapping[str, int] | None = None,
                   normalise: str | None = "max") -> np.ndarray:
    """The preprocessed maps SpRAy clusters: one flattened, normalised row per sample (float32).

    Parameters are those of :func:`spray`. Reads the relevance chunk by chunk along the batch dim.
    """
    if normalise not in _NORMALISE:
        raise InputError(f"normalise must be one of {_NORMALISE}, got {normalise!r}")
    bdim = _batch_dim(R)
    maps = _pooled(R, bdim, pool)
    factors = _factors(maps, bdim, downsample)
    n = maps.sizes[bdim]
    shape = [-(-maps.sizes[k] // f) for k, f in zip([k for k in maps.dims if k != bdim], factors)]
    X = np.empty((n, int(np.prod(shape, dtype=np.int64))), dtype=np.float32)
    for start, stop in _blocks(maps, bdim):
        block = _block_sums(_read(maps, bdim, start, stop), factors).reshape(stop - start, -1)
        X[start:stop] = _normalised(block, normalise)
    return X


# ---------------------------------------------------------------------------- graph and spectrum


def knn_affinity(X: np.ndarray, n_neighbors: int, block: int | None = None):
    """The symmetric k-nearest-neighbour affinity ``W = (A + A^T) / 2`` as a ``scipy.sparse`` CSR matrix.

    ``A_ij = 1`` if ``x_j`` is among the ``n_neighbors`` nearest neighbours of ``x_i`` by Euclidean
    distance (``i`` itself excluded; ties broken by the lower index). Exact, by blocked brute force:
    memory ``block x n`` at a time (by default about 16 MB); neighbours ranked with ``torch.topk``.
    """
    import scipy.sparse as sp

    n = len(X)
    if n < n_neighbors + 1:
        raise InputError(f"SpRAy needs more samples than n_neighbors: got {n} samples and n_neighbors={n_neighbors}; "
                         "pass a smaller n_neighbors or more samples")
    import torch  # its top-k is several times faster than numpy's argpartition

    if block is None:  # about 16 MB of distances per block
        block = int(min(_KNN_BLOCK, max(16, 2**22 // max(n, 1))))
    # ||x_i - x_j||^2 = ||x_i||^2 + ||x_j||^2 - 2 x_i.x_j; the first term is the same along a row,
    # so the neighbours of x_i are the smallest entries of ||x_j||^2 - 2 x_i.x_j
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64).astype(X.dtype)
    cols = np.empty((n, n_neighbors), dtype=np.int64)
    for s in range(0, n, block):
        e = min(s + block, n)
        d2 = X[s:e] @ X.T
        d2 *= -2.0
        d2 += sq[None, :]
        d2[np.arange(e - s), np.arange(s, e)] = np.inf
        dist, part = torch.topk(torch.from_numpy(d2), n_neighbors, dim=1, largest=False, sorted=False)
        dist, part = dist.numpy(), part.numpy()
        # order the k neighbours by (distance, index) so that every run lists them alike
        order = np.lexsort((part, dist), axis=1)
        cols[s:e] = np.take_along_axis(part, order, axis=1)
    rows = np.repeat(np.arange(n), n_neighbors)
    A = sp.csr_matrix((np.ones(n * n_neighbors), (rows, cols.ravel())), shape=(n, n))
    return ((A + A.T) * 0.5).tocsr()


def laplacian_spectrum(W, n_eigen: int, random_state: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``n_eigen`` smallest eigenvalues and eigenvectors of ``L = I - D^{-1/2} W D^{-1/2}``.

    Returns ``(eigenvalues ascending, eigenvectors as columns, degrees)``. Dense for fewer than
    2000 samples, otherwise ``scipy.sparse.linalg.eigsh`` for the largest eigenvalues of
    ``D^{-1/2} W D^{-1/2}`` (``lambda = 1 - mu``) with a seeded start vector.
    """
    import scipy.sparse as sp

    n = W.shape[0]
    deg = np.asarray(W.sum(axis=1)).ravel()
    inv_sqrt = sp.diags(1.0 / np.sqrt(deg))
    M = (inv_sqrt @ W @ inv_sqrt).tocsr()
    n_eigen = min(n_eigen, n)
    if n < _DENSE_BELOW or n_eigen >= n - 1:
        mu, vec = np.linalg.eigh(M.toarray())
        mu, vec = mu[::-1][:n_eigen], vec[:, ::-1][:, :n_eigen]
    else:
        from scipy.sparse.linalg import eigsh

        v0 = np.random.default_rng(random_state).uniform(0.5, 1.5, n)
        mu, vec = eigsh(M, k=n_eigen, which="LA", v0=v0, tol=1e-10)
        order = np.argsort(-mu)
        mu, vec = mu[order], vec[:, order]
    lam = np.clip(1.0 - mu, 0.0, 2.0)
    return lam, vec, deg


def eigengap(eigenvalues: np.ndarray, max_clusters: int, gap: str = "absolute") -> tuple[int, float]:
    """The number of clusters read from the spectrum (eigenvalues ascending) and the gap that chose it.

    ``gap="absolute"``: ``k = argmax_{1 <= k <= max_clusters} (lambda_{k+1} - lambda_k)``, returning
    that difference. ``gap="relative"``: ``k = argmax_{2 <= k <= max_clusters} lambda_{k+1} / lambda_k``,
    both eigenvalues floored at ``1e-6 * lambda_{max_clusters+1}`` (so that numerically zero
    eigenvalues of disconnected components compare as equal), returning that ratio. The relative
    gap reads the first clear gap of a spectrum that rises slowly (a small first gap followed by
    larger absolute steps between larger eigenvalues); it never picks ``k = 1``.
    """
    if gap not in _GAPS:
        raise InputError(f"gap must be one of {_GAPS}, got {gap!r}")
    m = min(max_clusters, len(eigenvalues) - 1)
    if m < 1:
        raise InputError("the eigengap needs at least two eigenvalues")
    lam = np.asarray(eigenvalues[: m + 1], dtype=np.float64)
    if gap == "absolute" or m < 2:
        gaps = np.diff(lam)
        k = int(np.argmax(gaps)) + 1
        return k, float(gaps[k - 1])
    floor = max(1e-6 * float(lam[m]), np.finfo(np.float64).tiny)
    kept = np.maximum(lam, floor)
    ratios = kept[2:] / kept[1:-1]  # ratios[j] = lambda_{j+3} / lambda_{j+2}, i.e. k = j + 2
    k = int(np.argmax(ratios)) + 2
    return k, float(ratios[k - 2])


def _spectral_labels(vec: np.ndarray, k: int, random_state: int) -> np.ndarray:
    if k == 1:
        return np.zeros(len(vec), dtype=np.int64)
    U = vec[:, :k]
    U = U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)
    labels = _sklearn("KMeans")(n_clusters=k, n_init=10, random_state=random_state).fit_predict(U)
    # number the clusters by size, largest first (ties: by first sample), so the labels are reproducible
    sizes = np.bincount(labels, minlength=k)
    first = np.array([np.flatnonzero(labels == c)[0] if sizes[c] else len(labels) for c in range(k)])
    order = np.lexsort((first, -sizes))
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    return relabel[labels]


# ---------------------------------------------------------------------------- the analysis


def check_parameters(*, n_clusters: int | None = None, n_neighbors: int = 10, max_clusters: int = 10,
                     embedding: str = "spectral", normalise: str | None = "max", gap: str = "absolute") -> None:
    """Raise :class:`~sciexplain.errors.InputError` for a parameter of :func:`spray` it would refuse.

    The message starts with the parameter's name (a pipeline file names the key with it).
    """
    if n_clusters is not None and (isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer))
                                   or n_clusters < 1):
        raise InputError(f"n_clusters must be an integer >= 1 or None (read from the eigengap), got {n_clusters!r}")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 1:
        raise InputError(f"n_neighbors must be an integer >= 1, got {n_neighbors!r}")
    if isinstance(max_clusters, bool) or not isinstance(max_clusters, (int, np.integer)) or max_clusters < 1:
        raise InputError(f"max_clusters must be an integer >= 1, got {max_clusters!r}")
    if embedding not in _EMBEDDINGS:
        raise InputError(f"embedding must be one of {_EMBEDDINGS}, got {embedding!r}")
    if normalise not in _NORMALISE:
        raise InputError(f"normalise must be one of {_NORMALISE}, got {normalise!r}")
    if gap not in _GAPS:
        raise InputError(f"gap must be one of {_GAPS}, got {gap!r}")


def _validate(R: Any, n_clusters: int | None, n_neighbors: int, max_clusters: int, embedding: str,
              normalise: str | None, gap: str) -> None:
    if not isinstance(R, xr.DataArray):
        raise InputTypeError(f"sx.spray takes a relevance xarray.DataArray (from sx.explain or sx.explain_dataset), "
                             f"got {type(R).__name__}")
    if R.ndim < 2:
        raise InputError(f"sx.spray needs maps: a batch dim and at least one more, got dims {list(R.dims)}")
    check_parameters(n_clusters=n_clusters, n_neighbors=n_neighbors, max_clusters=max_clusters, embedding=embedding,
                     normalise=normalise, gap=gap)


def _prototypes(maps: xr.DataArray, bdim: str, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean map per cluster, accumulated chunk by chunk."""
    shape = tuple(maps.sizes[d] for d in maps.dims if d != bdim)
    sums = np.zeros((k, int(np.prod(shape, dtype=np.int64))), dtype=np.float64)
    for start, stop in _blocks(maps, bdim):
        block = _read(maps, bdim, start, stop).reshape(stop - start, -1)
        np.add.at(sums, labels[start:stop], block)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return (sums / counts[:, None]).reshape((k,) + shape)


def _embedding(kind: str, X: np.ndarray, vec: np.ndarray, deg: np.ndarray, random_state: int) -> np.ndarray:
    if kind == "tsne":
        n = len(X)
        tsne = _sklearn("TSNE")(n_components=2, perplexity=float(min(30.0, max(2.0, (n - 1) / 3.0))),
                                init="pca", random_state=random_state)
        return tsne.fit_transform(X.astype(np.float64))
    # Laplacian eigenmaps: eigenvectors 2 and 3 of the random-walk Laplacian, D^{-1/2} u
    emb = vec[:, 1:3] / np.sqrt(deg)[:, None]
    if emb.shape[1] < 2:
        emb = np.pad(emb, ((0, 0), (0, 2 - emb.shape[1])))
    # a fixed sign per axis (the entry of largest magnitude positive) so repeated runs agree
    signs = np.sign(emb[np.abs(emb).argmax(axis=0), np.arange(2)])
    return emb * np.where(signs == 0, 1.0, signs)


def spray(R: xr.DataArray, n_clusters: int | None = None, *, pool: str | Sequence[str] | None = None,
          downsample: int | Mapping[str, int] | None = None, normalise: str | None = "max",
          n_neighbors: int = 10, max_clusters: int = 10, n_eigen: int | None = None,
          embedding: str = "spectral", gap: str = "absolute", random_state: int = 0) -> xr.Dataset:
    """Spectral relevance analysis: the strategies of a model over many explanations.

    Parameters
    ----------
    R : xarray.DataArray
        Relevance maps, batch dim first (the dim with the ``prediction`` coord), usually of
        one class; in memory or Dask-backed (``sx.explain_dataset``'s store, opened chunked).
    n_clusters : int, optional
        The number of clusters; by default read from the largest eigengap.
    pool : str or sequence of str, optional
        Dims summed away first (``R.relevance.pool``), e.g. ``"color"``.
    downsample : int or mapping of dim -> int, optional
        Sum blocks of this many neighbouring entries (all non-batch dims, or per dim).
    normalise : {"max", "sum", None}
        Scale each map by its largest absolute value or by its sum of absolute values, so that
        the clusters compare where the relevance lies, not how strong the prediction is.
    n_neighbors : int
        Neighbours per sample in the affinity graph.
    max_clusters : int
        The largest number of clusters the eigengap may pick.
    n_eigen : int, optional
        Eigenvalues computed (default ``max(max_clusters, n_clusters) + 1``, at least 3).
    embedding : {"spectral", "tsne"}
        The 2-D view: Laplacian eigenmaps (eigenvectors 2 and 3, free) or t-SNE on the features.
    gap : {"absolute", "relative"}
        How the eigengap is read (:func:`eigengap`): the largest difference
        ``lambda_{k+1} - lambda_k`` (default), or the largest ratio ``lambda_{k+1} / lambda_k``
        for ``k >= 2`` (the first clear gap of a slowly rising spectrum).
    random_state : int
        Seed of k-means, t-SNE and the eigensolver's start vector.

    Returns
    -------
    xarray.Dataset
        ``cluster`` (batch dim, with R's batch coords): the cluster of each sample, 0 = largest;
        ``eigenvalues`` (dim ``eigen``): the Laplacian spectrum, ascending; ``eigengap``
        (dim ``eigen``): ``lambda_{i+1} - lambda_i``; ``embedding`` (batch, ``component``);
        ``prototype`` (``cluster_id`` x R's non-batch dims after ``pool``, with their coords):
        the mean relevance of each cluster's samples, not downsampled or normalised;
        ``cluster_size`` (``cluster_id``). (The dim is not called ``cluster``: that name is the
        per-sample variable.) Attrs: ``n_clusters``, ``chosen_gap`` (its value: the
        difference, or the ratio with ``gap="relative"``),
        ``n_clusters_from`` (``"eigengap"`` or ``"given"``), the parameters, R's ``method``.

    Raises
    ------
    InputError
        Fewer samples than ``n_neighbors + 1``, NaN or Inf in the relevance (naming the
        sample), unknown dims in ``pool``/``downsample``, ``n_clusters < 1`` or more clusters
        than samples.

    Warns
    -----
    ExplainWarning
        The eigengap picked one cluster (``n_clusters`` not given, ``gap="absolute"``): a strategy
        confined to a small part of the maps can hide in such a spectrum; compare two clusters.
    """
    _validate(R, n_clusters, n_neighbors, max_clusters, embedding, normalise, gap)
    bdim = _batch_dim(R)
    n = R.sizes[bdim]
    if n < n_neighbors + 1:
        raise InputError(f"SpRAy needs more samples than n_neighbors: got {n} samples and n_neighbors={n_neighbors}; "
                         "pass a smaller n_neighbors or more samples")
    if n_clusters is not None and n_clusters > n:
        raise InputError(f"n_clusters={n_clusters} is more than the {n} samples")
    X = spray_features(R, pool=pool, downsample=downsample, normalise=normalise)
    W = knn_affinity(X, int(n_neighbors))
    want = max(max_clusters, n_clusters or 0) + 1 if n_eigen is None else int(n_eigen)
    lam, vec, deg = laplacian_spectrum(W, max(3, want), random_state)
    if n_clusters is None:
        k, chosen = eigengap(lam, max_clusters, gap)
        source = "eigengap"
        if k == 1:
            warnings.warn(ExplainWarning(
                f"SpRAy: the eigengap picked one cluster (the largest gap lies between the first two "
                f"eigenvalues, {lam[0]:.3g} and {lam[1]:.3g}). A strategy that covers a small part of the maps "
                "can hide in such a spectrum: compare sx.spray(R, 2), look at the spectrum (sx.plot_spray), or "
                "read the gap with gap='relative', which never picks one cluster"), stacklevel=2)
    else:
        k, source = int(n_clusters), "given"
        chosen = float(lam[k] - lam[k - 1]) if k < len(lam) else float("nan")
    labels = _spectral_labels(vec, k, random_state)
    maps = _pooled(R, bdim, pool)
    proto = _prototypes(maps, bdim, labels, k)
    emb = _embedding(embedding, X, vec, deg, random_state)
    return _dataset(R, maps, bdim, labels, lam, emb, proto, k, chosen, source,
                    dict(pool=pool, downsample=downsample, normalise=normalise, n_neighbors=n_neighbors,
                         max_clusters=max_clusters, embedding=embedding, gap=gap, random_state=random_state))


def _attr(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return value


def _dataset(R: xr.DataArray, maps: xr.DataArray, bdim: str, labels: np.ndarray, lam: np.ndarray,
             emb: np.ndarray, proto: np.ndarray, k: int, gap: float, source: str, params: dict) -> xr.Dataset:
    batch_coords = {name: c for name, c in R.coords.items() if c.dims == (bdim,)}
    batch_coords = {name: (bdim, np.asarray(c.values)) for name, c in batch_coords.items()}
    map_dims = [d for d in maps.dims if d != bdim]
    map_coords: dict[Hashable, Any] = {}
    for name, c in maps.coords.items():
        if c.dims and set(c.dims) <= set(map_dims):
            map_coords[name] = (c.dims, np.asarray(c.values), dict(c.attrs))  # units and all
    sizes = np.bincount(labels, minlength=k)
    gaps = np.append(np.diff(lam), np.nan)
    prototype = xr.DataArray(proto, dims=["cluster_id", *map_dims],
                             coords={**map_coords, "cluster_id": np.arange(k)},
                             attrs={"long_name": "mean relevance of the cluster's samples",
                                    "decomposes": R.attrs.get("decomposes", "none"),
                                    "pooling": str(maps.attrs.get("pooling", ""))})
    ds = xr.Dataset(
        {
            "cluster": xr.DataArray(labels, dims=[bdim], coords={bdim: R[bdim].values} if bdim in R.coords else {}),
            "eigenvalues": (("eigen",), lam),
            "eigengap": (("eigen",), gaps),
            "embedding": ((bdim, "component"), np.asarray(emb, dtype=np.float64)),
            "prototype": prototype,
            "cluster_size": (("cluster_id",), sizes),
        },
        coords={"eigen": np.arange(1, len(lam) + 1), "component": [0, 1], "cluster_id": np.arange(k)},
    )
    ds = ds.assign_coords(batch_coords)
    ds.attrs = {
        "analysis": "SpRAy (Lapuschkin et al. 2019)",
        "n_clusters": int(k),
        "n_clusters_from": source,
        "chosen_gap": gap,
        "batch_dim": bdim,
        "method": str(R.attrs.get("method", "unknown")),
        "sciexplain_version": __version__,
        **{key: _attr(v) for key, v in params.items()},
    }
    return ds
