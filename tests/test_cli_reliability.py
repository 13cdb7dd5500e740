"""``sciexplain run`` under faults (issue 18): SIGKILL during a write then a resume gives the outputs of an
uninterrupted run; two concurrent runs on one folder: one refuses, nothing corrupted; unwritable and foreign
output folders are clear errors with their own exit codes; --overwrite is the flag the messages name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import xarray as xr

from reliability_fixtures import PIPELINE, assert_same_outputs, write_inputs
from sciexplain.cli import EXIT_LOCKED, EXIT_OUTPUT, EXIT_RUN, main
from sciexplain.pipeline import StaleLockWarning, run
from sciexplain.scale.atomic import PARTIAL_MARK

pytest.importorskip("dask")
pytest.importorskip("zarr")

#: runs the CLI in a subprocess with a fault injected: SIGKILL at the k-th chunk mark or file write,
#: a slow explanation (to hold the lock), or waiting for another run's lock before starting
DRIVER = textwrap.dedent("""\
    import os, signal, sys, time
    from pathlib import Path
    import xarray as xr
    from sciexplain.scale import atomic, explain_runner
    mode, arg, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    count = [0]
    if mode == "kill-at-chunk-mark":
        original = xr.Dataset.to_zarr
        def to_zarr(self, store, *a, **kw):
            if "chunk" in (kw.get("region") or {}):
                count[0] += 1
                if count[0] == int(arg):  # the chunk's relevance is written, its done-mark not yet
                    os.kill(os.getpid(), signal.SIGKILL)
            return original(self, store, *a, **kw)
        xr.Dataset.to_zarr = to_zarr
    elif mode == "kill-in-write":
        original = atomic._fsync
        def fsync(path):
            count[0] += 1
            if count[0] == int(arg):  # half the file is on disk
                with open(path, "r+b") as fh:
                    fh.truncate(os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            return original(path)
        atomic._fsync = fsync
    elif mode == "slow":
        original = explain_runner._explain_batch
        def slow(*a, **kw):
            time.sleep(float(arg))
            return original(*a, **kw)
        explain_runner._explain_batch = slow
    elif mode == "after-lock":
        deadline = time.time() + 120
        while not Path(arg).exists() and time.time() < deadline:
            time.sleep(0.02)
    from sciexplain.cli import main
    sys.exit(main(argv))
    """)


def _driver(tmp_path: Path, mode: str, arg: str, *argv: str) -> subprocess.Popen:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, str(script), mode, arg, *argv], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The inputs and the outputs of an uninterrupted run."""
    folder = tmp_path_factory.mktemp("reference")
    cfg = write_inputs(folder)
    run(cfg, out=folder / "out")
    return folder


@pytest.mark.parametrize("mode, k", [("kill-at-chunk-mark", 2), ("kill-in-write", 2)])
def test_sigkill_during_a_write_then_resume_gives_the_uninterrupted_outputs(tmp_path, reference, mode, k):
    cfg = write_inputs(tmp_path)
    out = tmp_path / "out"
    proc = _driver(tmp_path, mode, str(k), "run", str(cfg), "--out", str(out))
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    # what the killed run left: no provenance.json (the run is visibly unfinished), its lock, and
    # never a half-written file under an output's name
    assert not (out / "provenance.json").exists() and (out / ".sciexplain.lock").exists()
    if mode == "kill-in-write":
        partial = [p for p in out.rglob(f".*{PARTIAL_MARK}*")]
        assert len(partial) == 1 and not (out / partial[0].name.split(PARTIAL_MARK)[0][1:]).exists()
    else:
        with xr.open_zarr(out / "relevance_lrp.zarr") as store:
            assert store["chunk_done"].values.tolist() == [1, 0]  # written but not marked: redone
    with pytest.warns(StaleLockWarning, match=f"pid {proc.pid}"):
        resumed = run(cfg, out=out)
    if mode == "kill-at-chunk-mark":
        assert resumed.chunks_computed == {"lrp": 1, "gradient": 2}
    assert_same_outputs(out, reference / "out")


def test_two_concurrent_runs_one_refuses_and_nothing_is_corrupted(tmp_path, reference):
    cfg = write_inputs(tmp_path)
    out = tmp_path / "out"
    first = _driver(tmp_path, "slow", "0.25", "run", str(cfg), "--out", str(out))
    second = _driver(tmp_path, "after-lock", str(out / ".sciexplain.lock"), "run", str(cfg), "--out", str(out))
    _, err2 = second.communicate(timeout=300)
    still_running = first.poll() is None
    _, err1 = first.communicate(timeout=300)
    assert still_running, "the first run must still hold the folder when the second tries it"
    assert first.returncode == 0, err1
    assert second.returncode == EXIT_LOCKED, err2
    assert f"is being written by another run (pid {first.pid} on host" in err2 and "started" in err2
    assert_same_outputs(out, reference / "out")


def test_an_output_folder_that_cannot_be_written_exits_4(tmp_path, capsys):
    cfg = write_inputs(tmp_path)
    assert main(["run", str(cfg), "--out", str(tmp_path / "x.npy" / "results")]) == EXIT_OUTPUT
    err = capsys.readouterr().err
    assert "cannot be created: a file is in the way" in err and "Traceback" not in err
    if os.geteuid() != 0:  # root writes into read-only folders
        locked = tmp_path / "readonly"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            assert main(["run", str(cfg), "--out", str(locked)]) == EXIT_OUTPUT
            assert "cannot write the output folder" in capsys.readouterr().err
        finally:
            locked.chmod(0o755)


def test_a_folder_sciexplain_did_not_write_is_never_overwritten(tmp_path, capsys):
    cfg = write_inputs(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "evaluation.csv").write_text("my own table\n")
    (mine / "other.txt").write_text("unrelated")
    assert main(["run", str(cfg), "--out", str(mine), "--overwrite"]) == EXIT_OUTPUT
    assert "was not written by sciexplain run" in capsys.readouterr().err
    assert (mine / "evaluation.csv").read_text() == "my own table\n"
    assert sorted(p.name for p in mine.iterdir()) == ["evaluation.csv", "other.txt"]
    (mine / "evaluation.csv").unlink()  # no clash left: unrelated files may share the folder
    assert main(["run", str(cfg), "--out", str(mine)]) == 0
    assert (mine / "other.txt").read_text() == "unrelated" and (mine / ".sciexplain-run").is_file()


def test_the_overwrite_flag_the_messages_name(tmp_path, capsys):
    cfg = write_inputs(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    cfg.write_text(PIPELINE.replace("chunk = 3", "chunk = 2"))  # the stores now hold another computation
    assert main(["run", str(cfg), "--out", str(out)]) == EXIT_RUN
    assert "sciexplain run --overwrite" in capsys.readouterr().err
    assert main(["run", str(cfg), "--out", str(out), "--overwrite"]) == 0
    with xr.open_zarr(out / "relevance_lrp.zarr") as store:
        assert store.attrs["chunk"] == 2 and store["chunk_done"].values.tolist() == [1, 1, 1]


def test_a_run_in_the_same_process_holding_the_folder_refuses_the_second(tmp_path, capsys):
    from sciexplain.scale.locks import FolderLock
    cfg = write_inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with FolderLock(out):
        assert main(["run", str(cfg), "--out", str(out)]) == EXIT_LOCKED
    assert f"pid {os.getpid()}" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleLockWarning)
        assert main(["run", str(cfg), "--out", str(out)]) == 0
