"""Stores and output files (issue 18): overwrite= removes only what sciexplain wrote, one writer per store
or folder (lock files; stale locks of killed runs), and every file written under a temporary name."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from sciexplain.scale import StoreError, explain_dataset, open_relevance
from sciexplain.scale.atomic import PARTIAL_MARK, OutputError, atomic_path, remove_partials, write_text
from sciexplain.scale.locks import FolderLock, LockError, StaleLockWarning, lock_file_for
from sciexplain.scale.stores import is_sciexplain_store

pytest.importorskip("dask")
pytest.importorskip("zarr")


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).eval()


X = np.random.default_rng(0).random((10, 4), dtype=np.float32)


def _explain(store, model=None, **kw):
    return explain_dataset(model or _model(), X, chunk=4, scheduler="serial", store=store, progress=False, **kw)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- overwrite= and foreign folders ---------------------------------------------------------------

def test_overwrite_never_removes_a_folder_sciexplain_did_not_write(tmp_path):
    folder = tmp_path / "my_thesis"
    (folder / "chapters").mkdir(parents=True)
    (folder / "chapters" / "one.tex").write_text("months of work")
    (folder / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="sciexplain did not write") as info:
            _explain(folder, overwrite=overwrite)
        assert "overwrite=True" not in info.value.args[0].split("also with")[0]
    assert (folder / "chapters" / "one.tex").read_text() == "months of work"
    assert sorted(p.name for p in folder.rglob("*")) == ["chapters", "notes.txt", "one.tex"]
    assert not is_sciexplain_store(folder)


def test_a_file_in_the_way_is_refused_and_an_empty_folder_is_used(tmp_path):
    (tmp_path / "file.zarr").write_text("data")
    with pytest.raises(StoreError, match="is a file"):
        _explain(tmp_path / "file.zarr", overwrite=True)
    assert (tmp_path / "file.zarr").read_text() == "data"
    (tmp_path / "empty.zarr").mkdir()
    R = _explain(tmp_path / "empty.zarr")
    assert R.shape == (10, 4) and is_sciexplain_store(tmp_path / "empty.zarr")


def test_overwrite_replaces_only_a_store_sciexplain_wrote(tmp_path):
    store = tmp_path / "r.zarr"
    first = _explain(store).values.copy()  # (the result reads its store lazily)
    assert is_sciexplain_store(store)
    with pytest.raises(StoreError, match=r"overwrite=True \(sciexplain run --overwrite\)"):
        _explain(store, model=_model(1))
    assert np.array_equal(open_relevance(store).values, first)  # untouched
    second = _explain(store, model=_model(1), overwrite=True)
    assert not np.array_equal(second.values, first)
    ref = _explain(tmp_path / "ref.zarr", model=_model(1))
    assert np.array_equal(second.values, ref.values)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no lock, no partial layout


def test_a_layout_left_half_created_is_removed_and_the_store_created_whole(tmp_path):
    store = tmp_path / "r.zarr"
    leftover = tmp_path / f".r.zarr{PARTIAL_MARK}99999-abcd"
    (leftover / "relevance").mkdir(parents=True)
    (leftover / ".zgroup").write_text("{}")
    R = _explain(store)
    assert not leftover.exists() and R.attrs["chunks_computed"] == 3


# -- locks ------------------------------------------------------------------------------------------

def test_a_second_writer_of_a_store_stops_at_once_naming_the_first(tmp_path):
    store = tmp_path / "r.zarr"
    with FolderLock(store, inside=False, what="store") as held:
        with pytest.raises(LockError) as info:
            _explain(store)
        message = str(info.value)
        assert f"pid {os.getpid()}" in message and platform.node() in message and held.record["started"] in message
        assert info.value.holder["pid"] == os.getpid()
    assert not store.exists()  # the refused call wrote nothing
    assert _explain(store).shape == (10, 4)


def test_a_stale_lock_on_this_host_is_taken_over_with_a_warning(tmp_path):
    lock = lock_file_for(tmp_path, inside=True)
    pid = _dead_pid()
    lock.write_text(json.dumps({"pid": pid, "host": platform.node(), "started": "2020-01-01T00:00:00+00:00",
                                "token": "x"}))
    with pytest.warns(StaleLockWarning, match=f"pid {pid}.*2020-01-01") as record:
        with FolderLock(tmp_path) as held:
            assert held.took_over["pid"] == pid
            assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert len(record) == 1 and not lock.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # the stale file was removed, not kept aside


def test_a_lock_from_another_host_is_refused_with_the_file_to_delete(tmp_path):
    lock = lock_file_for(tmp_path, inside=True)
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": "2020-01-01T00:00:00+00:00"}))
    with pytest.raises(LockError, match=f"another host.*delete {lock}"):
        FolderLock(tmp_path).acquire()
    assert lock.exists()


def test_a_live_lock_is_never_taken_over_and_an_unreadable_one_counts_as_held(tmp_path):
    lock = lock_file_for(tmp_path, inside=True)
    lock.write_text(json.dumps({"pid": os.getppid(), "host": platform.node(), "started": "t", "token": "y"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(LockError, match=f"pid {os.getppid()}"):
            FolderLock(tmp_path).acquire()
        lock.write_text("")  # created, not yet filled by its writer
        with pytest.raises(LockError, match="not readable yet"):
            FolderLock(tmp_path).acquire()


def test_release_removes_only_its_own_lock(tmp_path):
    held = FolderLock(tmp_path).acquire()
    lock = lock_file_for(tmp_path, inside=True)
    other = {"pid": 1, "host": "h", "started": "s", "token": "someone-else"}
    lock.write_text(json.dumps(other))
    held.release()
    assert json.loads(lock.read_text()) == other


# -- atomic writes ----------------------------------------------------------------------------------

def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "table.csv"
    write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            assert tmp.parent == path.parent and tmp.suffix == ".csv" and tmp.name.startswith(".")
            tmp.write_text("half a ta")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    write_text(path, "new\n")
    assert path.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_an_unwritable_place_is_an_output_error_naming_the_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="cannot write .*afile/out.json"):
        write_text(tmp_path / "afile" / "out.json", "{}")
    with pytest.raises(OutputError, match="cannot write the output folder"):
        FolderLock(tmp_path / "afile" / "sub").acquire()


def test_remove_partials_touches_only_temporary_names(tmp_path):
    (tmp_path / f".a{PARTIAL_MARK}1-2.nc").write_text("half")
    (tmp_path / "a.nc").write_text("whole")
    (tmp_path / ".hidden").write_text("user's")
    (tmp_path / f"b{PARTIAL_MARK}.nc").write_text("not hidden: not ours")
    assert remove_partials(tmp_path) == [f".a{PARTIAL_MARK}1-2.nc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "a.nc", f"b{PARTIAL_MARK}.nc"]
