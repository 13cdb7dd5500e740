"""The demo writes figures, netCDF and a summary (generated clips only here; the main job adds the real ones)."""

import json

import xarray as xr

import sciexplain_video as sv


def test_demo_on_generated_clips(tmp_path):
    summary = sv.run_demo(tmp_path, real=False)
    assert (tmp_path / "summary.json").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["generated"] == summary["generated"]
    for model in ("cnn", "fisher"):
        R = xr.open_dataarray(tmp_path / f"generated_{model}.nc")
        R.relevance.check()
        assert R.dims == ("clip", "frame", "block_y", "block_x")
        R.close()
        assert summary["generated"][model]["max_ledger_residual"] < 1e-4
        for action in sv.ACTIONS:
            assert (tmp_path / f"generated_{action}_{model}_curve.png").stat().st_size > 0
            assert (tmp_path / f"generated_{action}_{model}_frames.png").stat().st_size > 0
