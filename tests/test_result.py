"""Tests of the relevance result contract (sciexplain.result: contract, netcdf, ledger)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from sciexplain.result import (
    BATCH_COORDS,
    DECOMPOSES_VALUES,
    DecompositionWarning,
    LedgerError,
    build_result,
    check_ledger,
    find_batch_dim,
    ledger_residual,
)

CHANNELS = ["C3", "Cz", "C4", "Pz"]


def make_result(values=None, *, absorbed=None, decomposes="f(x)", attrs=None, seed=0):
    """A balanced EEG-like result: (epoch, channel, time) with names, positions, times."""
    rng = np.random.default_rng(seed)
    if values is None:
        values = rng.normal(size=(3, 4, 5))
    batch = values.shape[0]
    if absorbed is None:
        absorbed = rng.normal(scale=0.1, size=batch)
    prediction = values.reshape(batch, -1).sum(axis=1) + np.nan_to_num(absorbed)
    return build_result(
        values,
        dims=("epoch", "channel", "time"),
        coords={
            "epoch": np.arange(batch) * 10,
            "channel": CHANNELS[: values.shape[1]],
            "channel_x": ("channel", np.linspace(-1, 1, values.shape[1])),
            "time": np.arange(values.shape[2]) / 100.0,
        },
        prediction=prediction,
        target=np.arange(batch) % 2,
        absorbed=absorbed,
        method="lrp",
        rules="epsilon on all layers",
        decomposes=decomposes,
        attrs=attrs,
    )


def roundtrip(R: xr.DataArray, path) -> xr.DataArray:
    R.to_netcdf(path)
    with xr.open_dataarray(path) as back:
        return back.load()


# ------------------------------------------------------------------ build_result


def test_build_result_contract():
    R = make_result()
    assert R.dims == ("epoch", "channel", "time")
    assert R.name == "relevance"
    for name in BATCH_COORDS:
        assert R.coords[name].dims == ("epoch",)
    assert list(R.channel.values) == CHANNELS
    assert R.coords["channel_x"].dims == ("channel",)
    assert R.attrs["method"] == "lrp"
    assert R.attrs["rules"] == "epsilon on all layers"
    assert R.attrs["decomposes"] == "f(x)"
    assert isinstance(R.attrs["sciexplain_version"], str) and R.attrs["sciexplain_version"]
    assert find_batch_dim(R) == "epoch"


def test_build_result_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    values = torch.randn(2, 3, requires_grad=True) * 2  # non-leaf, requires grad
    prediction = values.sum(dim=1)
    R = build_result(
        values,
        dims=("sample", "dim_0"),
        prediction=prediction,
        target=torch.tensor([1, 0]),
        absorbed=torch.zeros(2),
        method="lrp",
        rules="epsilon",
        decomposes="f(x)",
    )
    assert isinstance(R.values, np.ndarray)
    np.testing.assert_allclose(R.values, values.detach().numpy())
    assert R.target.values.tolist() == [1, 0]
    check_ledger(R)


def test_integer_values_become_float():
    R = build_result(
        np.array([[1, 2], [3, 4]]),
        dims=("sample", "x"),
        prediction=[3, 7],
        target=[0, 0],
        absorbed=[0, 0],
        method="m",
        rules="r",
        decomposes="f(x)",
    )
    assert R.dtype == np.float64


def test_attr_conversion():
    R = make_result(
        attrs={
            "flag": True,
            "off": np.bool_(False),
            "nothing": None,
            "eps": 1e-6,
            "count": 3,
            "f32": np.float32(0.5),
            "shape": (3, 4, 5),
            "mixed": [1, 2.5, True],
            "names": ["a", "b", "c"],
            "empty": [],
            "array": np.array([1.0, 2.0]),
            "single": [2.5],
            "nested": {"conv1": {"rule": "z+", "eps": 0.25}, "fc": None, "flip": [1, "x"]},
        }
    )
    a = R.attrs
    assert a["flag"] == 1 and a["off"] == 0 and isinstance(a["flag"], int)
    assert a["nothing"] == "none"
    assert a["eps"] == 1e-6 and a["count"] == 3
    assert isinstance(a["shape"], np.ndarray) and a["shape"].tolist() == [3, 4, 5]
    assert a["mixed"].dtype == np.float64 and a["mixed"].tolist() == [1.0, 2.5, 1.0]
    assert a["names"] == "a, b, c"
    assert a["empty"] == ""
    assert a["single"] == 2.5  # netCDF reads a one-element attribute back as a scalar
    assert a["nested"] == "conv1: {rule: z+; eps: 0.25}; fc: none; flip: [1, x]"


def test_rules_mapping_becomes_readable_string():
    R = build_result(
        np.ones((1, 2)),
        dims=("sample", "x"),
        prediction=[2.0],
        target=[0],
        absorbed=[0.0],
        method="lrp",
        rules={"0": "Epsilon(0.25)", "2": "ZPlus"},
        decomposes="f(x)",
    )
    assert R.attrs["rules"] == "0: Epsilon(0.25); 2: ZPlus"


@pytest.mark.parametrize(
    "value, fragment",
    [
        (object(), "'bad'"),
        (1 + 2j, "complex"),
        ({1, 2}, "set"),
        (np.zeros((2, 2)), "shape (2, 2)"),
        ([1, "a"], "only numbers or only strings"),
        ({"inner": object()}, "'bad.inner'"),
        (2**70, "64-bit"),
    ],
)
def test_unserialisable_attr_is_type_error_naming_it(value, fragment):
    with pytest.raises(TypeError, match="attribute 'bad'") as info:
        make_result(attrs={"bad": value})
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", ["_FillValue", "scale_factor", "coordinates", "_private"])
def test_reserved_attr_names_rejected(name):
    with pytest.raises(ValueError, match="reserved"):
        make_result(attrs={name: 1.0})


def test_units_with_since_rejected():
    with pytest.raises(ValueError, match="decoded as a date"):
        make_result(attrs={"units": "seconds since 2000-01-01"})


def test_core_attrs_cannot_be_overridden():
    with pytest.raises(ValueError, match=r"\['method'\].*set by build_result"):
        make_result(attrs={"method": "other"})


def _build(**overrides):
    kwargs = dict(
        dims=("sample", "x"),
        prediction=[1.0, 2.0],
        target=[0, 1],
        absorbed=[0.0, 0.0],
        method="lrp",
        rules="epsilon",
        decomposes="f(x)",
    )
    values = overrides.pop("values", np.ones((2, 3)))
    kwargs.update(overrides)
    return build_result(values, **kwargs)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"dims": ("sample",)}, r"got 1 dims \('sample',\) for values with 2 axes"),
        ({"dims": ("sample", "x", "y")}, "got 3 dims"),
        ({"dims": ("x", "x")}, "distinct"),
        (
            {"values": np.ones((0, 3)), "prediction": [], "target": [], "absorbed": []},
            "empty batch: the batch dim 'sample' has length 0",
        ),
        ({"prediction": [1.0]}, "prediction has length 1 but the batch dim 'sample' has 2"),
        ({"target": [0, 1, 2]}, "target has length 3"),
        ({"absorbed": [[0.0, 0.0]]}, "absorbed must be 1-d"),
        ({"values": np.array([[1.0, np.nan, 0], [0, 0, 0]])}, r"1 NaN/Inf entries \(first at \{'sample': 0, 'x': 1\}\)"),
        ({"values": np.array([[1.0, 0, 0], [0, np.inf, -np.inf]])}, "2 NaN/Inf entries"),
        ({"values": np.float64(1.0)}, "0-d"),
        ({"decomposes": "f(X)"}, r"decomposes='f\(X\)' is not one of"),
        ({"prediction": [np.nan, 1.0]}, "prediction contains NaN"),
        ({"absorbed": [np.inf, 1.0]}, "absorbed contains Inf"),
        ({"coords": {"prediction": ("sample", [1, 2])}}, "reserved for the per-sample coords"),
        ({"coords": {"x": [1, 2]}}, "coords do not fit"),
    ],
)
def test_build_result_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        _build(**overrides)


def test_absorbed_may_be_nan_for_methods_that_decompose_nothing():
    R = _build(absorbed=[np.nan, np.nan], decomposes="none")
    assert np.isnan(R.absorbed.values).all()


def test_decomposes_values_all_accepted():
    for value in DECOMPOSES_VALUES:
        assert _build(decomposes=value).attrs["decomposes"] == value


def test_decomposition_warning_is_user_warning():
    assert issubclass(DecompositionWarning, UserWarning)
    assert issubclass(LedgerError, AssertionError)


# ------------------------------------------------------------------ ledger


def test_ledger_balances_and_residual_is_zero():
    R = make_result()
    residual = ledger_residual(R)
    assert residual.dims == ("epoch",)
    np.testing.assert_allclose(residual.values, 0.0, atol=1e-12)
    assert residual.prediction.values.tolist() == R.prediction.values.tolist()
    check_ledger(R)


def test_check_ledger_fails_on_unbalanced_result_naming_worst_sample():
    R = make_result()
    R = R.assign_coords(prediction=R.prediction + np.array([0.0, 0.5, 0.01]))
    with pytest.raises(LedgerError) as info:
        check_ledger(R)
    message = str(info.value)
    assert "2 of 3 samples" in message
    assert "epoch=np.int64(10)" in message or "epoch=10" in message
    assert "position 1" in message
    assert "residual -0.5" in message


def test_check_ledger_tolerance_scales_with_prediction():
    values = np.zeros((2, 2))
    values[:, 0] = [1e6, 1.0]
    # residual of 1.0 on both: allowed for |prediction| ~ 1e6 (100), not for ~1 (1e-4)
    R = _build(values=values, prediction=[1e6 + 1.0, 2.0], absorbed=[0.0, 0.0])
    with pytest.raises(LedgerError, match="1 of 2 samples.*position 1"):
        check_ledger(R)
    check_ledger(R.isel(sample=[0]))


def test_check_ledger_tolerance_scales_with_absorbed():
    """A small output whose biases absorbed much: float32 rounding grows with the absorbed part."""
    values = np.zeros((2, 2))
    values[:, 0] = [-8.0, -8.0]
    # residual 2.7e-5 on parts of size 8 (measured on a braindecode network near chance)
    R = _build(values=values, prediction=[0.01, 0.01], absorbed=[8.01 + 2.7e-5, 0.01 + 8.0 + 1e-2])
    with pytest.raises(LedgerError, match="1 of 2 samples.*position 1"):  # 1e-2 is not rounding
        check_ledger(R)
    check_ledger(R.isel(sample=[0]))
    with pytest.raises(LedgerError):  # the tolerance is still relative: 1e-6 of 8 is not enough
        check_ledger(R.isel(sample=[0]), rtol=1e-6, atol=0.0)


def test_check_ledger_rejects_non_fx_decompositions():
    for decomposes in ("squared gradient norm", "none"):
        R = make_result(decomposes=decomposes)
        with pytest.raises(ValueError, match="defined for f\\(x\\) decompositions only"):
            check_ledger(R)
        with pytest.raises(ValueError, match="defined for f\\(x\\) decompositions only"):
            ledger_residual(R)


def test_check_ledger_baseline_decomposition_allowed():
    check_ledger(make_result(decomposes="f(x) - f(baseline)"))


def test_check_ledger_nan_absorbed_is_ledger_error():
    R = make_result(absorbed=np.array([0.0, np.nan, 0.0]))
    with pytest.raises(LedgerError, match="absorbed is NaN for 1 of 3"):
        check_ledger(R)


def test_check_ledger_needs_prediction_coord():
    with pytest.raises(ValueError, match="no 'prediction' coord"):
        check_ledger(xr.DataArray(np.ones(3), dims="x", attrs={"decomposes": "f(x)"}))


def test_check_ledger_needs_decomposes_attr():
    R = make_result()
    del R.attrs["decomposes"]
    with pytest.raises(ValueError, match="no 'decomposes' attr"):
        check_ledger(R)


def test_check_ledger_float32_values():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(4, 3, 50, 50)).astype(np.float32)
    prediction = values.astype(np.float64).sum(axis=(1, 2, 3))
    R = build_result(
        values,
        dims=("image", "color", "y", "x"),
        prediction=prediction.astype(np.float32),
        target=[1, 2, 3, 4],
        absorbed=np.zeros(4, np.float32),
        method="lrp",
        rules="epsilon",
        decomposes="f(x)",
    )
    check_ledger(R)


# ------------------------------------------------------------------ netCDF


def test_netcdf_roundtrip_is_identical(tmp_path):
    R = make_result(
        attrs={
            "flag": True,
            "nothing": None,
            "shape": [3, 4, 5],
            "names": ["a", "b"],
            "nested": {"a": 1, "b": {"c": "d"}},
        }
    )
    back = roundtrip(R, tmp_path / "r.nc")
    xr.testing.assert_identical(back, R)
    assert list(back.channel.values) == CHANNELS
    np.testing.assert_array_equal(back.channel_x.values, R.channel_x.values)


def test_netcdf_roundtrip_string_targets_and_nan_absorbed(tmp_path):
    R = _build(target=["cat", "dog"], absorbed=[np.nan, np.nan], decomposes="none")
    back = roundtrip(R, tmp_path / "r.nc")
    xr.testing.assert_identical(back, R)


@settings(max_examples=25, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet="abcdefghij", min_size=1, max_size=6),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**31), 2**31),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10),
            st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=4),
            st.lists(st.text(alphabet="xyz", max_size=3), max_size=3),
            st.dictionaries(st.text(alphabet="kl", min_size=1, max_size=2), st.integers(), max_size=2),
        ),
        max_size=5,
    )
)
def test_any_accepted_attrs_roundtrip_through_netcdf(tmp_path_factory, attrs):
    attrs.pop("units", None)
    R = _build(attrs=attrs)
    back = roundtrip(R, tmp_path_factory.mktemp("nc") / "r.nc")
    xr.testing.assert_identical(back, R)
