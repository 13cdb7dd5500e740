"""SpRAy (sx.spray): ground truth on planted shortcuts and separated maps, the Dask-store path, errors, the figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import sciexplain as sx
from sciexplain.analysis import spray as spray_mod
from sciexplain.errors import InputError
from shortcut_data import trained_model


def _separated_maps(k: int, per: int = 40, seed: int = 0) -> tuple[xr.DataArray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), per)
    maps = rng.normal(0.0, 0.05, (k * per, 8, 8))
    for c in range(k):
        maps[labels == c, c, :] += 1.0  # cluster c: relevance on row c
    R = xr.DataArray(maps, dims=("sample", "y", "x"), coords={"sample": np.arange(k * per)})
    return R, labels


def _agree(a: np.ndarray, b: np.ndarray) -> bool:
    """Same partition up to renaming."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_eigengap_picks_the_number_of_separated_groups(k):
    R, labels = _separated_maps(k)
    ds = sx.spray(R)
    assert ds.attrs["n_clusters"] == k and ds.attrs["n_clusters_from"] == "eigengap"
    assert _agree(ds.cluster.values, labels)
    lam = ds.eigenvalues.values
    assert np.all(np.diff(lam) >= -1e-12) and abs(lam[0]) < 1e-9
    assert ds.attrs["chosen_gap"] == pytest.approx(lam[k] - lam[k - 1])
    assert ds.embedding.dims == ("sample", "component") and ds.embedding.shape == (len(labels), 2)


@pytest.fixture(scope="module")
def tag_relevance():
    model, x, y, tagged = trained_model()
    cls = y == 0
    R = sx.explain(model, torch.from_numpy(x[cls]), 0)
    return R, tagged[cls]


def _precision_recall(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = float((found & truth).sum())
    return tp / max(found.sum(), 1), tp / max(truth.sum(), 1)


def test_planted_corner_tag_is_recovered(tag_relevance):
    R, tagged = tag_relevance
    ds = sx.spray(R, 2, pool="dim_0", downsample=4)
    # the cluster whose prototype puts more relevance on the tag corner is the shortcut cluster
    corner = ds.prototype.isel(dim_1=slice(0, 3), dim_2=slice(0, 3)).sum(("dim_1", "dim_2")).values
    found = ds.cluster.values == int(np.argmax(corner))
    precision, recall = _precision_recall(found, tagged)
    assert precision >= 0.8 and recall >= 0.8
    assert "sum over dim_0" in ds.prototype.attrs["pooling"]  # pooled through the accessor: the ledger keeps


def test_eigengap_clusters_on_the_tag_are_pure(tag_relevance):
    R, tagged = tag_relevance
    ds = sx.spray(R, pool="dim_0", downsample=4)
    labels = ds.cluster.values
    purity = [max(tagged[labels == c].mean(), 1 - tagged[labels == c].mean()) for c in range(ds.attrs["n_clusters"])]
    assert min(purity) >= 0.8
    tag_clusters = [c for c in range(ds.attrs["n_clusters"]) if tagged[labels == c].mean() > 0.5]
    precision, recall = _precision_recall(np.isin(labels, tag_clusters), tagged)
    assert precision >= 0.8 and recall >= 0.8


def test_batch_coords_and_prototype_coords_are_kept(tag_relevance):
    R, _ = tag_relevance
    ds = sx.spray(R, 2, pool="dim_0")
    np.testing.assert_array_equal(ds.prediction.values, R.prediction.values)
    assert ds.prototype.dims == ("cluster_id", "dim_1", "dim_2")
    assert ds.attrs["method"] == R.attrs["method"]


def test_dask_store_equals_in_memory(tmp_path, tag_relevance):
    model, x, y, _ = trained_model()
    xs = x[y == 0][:120]
    stored = sx.explain_dataset(model, xs, chunk=32, scheduler="serial", store=tmp_path / "r.zarr", target=0,
                                progress=False)
    assert stored.chunks is not None  # dask-backed: read chunk by chunk
    memory = stored.compute()
    a = sx.spray(stored, pool="dim_0", downsample=2)
    b = sx.spray(memory, pool="dim_0", downsample=2)
    np.testing.assert_array_equal(a.cluster.values, b.cluster.values)
    np.testing.assert_allclose(a.eigenvalues.values, b.eigenvalues.values, atol=1e-10)
    np.testing.assert_allclose(a.prototype.values, b.prototype.values, rtol=1e-12, atol=1e-15)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(6, 40), d=st.integers(1, 12), k=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
       normalise=st.sampled_from(["max", "sum", None]))
def test_labels_partition_and_prototypes_are_cluster_means(n, d, k, seed, normalise):
    rng = np.random.default_rng(seed)
    R = xr.DataArray(rng.normal(size=(n, d, 2)), dims=("sample", "a", "b"))
    ds = sx.spray(R, min(k, n), n_neighbors=min(5, n - 1), normalise=normalise)
    labels = ds.cluster.values
    kk = ds.attrs["n_clusters"]
    assert labels.shape == (n,) and set(labels.tolist()) <= set(range(kk))
    assert np.bincount(labels, minlength=kk).sum() == n
    for c in range(kk):
        if (labels == c).any():
            np.testing.assert_allclose(ds.prototype.values[c], R.values[labels == c].mean(0), rtol=1e-12, atol=1e-14)


def test_downsample_sums_blocks_and_keeps_totals():
    rng = np.random.default_rng(1)
    R = xr.DataArray(rng.normal(size=(5, 7, 7)), dims=("s", "y", "x"))
    X = spray_mod.spray_features(R, downsample=3, normalise=None)
    assert X.shape == (5, 9)
    np.testing.assert_allclose(X.sum(1), R.values.sum((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(X[:, 0], R.values[:, :3, :3].sum((1, 2)), rtol=1e-5)
    Xs = spray_mod.spray_features(R, downsample={"x": 7}, normalise="sum")
    np.testing.assert_allclose(np.abs(Xs).sum(1), 1.0, rtol=1e-5)


def test_knn_affinity_matches_sklearn():
    from sklearn.neighbors import NearestNeighbors
    rng = np.random.default_rng(2)
    X = rng.normal(size=(150, 6)).astype(np.float32)
    W = spray_mod.knn_affinity(X, 7, block=40).toarray()
    nn_ = NearestNeighbors(n_neighbors=8).fit(X)
    idx = nn_.kneighbors(X, return_distance=False)[:, 1:]
    A = np.zeros((150, 150))
    A[np.repeat(np.arange(150), 7), idx.ravel()] = 1.0
    np.testing.assert_array_equal(W, (A + A.T) / 2)


def test_sparse_spectrum_equals_dense(monkeypatch):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(0, 1, (150, 5)), rng.normal(6, 1, (150, 5))]).astype(np.float32)
    W = spray_mod.knn_affinity(X, 8)
    lam_dense, _, _ = spray_mod.laplacian_spectrum(W, 6)
    monkeypatch.setattr(spray_mod, "_DENSE_BELOW", 10)
    lam_sparse, vec, deg = spray_mod.laplacian_spectrum(W, 6)
    np.testing.assert_allclose(lam_sparse, lam_dense, atol=1e-8)
    L = np.eye(300) - W.toarray() / np.sqrt(np.outer(deg, deg))
    np.testing.assert_allclose(L @ vec, vec * lam_sparse, atol=1e-7)


def test_tsne_embedding():
    R, labels = _separated_maps(2, per=20)
    ds = sx.spray(R, embedding="tsne")
    assert ds.embedding.shape == (40, 2) and np.isfinite(ds.embedding.values).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_clusters=0), "n_clusters"),
    (dict(pool="nope"), "unknown dims"),
    (dict(downsample={"nope": 2}), "unknown"),
    (dict(normalise="l2"), "normalise"),
    (dict(n_neighbors=60), "more samples than n_neighbors"),
    (dict(embedding="umap"), "embedding"),
])
def test_bad_arguments_say_what_to_do(kwargs, match):
    R, _ = _separated_maps(2, per=20)
    with pytest.raises(InputError, match=match):
        sx.spray(R, **kwargs)


def test_nan_relevance_names_the_sample():
    R, _ = _separated_maps(2, per=20)
    R = R.copy()
    R[17, 2, 3] = np.nan
    with pytest.raises(InputError, match="sample 17"):
        sx.spray(R)


def test_plot_spray(tmp_path, tag_relevance):
    R, tagged = tag_relevance
    ds = sx.spray(R, pool="dim_0", downsample=4)
    fig = sx.plot_spray(ds, truth=tagged)
    assert len(fig.axes) >= 3 + ds.attrs["n_clusters"] - 1
    fig.savefig(tmp_path / "spray.png")
    one_d = sx.spray(_separated_maps(2, per=20)[0].sum("x"))
    fig2 = sx.plot_spray(one_d)
    assert fig2.axes[2].lines  # 1-D prototypes drawn as lines
    with pytest.raises(InputError, match="sx.spray"):
        sx.plot_spray(xr.Dataset())


# the spectrum of the stored Fashion-MNIST planted-tag case (benchmarks/results/spray_fashion.json)
_FASHION_SPECTRUM = np.array([0.0, 0.0009, 0.0189, 0.0243, 0.0457, 0.0498, 0.0576, 0.0881, 0.0912, 0.0971, 0.0985])


def _gap_reference(lam: np.ndarray, m: int, gap: str) -> int:
    """The eigengap rules written out with a loop (the test's own reference)."""
    best, k_best = -np.inf, None
    floor = max(1e-6 * lam[m], 1e-300)
    for k in range(1 if gap == "absolute" else 2, m + 1):  # lam[k - 1] is lambda_k
        value = lam[k] - lam[k - 1] if gap == "absolute" else max(lam[k], floor) / max(lam[k - 1], floor)
        if value > best:
            best, k_best = value, k
    return k_best


def test_relative_gap_reads_the_first_clear_gap_of_a_slowly_rising_spectrum():
    assert spray_mod.eigengap(_FASHION_SPECTRUM, 10)[0] == 7 == _gap_reference(_FASHION_SPECTRUM, 10, "absolute")
    k, ratio = spray_mod.eigengap(_FASHION_SPECTRUM, 10, "relative")
    assert k == 2 == _gap_reference(_FASHION_SPECTRUM, 10, "relative")
    assert ratio == pytest.approx(0.0189 / 0.0009)


@given(st.lists(st.floats(0.0, 2.0), min_size=3, max_size=12), st.integers(1, 11), st.sampled_from(["absolute",
                                                                                                   "relative"]))
@settings(max_examples=60, deadline=None)
def test_eigengap_rules_match_their_formulas(values, max_clusters, gap):
    lam = np.sort(np.asarray(values))
    m = min(max_clusters, len(lam) - 1)
    k, _ = spray_mod.eigengap(lam, max_clusters, gap)
    assert k == (_gap_reference(lam, m, gap) if gap == "absolute" or m >= 2 else _gap_reference(lam, m, "absolute"))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_relative_gap_picks_the_number_of_separated_groups(k):
    R, labels = _separated_maps(k)
    ds = sx.spray(R, gap="relative")
    assert ds.attrs["n_clusters"] == k and ds.attrs["gap"] == "relative"
    assert _agree(ds.cluster.values, labels)


def test_unknown_gap_rule_is_refused():
    R, _ = _separated_maps(2, per=20)
    with pytest.raises(InputError, match="gap must be one of"):
        sx.spray(R, gap="ratio")


def test_relevance_whose_coords_are_chunked_unlike_its_data():
    """Relevance read back from a netCDF file written chunk by chunk: the data in chunks of 6
    samples, a per-sample coord in one chunk (xarray's chunksizes refuses such an object)."""
    import dask.array as da
    R, labels = _separated_maps(2, per=12)
    chunked = R.chunk({"sample": 6}).assign_coords(
        label=("sample", da.from_array(labels, chunks=labels.size)))
    with pytest.raises(ValueError, match="inconsistent chunks"):
        chunked.chunksizes  # the case this test is about
    a, b = sx.spray(chunked, n_neighbors=5), sx.spray(R, n_neighbors=5)
    np.testing.assert_array_equal(a.cluster.values, b.cluster.values)
    np.testing.assert_allclose(a.prototype.values, b.prototype.values, rtol=1e-12)
    assert _agree(a.cluster.values, labels)


def test_prototype_panels_of_channel_by_time_maps_have_labelled_axes():
    rng = np.random.default_rng(0)
    channels = [f"E{i}" for i in range(16)]
    times = np.arange(40) / 100.0
    maps = rng.normal(0.0, 0.05, (40, 16, 40))
    maps[:20, 3, 10:14] += 1.0
    maps[20:, 12, 30:34] += 1.0
    R = xr.DataArray(maps, dims=("epoch", "channel", "time"),
                     coords={"channel": channels, "time": ("time", times, {"units": "s"})})
    fig = sx.plot_spray(sx.spray(R, n_neighbors=8))
    panel = fig.axes[2]
    assert panel.get_ylabel() == "channel" and panel.get_xlabel() == "time (s)"
    ylabels = [t.get_text() for t in panel.get_yticklabels()]
    assert ylabels[0] == "E0" and ylabels[-1] == "E15" and set(ylabels) <= set(channels)
    xlabels = [float(t.get_text()) for t in panel.get_xticklabels()]
    assert xlabels[0] == 0.0 and xlabels[-1] == pytest.approx(0.39)
    image = sx.plot_spray(sx.spray(_separated_maps(2)[0], n_neighbors=8)).axes[2]  # pixels: no axes
    assert not image.get_xticks().size and not image.get_yticks().size


def _noise_with_a_corner_strategy(amplitude: float, seed: int = 0, n: int = 80) -> tuple[xr.DataArray, np.ndarray]:
    """Noise maps (8 x 8); half of them carry ``amplitude`` more on a 2 x 2 corner (1/16 of the map)."""
    rng = np.random.default_rng(seed)
    tagged = np.arange(n) < n // 2
    maps = rng.normal(0.0, 1.0, (n, 8, 8))
    maps[tagged, :2, :2] += amplitude
    return xr.DataArray(maps, dims=("sample", "y", "x")), tagged


def test_one_cluster_from_the_eigengap_warns_and_names_what_to_try():
    """A strategy on 1/16 of the maps under noise: the largest gap is the first one (k = 1), and two clusters
    asked for separate the tagged half; the warning says so (as measured on the text header seeds)."""
    from sciexplain.errors import ExplainWarning

    R, tagged = _noise_with_a_corner_strategy(2.0)
    with pytest.warns(ExplainWarning, match=r"one cluster.*sx\.spray\(R, 2\)"):
        ds = sx.spray(R, normalise=None)
    assert ds.attrs["n_clusters"] == 1 and set(ds.cluster.values.tolist()) == {0}
    lam = ds.eigenvalues.values
    assert lam[1] - lam[0] > max(np.diff(lam[1:11]))  # the first gap is the largest: k = 1 is the rule's answer
    two = sx.spray(R, 2, normalise=None)  # given: no warning (the suite turns ExplainWarning into an error)
    agree = np.mean((two.cluster.values == 1) == tagged)
    assert max(agree, 1 - agree) >= 0.85
    assert sx.spray(R, normalise=None, gap="relative").attrs["n_clusters"] >= 2  # never one cluster


def test_separated_groups_do_not_warn():
    R, _ = _noise_with_a_corner_strategy(3.0)
    assert sx.spray(R, normalise=None).attrs["n_clusters"] == 2  # no ExplainWarning (an error in this suite)
