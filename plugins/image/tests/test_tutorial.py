"""The image tutorial runs offline from top to bottom."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[3] / "tutorials" / "image_efficientnet.ipynb"


@pytest.mark.slow
def test_image_tutorial_runs(tmp_path):
    assert NOTEBOOK.exists(), NOTEBOOK
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # the figures are shown inline (the notebook's first cell: %matplotlib inline), as a reader sees them
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    text = "".join(o.get("data", {}).get("text/plain", "") for o in outputs if "data" in o)
    assert "Egyptian cat" in text
