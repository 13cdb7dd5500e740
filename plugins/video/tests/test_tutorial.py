"""The video tutorial runs offline from top to bottom on a generated clip and a real one."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[3] / "tutorials" / "video_motion.ipynb"


@pytest.mark.slow
def test_video_tutorial_runs(tmp_path):
    import sciexplain_video as sv

    try:
        sv.real_clip_path("bikes")
    except sv.SkvideoDataMissingError as err:
        pytest.skip(str(err))
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    assert NOTEBOOK.exists(), NOTEBOOK
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # the figures are shown inline (the notebook's first cell: %matplotlib inline), as a reader sees them
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    text += "".join(o.get("data", {}).get("text/plain", "") for o in outputs if "data" in o)
    assert "AOPC MoRF LRP" in text and "predicted:" in text and "MotionField 250 frames" in text
    lrp = float(text.split("AOPC MoRF LRP ")[1].split()[0])
    rand = float(text.split("AOPC MoRF random ")[1].split()[0])
    assert lrp > rand  # zeroing the most relevant blocks first lowers the logit faster than at random
