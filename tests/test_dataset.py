"""sx.explain_dataset / perturbation_dataset: chunk-wise explanations on Dask schedulers into Zarr.

The reference for every chunked result is the plain call on the whole batch (``sx.explain``,
``sx.evaluate.perturbation_curve``); schedulers must agree bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sciexplain as sx
from sciexplain import scale as ds
from sciexplain.scale import NpySource, SampleError, SchedulerError, StoreError, explain_dataset, open_relevance
from sciexplain.scale import explain_runner
from sciexplain.errors import InputError, SciexplainError

pytest.importorskip("dask")
pytest.importorskip("zarr")


def _model(seed: int = 0) -> torch.nn.Module:
    # torch classes only, so that worker processes can unpickle it without this test module
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv1d(4, 6, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(6 * 14, 3)).eval()


def _data(n: int = 70, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4, 16)).astype(np.float32)


DIMS = ("trial", "channel", "time")
COORDS = {"channel": ["a", "b", "c", "d"], "time": np.arange(16) / 100.0}


def test_serial_threads_and_full_batch_agree(tmp_path):
    model, x = _model(), _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    full = sx.explain(model, torch.from_numpy(x), dims=DIMS, coords=COORDS)
    results = {}
    for scheduler in ("serial", "threads"):
        R = explain_dataset(model, x, chunk=16, scheduler=scheduler, store=tmp_path / f"{scheduler}.zarr",
                            dims=DIMS, coords=COORDS, progress=False)
        assert R.chunks is not None, "the result is backed by dask arrays"
        assert R.dims == DIMS and list(R.channel.values) == COORDS["channel"]
        R.relevance.check()
        results[scheduler] = R.load()
    assert np.array_equal(results["serial"].values, results["threads"].values)
    for name in ("prediction", "target", "absorbed"):
        assert np.array_equal(results["serial"][name].values, results["threads"][name].values)
    np.testing.assert_allclose(results["serial"].values, full.values, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(results["serial"].target.values, full.target.values)
    assert results["serial"].attrs["rules"] == full.attrs["rules"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), "the model must come back unchanged"


def test_local_cluster_and_processes_are_bit_identical(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    model, x = _model(), _data(40)
    serial = explain_dataset(model, x, chunk=8, scheduler="serial", store=tmp_path / "s.zarr", progress=False).load()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        R = explain_dataset(model, x, chunk=8, scheduler=client, store=tmp_path / "d.zarr", progress=False)
        assert np.array_equal(R.values, serial.values)
        assert np.array_equal(R.absorbed.values, serial.absorbed.values)
        # the same run through the scheduler's address (what `--scheduler tcp://...` does)
        R = explain_dataset(model, x, chunk=8, scheduler=cluster.scheduler_address, store=tmp_path / "a.zarr",
                            progress=False)
        assert np.array_equal(R.values, serial.values)
        curves = ds.perturbation_dataset(model, x, R, chunk=8, scheduler=client, steps=5, removal="uniform",
                                         progress=False)
        # continuity and randomization run chunk-wise through the same mechanism
        cont = ds.continuity_dataset(model, x[:12], chunk=4, scheduler=client, points=3, progress=False)
        rand = ds.randomization_dataset(model, x[:12], chunk=4, scheduler=client, progress=False)
    reference = ds.perturbation_dataset(model, x, serial, chunk=8, scheduler="serial", steps=5, removal="uniform",
                                        progress=False)
    assert np.array_equal(curves.values, reference.values)
    cont_ref = ds.continuity_dataset(model, x[:12], chunk=4, scheduler="serial", points=3, progress=False)
    rand_ref = ds.randomization_dataset(model, x[:12], chunk=4, scheduler="serial", progress=False)
    assert np.array_equal(cont["ratio"].values, cont_ref["ratio"].values)
    assert np.array_equal(rand["spearman"].values, rand_ref["spearman"].values)
    R = explain_dataset(model, x, chunk=8, scheduler="processes", n_workers=2, store=tmp_path / "p.zarr",
                        progress=False)
    assert np.array_equal(R.values, serial.values)


class _Counting:
    """Wraps explain_runner._explain_batch: counts calls and fails from call ``fail_at`` on (an interruption)."""

    def __init__(self, original, fail_at: int | None = None):
        self.original, self.fail_at, self.calls = original, fail_at, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("injected interruption")
        return self.original(*args, **kwargs)


def test_resume_after_interruption_recomputes_nothing_finished(tmp_path, monkeypatch):
    model, x = _model(), _data(70)
    store = tmp_path / "r.zarr"
    original = explain_runner._explain_batch
    # call 1 is the one-sample probe, calls 2..4 are chunks 0..2; chunk 3 is interrupted
    failing = _Counting(original, fail_at=5)
    monkeypatch.setattr(explain_runner, "_explain_batch", failing)
    with pytest.raises(SampleError) as info:
        explain_dataset(model, x, chunk=16, scheduler="serial", store=store, progress=False)
    assert info.value.chunk == 3 and "chunk 3" in str(info.value)
    partial = open_relevance(store, complete=False)  # what was written stays readable
    assert partial.attrs["chunks_written"] == "3 of 5"
    with pytest.raises(StoreError, match="not written yet"):
        open_relevance(store)
    counting = _Counting(original)
    monkeypatch.setattr(explain_runner, "_explain_batch", counting)
    R = explain_dataset(model, x, chunk=16, scheduler="serial", store=store, progress=False)
    assert R.attrs["chunks_computed"] == 2
    assert counting.calls == 1 + 2, "the probe plus the two unfinished chunks, nothing else"
    monkeypatch.setattr(explain_runner, "_explain_batch", original)
    fresh = explain_dataset(model, x, chunk=16, scheduler="serial", store=tmp_path / "fresh.zarr", progress=False)
    assert np.array_equal(R.values, fresh.values)
    again = explain_dataset(model, x, chunk=16, scheduler="threads", store=store, progress=False)
    assert again.attrs["chunks_computed"] == 0


def test_a_bad_sample_is_named_and_finished_chunks_stay(tmp_path):
    model, x = _model(), _data(70)
    x[41, 2, 5] = np.nan
    store = tmp_path / "bad.zarr"
    with pytest.raises(SampleError, match="sample 41") as info:
        explain_dataset(model, x, chunk=16, scheduler="serial", store=store, progress=False)
    assert info.value.index == 41 and isinstance(info.value, RuntimeError)
    partial = open_relevance(store, complete=False)
    assert np.isfinite(partial.values[:32]).all() and np.isnan(partial.values[32:]).all()
    assert partial.chunk_done.values.tolist() if "chunk_done" in partial.coords else True


def test_a_model_error_is_located_to_its_sample(tmp_path):
    class Picky(torch.nn.Module):
        def forward(self, x):
            if bool((x[:, 0, 0] > 100).any()):
                raise ValueError("input too large")
            return x.flatten(1)[:, :3] * 2.0

    x = _data(20)
    x[13, 0, 0] = 1000.0
    with pytest.raises(SampleError, match=r"sample 13 .*input too large") as info:
        explain_dataset(Picky().eval(), x, chunk=8, scheduler="serial", store=tmp_path / "p.zarr", progress=False,
                        method="gradient")
    assert info.value.index == 13


def test_another_computation_on_the_same_store_is_refused(tmp_path):
    x = _data(30)
    store = tmp_path / "s.zarr"
    explain_dataset(_model(0), x, chunk=10, scheduler="serial", store=store, progress=False)
    with pytest.raises(StoreError, match="different computation"):
        explain_dataset(_model(1), x, chunk=10, scheduler="serial", store=store, progress=False)
    with pytest.raises(StoreError):
        explain_dataset(_model(0), x, chunk=5, scheduler="serial", store=store, progress=False)
    R = explain_dataset(_model(1), x, chunk=10, scheduler="serial", store=store, progress=False, overwrite=True)
    np.testing.assert_allclose(R.values, sx.explain(_model(1), torch.from_numpy(x)).values, rtol=1e-6, atol=1e-7)


def test_provenance_and_attrs_in_the_store(tmp_path):
    x = _data(20)
    record = {"config_sha256": "abc", "seeds": {"run": 3}}
    R = explain_dataset(_model(), x, chunk=8, scheduler="serial", store=tmp_path / "p.zarr", progress=False,
                        provenance=record, attrs={"study": "demo"})
    assert json.loads(R.attrs["provenance"]) == record
    back = xr.open_zarr(tmp_path / "p.zarr")
    assert json.loads(back.attrs["provenance"]) == record and back.attrs["study"] == "demo"
    assert back.attrs["method"] == "lrp" and back.attrs["decomposes"] == "f(x)"
    assert back["relevance"].encoding["chunks"][0] == 8, "one Zarr chunk per chunk of samples"
    R.load().to_netcdf(tmp_path / "r.nc")  # attrs stay netCDF-serialisable
    xr.open_dataarray(tmp_path / "r.nc").relevance.check()


class _RecordingSource:
    """A data source that records the largest read: a task must never read more than its chunk."""

    def __init__(self, x):
        self.x, self.shape, self.dtype, self.largest = x, x.shape, x.dtype, 0

    def read(self, start, stop):
        self.largest = max(self.largest, stop - start)
        return np.array(self.x[start:stop])


def test_tasks_read_one_chunk_at_a_time(tmp_path):
    x = _data(50)
    np.save(tmp_path / "x.npy", x)
    source = NpySource(tmp_path / "x.npy")
    R = explain_dataset(_model(), source, chunk=12, scheduler="threads", store=tmp_path / "n.zarr", progress=False)
    np.testing.assert_allclose(R.values, sx.explain(_model(), torch.from_numpy(x)).values, rtol=1e-6, atol=1e-7)
    rec = _RecordingSource(x)
    explain_dataset(_model(), rec, chunk=12, scheduler="threads", store=tmp_path / "m.zarr", progress=False)
    assert rec.largest == 12


def test_perturbation_dataset_equals_its_per_chunk_reference(tmp_path):
    model, x = _model(), _data(40)
    R = explain_dataset(model, x, chunk=16, scheduler="serial", store=tmp_path / "r.zarr", progress=False)
    xt = torch.from_numpy(x)
    # zero removal is the same per sample whatever the batch: chunked == one call on the whole set
    zero = ds.perturbation_dataset(model, x, R, chunk=16, scheduler="threads", steps=6, removal="zero", progress=False)
    whole = sx.evaluate.perturbation_curve(model, xt, R.load(), steps=6, removal="zero")
    np.testing.assert_allclose(zero.values, whole.values, rtol=1e-6, atol=1e-6)
    # uniform noise: over the data set's range, seeded per chunk (seed + chunk index)
    low, high = float(x.min()), float(x.max())
    chunked = ds.perturbation_dataset(model, x, R, chunk=16, scheduler="serial", steps=6, removal="uniform", seed=5,
                                      progress=False)
    parts = [sx.evaluate.perturbation_curve(model, xt[s:s + 16], R.load()[s:s + 16], steps=6, removal="uniform",
                                            seed=5 + k, value_range=(low, high)).values
             for k, s in enumerate(range(0, 40, 16))]
    np.testing.assert_array_equal(chunked.values, np.concatenate(parts))
    threads = ds.perturbation_dataset(model, x, R, chunk=16, scheduler="threads", steps=6, removal="uniform", seed=5,
                                      progress=False)
    assert np.array_equal(threads.values, chunked.values)
    # mean removal uses the data set's mean, not each chunk's
    mean = ds.perturbation_dataset(model, x, R, chunk=16, scheduler="serial", steps=6, removal="mean", progress=False)
    ref = sx.evaluate.perturbation_curve(model, xt, R.load(), steps=6, removal=torch.from_numpy(x.mean(0))[None])
    np.testing.assert_allclose(mean.values, ref.values, rtol=1e-5, atol=1e-5)
    assert float(sx.evaluate.aopc(mean).mean()) == pytest.approx(float(sx.evaluate.aopc(ref).mean()), rel=1e-5)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 30), chunk=st.integers(1, 12), seed=st.integers(0, 3))
def test_any_chunking_gives_the_full_batch_result(tmp_path_factory, n, chunk, seed):
    model, x = _model(seed), _data(n, seed)
    store = tmp_path_factory.mktemp("h") / "s.zarr"
    R = explain_dataset(model, x, chunk=chunk, scheduler="threads", store=store, progress=False,
                        target=np.arange(n) % 3)
    full = sx.explain(model, torch.from_numpy(x), target=np.arange(n) % 3)
    np.testing.assert_allclose(R.values, full.values, rtol=1e-6, atol=1e-7)
    assert R.target.values.tolist() == (np.arange(n) % 3).tolist()
    R.relevance.check()


def test_bad_arguments_get_clear_errors(tmp_path):
    model, x = _model(), _data(10)
    with pytest.raises(InputError, match="chunk"):
        explain_dataset(model, x, chunk=0, scheduler="serial", store=tmp_path / "a.zarr")
    with pytest.raises(SchedulerError, match="threads"):
        explain_dataset(model, x, chunk=4, scheduler="gpu-farm", store=tmp_path / "b.zarr", progress=False)
    with pytest.raises(InputError, match="shape"):
        explain_dataset(model, np.zeros(5, np.float32), chunk=4, scheduler="serial", store=tmp_path / "c.zarr")
    with pytest.raises(InputError, match="target"):
        explain_dataset(model, x, chunk=4, scheduler="serial", store=tmp_path / "d.zarr", target=[0, 1])
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="never unpickled"):
        NpySource(tmp_path / "objects.npy")
    assert issubclass(SampleError, SciexplainError) and issubclass(StoreError, ValueError)


def test_exported_lazily_from_the_package():
    assert sx.explain_dataset is explain_dataset
    assert sx.pipeline.run is not None


def test_the_core_and_the_pipeline_import_without_dask():
    import subprocess
    import sys
    code = ("import sys, sciexplain; sciexplain.pipeline.check; "
            "assert not {'dask', 'zarr', 'distributed'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- continuity and randomization, chunk-wise ------------------------------------------------------

def _reference_path(x: np.ndarray, index: int, points: int, radius: float, seed: int) -> np.ndarray:
    """The documented path, written out here: x + k/(points-1) * radius*||x|| * u/||u||."""
    u = np.random.default_rng([seed, index]).standard_normal(x.shape)
    length = radius * np.linalg.norm(x.astype(np.float64))
    k = np.arange(points, dtype=np.float64).reshape((-1,) + (1,) * x.ndim) / (points - 1)
    return (x.astype(np.float64)[None] + k * (length / np.linalg.norm(u)) * u[None]).astype(x.dtype)


def test_continuity_dataset_per_sample_reference_and_schedulers_agree():
    model, x = _model(), _data(11)
    kwargs = dict(points=4, radius=0.2, seed=3, progress=False, preset="epsilon-plus")
    serial = ds.continuity_dataset(model, x, chunk=4, scheduler="serial", **kwargs)
    threads = ds.continuity_dataset(model, x, chunk=4, scheduler="threads", **kwargs)
    assert set(serial.data_vars) == {"ratio", "distance", "relevance_change", "continuity"}
    assert serial["ratio"].shape == (11, 3)
    for name in serial.data_vars:
        assert np.array_equal(serial[name].values, threads[name].values), name
    # another chunking draws the same paths (seeded by sample index): the same numbers
    other = ds.continuity_dataset(model, x, chunk=5, scheduler="serial", **kwargs)
    np.testing.assert_allclose(other["ratio"].values, serial["ratio"].values, rtol=1e-6, atol=1e-8)
    predicted = model(torch.from_numpy(x)).argmax(1).numpy()
    assert serial["target"].values.tolist() == predicted.tolist()
    for i in (0, 6, 10):
        path = _reference_path(x[i], i, 4, 0.2, 3)
        assert np.array_equal(ds.continuity_path(x[i], i, points=4, radius=0.2, seed=3), path)
        t = int(predicted[i])
        ref = sx.evaluate.continuity(lambda z: sx.explain(model, z, target=t, preset="epsilon-plus"),
                                     torch.from_numpy(path))
        np.testing.assert_allclose(serial["ratio"].values[i], ref.values, rtol=1e-5, atol=1e-7)
        assert serial["continuity"].values[i] == pytest.approx(ref.attrs["continuity"], rel=1e-5)
        # the path is a straight line in equal steps of radius * ||x|| / (points - 1)
        np.testing.assert_allclose(serial["distance"].values[i], 0.2 * np.linalg.norm(x[i]) / 3, rtol=1e-4)


def test_continuity_dataset_refuses_token_ids_and_bad_options():
    model, x = _model(), _data(4)
    with pytest.raises(InputError, match="float inputs"):
        ds.continuity_dataset(model, np.zeros((4, 4, 16), np.int64), chunk=2, scheduler="serial", progress=False)
    with pytest.raises(InputError, match="points"):
        ds.continuity_dataset(model, x, chunk=2, scheduler="serial", points=1, progress=False)
    with pytest.raises(InputError, match="radius"):
        ds.continuity_dataset(model, x, chunk=2, scheduler="serial", radius=0.0, progress=False)


def test_randomization_dataset_equals_one_call_on_the_whole_set():
    model, x = _model(), _data(13)
    target = np.arange(13) % 3
    kwargs = dict(method="gradient_x_input", seed=2, progress=False)
    serial = ds.randomization_dataset(model, x, chunk=5, scheduler="serial", target=target, **kwargs)
    threads = ds.randomization_dataset(model, x, chunk=5, scheduler="threads", target=target, **kwargs)
    whole = sx.evaluate.randomization(model, torch.from_numpy(x), "gradient_x_input", seed=2, target=target)
    assert list(serial["layer"].values) == list(whole["layer"].values) == ["3", "0"]
    for name in ("spearman", "spearman_abs"):
        assert np.array_equal(serial[name].values, threads[name].values)
        np.testing.assert_allclose(serial[name].values, whole[name].values, rtol=1e-9, atol=1e-12)
    assert serial["target"].values.tolist() == target.tolist()
    # independent randomization of named layers, LRP
    one = ds.randomization_dataset(model, x, chunk=4, scheduler="threads", cascade=False, layers=["0"], seed=1,
                                   preset="epsilon-plus", progress=False)
    ref = sx.evaluate.randomization(model, torch.from_numpy(x), "lrp", cascade=False, layers=["0"], seed=1,
                                    preset="epsilon-plus")
    np.testing.assert_allclose(one["spearman"].values, ref["spearman"].values, rtol=1e-9, atol=1e-12)


def test_batch_coords_with_more_dims_are_stored(tmp_path):
    # per-sample labels of positions (e.g. the words of each document): 2-d coords along the batch dim
    model, x = _model(), _data(6)
    labels = np.array([[f"s{i}c{c}" for c in range(4)] for i in range(6)])
    coords = {**COORDS, "label": (("trial", "channel"), labels), "weight": ("trial", np.arange(6.0))}
    R = explain_dataset(model, x, chunk=4, scheduler="threads", store=tmp_path / "c.zarr", dims=DIMS,
                        coords=coords, progress=False)
    assert R.coords["label"].dims == ("trial", "channel")
    assert R.coords["label"].values.tolist() == labels.tolist()
    assert R.coords["weight"].values.tolist() == list(range(6))
    with pytest.raises(InputError, match="first"):
        explain_dataset(model, x, chunk=4, scheduler="serial", store=tmp_path / "d.zarr", dims=DIMS,
                        coords={"bad": (("channel", "trial"), labels.T)}, progress=False)


def test_perturbation_of_a_pooled_store_relevance_ranks_the_pooled_values(tmp_path):
    # a pooled DataArray keeps the store's attrs: its chunks must not be read back from the unpooled store
    model, x = _model(), _data(10)
    R = explain_dataset(model, x, chunk=4, scheduler="serial", store=tmp_path / "r.zarr", dims=DIMS, coords=COORDS,
                        progress=False)
    pooled = R.relevance.pool("channel")
    assert pooled.attrs.get("store") == R.attrs["store"]
    chunked = ds.perturbation_dataset(model, x, pooled, chunk=4, scheduler="threads", steps=5, removal="zero",
                                      progress=False)
    whole = sx.evaluate.perturbation_curve(model, torch.from_numpy(x), pooled.load(), steps=5, removal="zero")
    np.testing.assert_allclose(chunked.values, whole.values, rtol=1e-6, atol=1e-6)
    assert chunked.attrs["n_regions"] == 16  # time steps (all channels at once), not channel x time
