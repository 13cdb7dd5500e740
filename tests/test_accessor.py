"""Tests of the ``relevance`` DataArray accessor (sciexplain.result.accessor)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import sciexplain.result.accessor  # noqa: F401  (registers R.relevance)
from sciexplain.result.accessor import RelevanceAccessor
from sciexplain.result import DecompositionWarning, LedgerError, build_result, check_ledger

CHANNELS = ["F3", "Fz", "C3", "Cz", "O1"]
REGIONS = ["frontal", "frontal", "central", "central", "occipital"]
FS = 100.0
N_TIME = 28


def eeg_result(decomposes="f(x)", seed=0, dtype=np.float64):
    """A balanced (epoch, channel, time) result, 100 Hz, times 0.00 .. 0.27 s."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(4, len(CHANNELS), N_TIME)).astype(dtype)
    absorbed = rng.normal(scale=0.1, size=4)
    return build_result(
        values,
        dims=("epoch", "channel", "time"),
        coords={
            "channel": CHANNELS,
            "channel_x": ("channel", np.linspace(-0.05, 0.05, len(CHANNELS))),
            "channel_y": ("channel", np.linspace(0.06, -0.08, len(CHANNELS))),
            "region": ("channel", REGIONS),
            "time": np.arange(N_TIME) / FS,
            "condition": ("epoch", ["left", "right", "left", "right"]),
        },
        prediction=values.astype(np.float64).sum(axis=(1, 2)) + absorbed,
        target=[0, 1, 0, 1],
        absorbed=absorbed,
        method="lrp",
        rules="epsilon-plus",
        decomposes=decomposes,
        attrs={"flag": True, "note": None, "shape": [4, 5, 28]},
    )


@pytest.fixture
def R():
    return eeg_result()


def assert_same_per_sample(result, R):
    for name in ("prediction", "target", "absorbed"):
        np.testing.assert_array_equal(result.coords[name].values, R.coords[name].values)


def samples(R):
    return R.relevance.total().values


# ------------------------------------------------------------------ basics


def test_accessor_registered(R):
    assert isinstance(R.relevance, RelevanceAccessor)
    assert R.relevance.batch_dim == "epoch"


def test_no_prediction_coord_is_error():
    with pytest.raises(ValueError, match="no 'prediction' coord"):
        xr.DataArray(np.ones((2, 3)), dims=("a", "b")).relevance.total()


def test_total(R):
    total = R.relevance.total()
    assert total.dims == ("epoch",)
    np.testing.assert_allclose(total.values, R.values.sum(axis=(1, 2)))
    np.testing.assert_allclose(total.values + R.absorbed.values, R.prediction.values)
    assert_same_per_sample(total, R)
    assert total.attrs["pooling"] == "total: sum over channel, time"
    assert total.attrs["method"] == "lrp"


def test_pool_history_accumulates_and_input_untouched(R):
    before = dict(R.attrs)
    pooled = R.relevance.pool("time").relevance.group("channel", {"left": ["F3", "C3"]})
    assert pooled.attrs["pooling"] == (
        "sum over time; groups on channel (1 groups + remainder 'other')"
    )
    assert R.attrs == before
    assert "pooling" not in R.attrs
    assert pooled.name == "relevance"


def test_pool_keeps_coords_of_other_dims(R):
    pooled = R.relevance.pool("time")
    assert pooled.dims == ("epoch", "channel")
    assert list(pooled.channel.values) == CHANNELS
    np.testing.assert_array_equal(pooled.channel_x.values, R.channel_x.values)
    assert list(pooled.condition.values) == ["left", "right", "left", "right"]
    assert_same_per_sample(pooled, R)
    check_ledger(pooled)


def test_pool_over_batch_sums_prediction_and_absorbed(R):
    pooled = R.relevance.pool("epoch")
    assert pooled.dims == ("channel", "time")
    assert float(pooled.prediction) == pytest.approx(R.prediction.values.sum())
    assert float(pooled.absorbed) == pytest.approx(R.absorbed.values.sum())
    assert "target" not in pooled.coords  # targets differ
    assert "condition" not in pooled.coords
    assert pooled.relevance.batch_dim is None
    assert "target dropped" in pooled.attrs["pooling"]
    check_ledger(pooled)
    same = R.assign_coords(target=("epoch", [3, 3, 3, 3])).relevance.pool("epoch", "time")
    assert int(same.target) == 3


def test_pool_errors(R):
    with pytest.raises(ValueError, match=r"unknown dim\(s\) \['chan'\]; this result has dims \['epoch', 'channel', 'time'\]"):
        R.relevance.pool("chan")
    with pytest.raises(ValueError, match="name the dims to pool over"):
        R.relevance.pool()
    with pytest.raises(ValueError, match="more than once"):
        R.relevance.pool("time", "time")


# ------------------------------------------------------------------ group


def test_group_by_names_with_remainder(R):
    G = R.relevance.group("channel", {"left": ["F3", "C3"], "mid": ["Fz", "Cz"]})
    assert list(G.channel.values) == ["left", "mid", "other"]
    np.testing.assert_allclose(G.sel(channel="left").values, R.sel(channel=["F3", "C3"]).sum("channel").values)
    np.testing.assert_allclose(G.sel(channel="other").values, R.sel(channel="O1").values)
    assert "channel_x" not in G.coords
    np.testing.assert_allclose(samples(G), samples(R))
    assert_same_per_sample(G, R)
    check_ledger(G)


def test_group_empty_remainder_omitted(R):
    G = R.relevance.group("channel", {"all": CHANNELS})
    assert list(G.channel.values) == ["all"]


def test_group_by_other_coord_and_new_name(R):
    G = R.relevance.group(
        "channel", {"front": ["frontal"], "back": ["occipital"]}, coord="region", name="area"
    )
    assert G.dims == ("epoch", "area", "time")
    assert list(G.area.values) == ["front", "back", "other"]
    np.testing.assert_allclose(G.sel(area="other").values, R.sel(channel=["C3", "Cz"]).sum("channel").values)
    assert "groups on channel by region into area" in G.attrs["pooling"]
    check_ledger(G)


def test_group_without_remainder_is_partial(R):
    G = R.relevance.group("channel", {"left": ["F3", "C3"]}, remainder=None)
    assert list(G.channel.values) == ["left"]
    assert "partial" in G.attrs["pooling"]
    assert "3 entries in no group dropped" in G.attrs["pooling"]
    with pytest.raises(LedgerError):
        check_ledger(G)
    full = R.relevance.group("channel", {"all": CHANNELS}, remainder=None)
    assert "partial" not in full.attrs["pooling"]


def test_group_batch_dim_by_condition(R):
    G = R.relevance.group("epoch", {"L": ["left"], "R": ["right"]}, coord="condition")
    assert list(G.epoch.values) == ["L", "R"]
    np.testing.assert_allclose(G.prediction.values, [R.prediction.values[[0, 2]].sum(), R.prediction.values[[1, 3]].sum()])
    np.testing.assert_allclose(G.absorbed.values, [R.absorbed.values[[0, 2]].sum(), R.absorbed.values[[1, 3]].sum()])
    assert G.target.values.tolist() == [0, 1]
    assert G.relevance.batch_dim == "epoch"
    check_ledger(G)
    mixed = R.relevance.group("epoch", {"first": [0, 1]})
    assert "target" not in mixed.coords
    assert "target dropped" in mixed.attrs["pooling"]
    check_ledger(mixed)


def test_group_numeric_labels(R):
    G = R.relevance.group("time", {0: [0.0, 0.01], 1: [0.02]}, remainder=None)
    assert G.time.values.tolist() == [0, 1]


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("channel", {"a": ["F3", "Xx", "Yy"]}), {}, r"values \['Xx', 'Yy'\] of groups are not in coord 'channel' along 'channel'; available: 'F3', 'Fz', 'C3', 'Cz', 'O1'"),
        (("channel", {"a": ["F3", "Cz"], "b": ["Cz"]}), {}, r"groups overlap: 'channel' value 'Cz' is in group 'a' and in group 'b'.*double-count"),
        (("channel", {"a": []}), {}, "group 'a' is empty"),
        (("channel", {"a": "F3"}), {}, r"write \['F3'\] for a single value"),
        (("channel", {}), {}, "non-empty mapping"),
        (("channel", {"other": ["F3"]}), {}, "remainder label 'other' is also a group label"),
        (("channel", {"a": ["x"]}), {"coord": "nope"}, "unknown coord 'nope'"),
        (("channel", {"a": ["x"]}), {"coord": "condition"}, "needs a 1-d coord along 'channel'"),
        (("channel", {"a": ["F3"]}), {"name": "time"}, "already a dim"),
        (("chan", {"a": ["F3"]}), {}, r"unknown dim\(s\) \['chan'\]"),
        (("time", {0: [0.0]}), {}, "all strings or all numbers"),
        (("channel", {1: ["F3"], "b": ["Fz"]}), {}, "all strings or all numbers"),
    ],
)
def test_group_errors(R, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        R.relevance.group(*args, **kwargs)


# ------------------------------------------------------------------ windows


def counts_of(W, dim="time"):
    return W.sum([d for d in W.dims if d != dim]).values / (W.size / W.sizes[dim])


def test_windows_100hz_in_tenths_are_10_10_8(R):
    ones = xr.ones_like(R)
    W = ones.relevance.windows("time", 0.1)
    assert W.sizes["time"] == 3
    np.testing.assert_array_equal(W.isel(epoch=0, channel=0).values, [10, 10, 8])
    np.testing.assert_allclose(W.time.values, [0.05, 0.15, 0.25])
    np.testing.assert_allclose(W.time_start.values, [0.0, 0.1, 0.2])
    np.testing.assert_allclose(W.time_end.values, [0.1, 0.2, 0.3])
    assert W.attrs["pooling"] == "windows on time (3 windows of 0.1)"


def test_windows_edges_last_inclusive(R):
    ones = xr.ones_like(R)
    W = ones.relevance.windows("time", [0.0, 0.1, 0.2, 0.27])
    np.testing.assert_array_equal(W.isel(epoch=0, channel=0).values, [10, 10, 8])
    W = ones.relevance.windows("time", np.array([0, 1, 2, 2.7]) * 0.1)  # 0.27 computed, inexact
    np.testing.assert_array_equal(W.isel(epoch=0, channel=0).values, [10, 10, 8])


def test_windows_conserve_and_keep_coords(R):
    W = R.relevance.windows("time", 0.05)
    np.testing.assert_allclose(samples(W), samples(R))
    assert_same_per_sample(W, R)
    assert list(W.channel.values) == CHANNELS
    check_ledger(W)


def test_windows_outside(R):
    with pytest.raises(ValueError, match=r"7 entries of 'time' \(range \[0, 0.27\]\) lie outside the windows \[0, 0.2\].*outside='drop'"):
        R.relevance.windows("time", [0.0, 0.1, 0.2])
    ones = xr.ones_like(R)
    W = ones.relevance.windows("time", [0.0, 0.1, 0.2], outside="drop")
    np.testing.assert_array_equal(W.isel(epoch=0, channel=0).values, [10, 11])
    assert "partial: 7 entries outside [0, 0.2] dropped" in W.attrs["pooling"]
    with pytest.raises(ValueError, match="lie outside"):
        R.relevance.windows("time", [0.05, 0.3])


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("time", 0), {}, "window size must be a positive finite number, got 0"),
        (("time", -0.1), {}, "positive finite"),
        (("time", float("nan")), {}, "positive finite"),
        (("time", [0.0, 0.2, 0.1]), {}, r"strictly increasing, got \[0.0, 0.2, 0.1\]"),
        (("time", [0.0, 0.0, 0.3]), {}, "strictly increasing"),
        (("time", [0.0]), {}, "at least 2 numbers"),
        (("time", "0.1"), {}, "a number or a sequence of numbers"),
        (("channel", 1.0), {}, r"windows need a numeric coordinate, but 'channel' has dtype <U2"),
        (("epoch", 1.0), {"coord": "condition"}, "windows need a numeric coordinate"),
        (("time", 0.1), {"outside": "keep"}, "outside must be 'error' or 'drop'"),
        (("time", 1e-9), {}, "choose a larger size"),
    ],
)
def test_windows_errors(R, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        R.relevance.windows(*args, **kwargs)


def test_windows_nan_coord(R):
    bad = R.assign_coords(time=np.where(np.arange(N_TIME) == 3, np.nan, R.time.values))
    with pytest.raises(ValueError, match="contains NaN/Inf"):
        bad.relevance.windows("time", 0.1)


def test_windows_on_batch_dim_by_onset(R):
    onsets = R.assign_coords(onset=("epoch", [0.0, 1.0, 2.5, 3.0]))
    W = onsets.relevance.windows("epoch", 2.0, coord="onset")
    np.testing.assert_allclose(W.prediction.values, [R.prediction.values[:2].sum(), R.prediction.values[2:].sum()])
    assert "target" not in W.coords  # targets differ within each window
    assert W.epoch_start.values.tolist() == [0.0, 2.0]
    check_ledger(W)


# ------------------------------------------------------------------ parts, display, warnings


def test_positive_negative_parts(R):
    pos, neg = R.relevance.positive(), R.relevance.negative()
    assert (pos.values >= 0).all() and (neg.values <= 0).all()
    np.testing.assert_array_equal(pos.values + neg.values, R.values)
    assert pos.attrs["part"] == "positive" and neg.attrs["part"] == "negative"
    assert pos.attrs["decomposes"] == "none" and neg.attrs["decomposes"] == "none"
    assert pos.attrs["pooling"] == "positive part"
    assert R.attrs["decomposes"] == "f(x)"
    assert_same_per_sample(pos, R)
    with pytest.raises(ValueError, match="f\\(x\\) decompositions only"):
        pos.relevance.check()


@pytest.mark.parametrize("how", ["max-abs", "sum-abs"])
def test_normalize_is_display_only(R, how):
    N = R.relevance.normalize(how)
    assert N.name == "relevance (display)"
    assert N.attrs["decomposes"] == "none"
    assert "for display only, not a decomposition" in N.attrs["display"]
    assert np.abs(N.values).max() <= 1.0
    per_sample = np.abs(N.values).reshape(4, -1)
    expected = per_sample.max(axis=1) if how == "max-abs" else per_sample.sum(axis=1)
    np.testing.assert_allclose(expected, 1.0)
    assert_same_per_sample(N, R)
    with pytest.raises(ValueError, match="f\\(x\\) decompositions only"):
        N.relevance.check()
    doc = RelevanceAccessor.normalize.__doc__
    assert "display only" in doc.lower() and "not a decomposition" in doc


def test_normalize_zero_sample_stays_zero(R):
    Z = R.copy(data=np.zeros_like(R.values))
    assert (Z.relevance.normalize().values == 0).all()


def test_normalize_bad_how(R):
    with pytest.raises(ValueError, match="how must be 'max-abs' or 'sum-abs'"):
        R.relevance.normalize("max")


def test_group_docstring_mentions_partial():
    assert "partial" in RelevanceAccessor.group.__doc__
    assert "squared gradient norm" in RelevanceAccessor.pool.__doc__


@pytest.mark.parametrize(
    "operation",
    [
        lambda R: R.relevance.total(),
        lambda R: R.relevance.pool("time"),
        lambda R: R.relevance.group("channel", {"a": ["F3"]}),
        lambda R: R.relevance.windows("time", 0.1),
    ],
)
def test_pooling_none_warns_but_gradient_norm_does_not(operation):
    with pytest.warns(DecompositionWarning, match="not a decomposition"):
        operation(eeg_result(decomposes="none"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = operation(eeg_result(decomposes="squared gradient norm"))
        operation(eeg_result(decomposes="f(x)"))
    assert out.attrs["decomposes"] == "squared gradient norm"


def test_pooling_normalized_warns(R):
    with pytest.warns(DecompositionWarning):
        R.relevance.normalize().relevance.pool("time")


def test_accessor_check_and_residual(R):
    R.relevance.check()
    np.testing.assert_allclose(R.relevance.residual().values, 0, atol=1e-12)
    broken = R.assign_coords(absorbed=R.absorbed + 1.0)
    with pytest.raises(LedgerError, match="4 of 4 samples"):
        broken.relevance.check()
    with pytest.raises(LedgerError):
        broken.relevance.pool("time").relevance.check()


def test_float32_pooling_keeps_dtype_and_ledger():
    R = eeg_result(dtype=np.float32)
    G = R.relevance.windows("time", 0.1).relevance.group("channel", {"f": ["F3", "Fz"]})
    assert G.dtype == np.float32
    check_ledger(G)


# ------------------------------------------------------------------ netCDF round trip

OPERATIONS = {
    "none": lambda R: R,
    "pool time": lambda R: R.relevance.pool("time"),
    "total": lambda R: R.relevance.total(),
    "pool epoch": lambda R: R.relevance.pool("epoch"),
    "group channel": lambda R: R.relevance.group("channel", {"left": ["F3", "C3"]}),
    "group region": lambda R: R.relevance.group("channel", {"f": ["frontal"]}, coord="region", remainder=None, name="area"),
    "group condition": lambda R: R.relevance.group("epoch", {"L": ["left"], "R": ["right"]}, coord="condition"),
    "windows size": lambda R: R.relevance.windows("time", 0.1),
    "windows edges drop": lambda R: R.relevance.windows("time", [0.0, 0.1, 0.2], outside="drop"),
    "chain": lambda R: R.relevance.windows("time", 0.1).relevance.group("channel", {"a": ["Cz"]}).relevance.pool("epoch"),
    "positive": lambda R: R.relevance.positive(),
    "normalize": lambda R: R.relevance.normalize(),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_netcdf_roundtrip_after_operation(R, tmp_path, operation):
    result = OPERATIONS[operation](R)
    path = tmp_path / "r.nc"
    result.to_netcdf(path)
    with xr.open_dataarray(path) as back:
        back = back.load()
    xr.testing.assert_identical(back, result)
    assert back.name == result.name
    assert back.attrs.get("pooling") == result.attrs.get("pooling")
    if operation in ("none", "pool time", "windows size"):
        assert list(back.channel.values) == CHANNELS
        np.testing.assert_array_equal(back.channel_x.values, R.channel_x.values)


# ------------------------------------------------------------------ property-based


@st.composite
def results(draw, dtype=None):
    batch = draw(st.integers(1, 4))
    extra = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    shape = (batch, *extra)
    dims = ("sample", *[f"d{i}" for i in range(len(extra))])
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** draw(st.integers(-3, 3))
    dtype = dtype or draw(st.sampled_from([np.float64, np.float32]))
    values = (rng.normal(size=shape) * scale).astype(dtype)
    absorbed = rng.normal(scale=scale, size=batch)
    coords = {}
    for dim, n in zip(dims[1:], extra):
        coords[dim] = [f"{dim}_{j}" for j in range(n)]
        coords[f"{dim}_pos"] = (dim, np.sort(rng.uniform(-1, 1, size=n)))
    return build_result(
        values,
        dims=dims,
        coords=coords,
        prediction=values.astype(np.float64).reshape(batch, -1).sum(axis=1) + absorbed,
        target=rng.integers(0, 2, size=batch),
        absorbed=absorbed,
        method="lrp",
        rules="epsilon",
        decomposes="f(x)",
    )


def tolerance(R):
    """Float tolerance of a sum of R's values: relative to the sum of |R| per sample."""
    eps = 1e-12 if R.dtype == np.float64 else 1e-6
    return eps * (float(np.abs(R.values).sum()) + 1.0)


def check_ledger_scaled(R, reference):
    check_ledger(R, rtol=1e-9, atol=tolerance(reference) + 1e-12 * float(np.abs(reference.prediction).sum()))


def assert_conserved(result, R):
    np.testing.assert_allclose(
        float(result.values.astype(np.float64).sum()),
        float(R.values.astype(np.float64).sum()),
        rtol=0,
        atol=tolerance(R),
    )


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(results(), st.data())
def test_pool_conserves_property(R, data):
    other = list(R.dims[1:])
    dims = data.draw(st.lists(st.sampled_from(other), min_size=1, max_size=len(other), unique=True))
    pooled = R.relevance.pool(*dims)
    np.testing.assert_allclose(samples(pooled), samples(R), rtol=0, atol=tolerance(R))
    assert_same_per_sample(pooled, R)
    check_ledger_scaled(pooled, R)


@PROPERTY
@given(results(), st.data())
def test_pool_over_batch_conserves_property(R, data):
    other = list(R.dims[1:])
    dims = ["sample", *data.draw(st.lists(st.sampled_from(other), max_size=len(other), unique=True))]
    pooled = R.relevance.pool(*dims)
    assert_conserved(pooled, R)
    assert float(pooled.prediction) == pytest.approx(R.prediction.values.sum(), rel=1e-12, abs=1e-12)
    assert float(pooled.absorbed) == pytest.approx(R.absorbed.values.sum(), rel=1e-12, abs=1e-12)
    check_ledger_scaled(pooled, R)


@PROPERTY
@given(results(), st.data())
def test_group_conserves_property(R, data):
    dim = data.draw(st.sampled_from(list(R.dims)))
    n = R.sizes[dim]
    n_groups = data.draw(st.integers(1, 3))
    assignment = data.draw(st.lists(st.integers(-1, n_groups - 1), min_size=n, max_size=n))
    labels = R[dim].values.tolist()
    groups = {
        f"g{k}": [labels[j] for j in range(n) if assignment[j] == k] for k in range(n_groups)
    }
    groups = {label: members for label, members in groups.items() if members}
    assume(groups)
    remainder = data.draw(st.sampled_from(["other", None]))
    G = R.relevance.group(dim, groups, remainder=remainder)

    left_over = [j for j in range(n) if assignment[j] < 0 or f"g{assignment[j]}" not in groups]
    kept = [j for j in range(n) if j not in left_over]
    expected_labels = list(groups) + (["other"] if left_over and remainder else [])
    assert G[dim].values.tolist() == expected_labels
    assert ("partial" in G.attrs["pooling"]) == bool(left_over and remainder is None)
    for label, members in groups.items():
        index = [labels.index(m) for m in members]
        np.testing.assert_allclose(
            G.sel({dim: label}).values.astype(np.float64),
            R.isel({dim: index}).values.astype(np.float64).sum(axis=R.get_axis_num(dim)),
            rtol=0,
            atol=tolerance(R),
        )
    reference = R if remainder or not left_over else R.isel({dim: kept})
    if dim == "sample":
        assert_conserved(G, reference)
        np.testing.assert_allclose(G.prediction.values.sum(), reference.prediction.values.sum())
    else:
        np.testing.assert_allclose(samples(G), samples(reference), rtol=0, atol=tolerance(R))
        assert_same_per_sample(G, R)
    if dim == "sample" or remainder or not left_over:
        check_ledger_scaled(G, R)


@PROPERTY
@given(results(), st.data())
def test_windows_conserve_property(R, data):
    dim = data.draw(st.sampled_from(list(R.dims[1:])))
    position = R[f"{dim}_pos"].values
    if data.draw(st.booleans()):
        size = data.draw(st.floats(0.01, 3.0))
        W = R.relevance.windows(dim, size, coord=f"{dim}_pos")
        assert (np.diff(W[f"{dim}_start"].values) > 0).all()
    else:
        inner = data.draw(st.lists(st.floats(-0.99, 0.99), max_size=4, unique=True))
        edges = sorted({-1.0, 1.0, *inner})
        W = R.relevance.windows(dim, edges, coord=f"{dim}_pos")
        assert W.sizes[dim] == len(edges) - 1
    assert position.min() >= W[f"{dim}_start"].values[0]
    np.testing.assert_allclose(samples(W), samples(R), rtol=0, atol=tolerance(R))
    assert_same_per_sample(W, R)
    check_ledger_scaled(W, R)


@settings(max_examples=80, deadline=None)
@given(
    fs=st.sampled_from([100.0, 128.0, 250.0, 256.0, 500.0, 1000.0, 1024.0]),
    t0=st.one_of(st.sampled_from([0.0, -0.2, -0.5, 1.0]), st.floats(-100, 100)),
    n=st.integers(2, 400),
    m=st.integers(1, 60),
)
def test_windows_exact_sample_counts_on_regular_grids(fs, t0, n, m):
    """Windows of m samples on t0 + i/fs hold exactly m samples despite float rounding."""
    times = t0 + np.arange(n) / fs
    ones = build_result(
        np.ones((1, n)),
        dims=("epoch", "time"),
        coords={"time": times},
        prediction=[float(n)],
        target=[0],
        absorbed=[0.0],
        method="m",
        rules="r",
        decomposes="f(x)",
    )
    W = ones.relevance.windows("time", m * (1.0 / fs))
    expected = [m] * (n // m) + ([n % m] if n % m else [])
    assert W.isel(epoch=0).values.tolist() == expected

    edge_index = sorted(set(range(0, n, m)) | {n - 1})
    edges = t0 + np.asarray(edge_index) * (1.0 / fs)  # rounded differently from `times`
    W = ones.relevance.windows("time", edges)
    expected = list(np.diff(edge_index))
    expected[-1] += 1  # the last window is closed
    assert W.isel(epoch=0).values.tolist() == expected


# -- group(dim, by=...) with a grouping per sample ------------------------------------------------

from hypothesis import given as _given, settings as _settings, strategies as _st  # noqa: E402


def _token_result(seed: int, n_docs: int = 3, n_tokens: int = 7):
    import torch
    import sciexplain as sx
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Embedding(12, 4), torch.nn.Flatten(),
                                torch.nn.Linear(4 * n_tokens, 2)).eval()
    x = torch.randint(0, 12, (n_docs, n_tokens))
    return sx.explain(model, x, dims=("document", "token"))


@_settings(max_examples=25, deadline=None)
@_given(seed=_st.integers(0, 1000), data=_st.data())
def test_group_by_per_sample_conserves_each_document(seed, data):
    R = _token_result(seed)
    idx = np.array(data.draw(_st.lists(_st.lists(_st.integers(-1, 4), min_size=7, max_size=7),
                                       min_size=3, max_size=3)))
    if (idx < 0).all():
        idx[0, 0] = 0
    R = R.assign_coords(word_index=(("document", "token"), idx))
    G = R.relevance.group("token", by="word_index", name="word")
    G.relevance.check()
    np.testing.assert_allclose(G.sum("word").values, R.sum("token").values, rtol=1e-5, atol=1e-6)
    for d in range(3):  # entry k of document d is the sum of d's tokens with index k
        for k in range(int(idx.max()) + 1):
            expect = R.values[d][idx[d] == k].sum()
            np.testing.assert_allclose(G.sel(word=k).values[d], expect, rtol=1e-5, atol=1e-6)
    if (idx < 0).any():
        np.testing.assert_allclose(G.sel(word=-1).values, [R.values[d][idx[d] < 0].sum() for d in range(3)],
                                   rtol=1e-5, atol=1e-6)
        partial = R.relevance.group("token", by="word_index", remainder=None)
        assert "partial" in partial.attrs["pooling"]


def test_group_by_errors_say_what_is_expected():
    R = _token_result(0)
    with pytest.raises(ValueError, match="unknown coord"):
        R.relevance.group("token", by="nope")
    R2 = R.assign_coords(w=(("document", "token"), np.zeros((3, 7))))
    with pytest.raises(ValueError, match="integer group indices"):
        R2.relevance.group("token", by="w")
    R3 = R.assign_coords(w=(("document", "token"), -np.ones((3, 7), dtype=int)))
    with pytest.raises(ValueError, match="no entry to a group"):
        R3.relevance.group("token", by="w")
    with pytest.raises(ValueError, match="not both"):
        R3.relevance.group("token", {"a": [0]}, by="w")
    with pytest.raises(ValueError, match="batch dim"):
        R.assign_coords(w=("document", [0, 0, 1])).relevance.group("document", by="w")
