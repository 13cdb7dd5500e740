"""The first tutorial (explain your own model, check the ledger, pool, plot, save, reopen) runs and shows its figures."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "tutorials" / "first_steps.ipynb"


@pytest.mark.slow
def test_first_steps_tutorial_runs_inline(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    accuracy = float(text.split("held-out accuracy ")[1].split()[0])
    assert accuracy > 0.9  # a real model: digits are easy
    assert "epsilon-plus-box True" in text  # the reopened file holds the same relevance
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # ledger, map, share map, inline
    assert any("text/html" in o.get("data", {}) for o in outputs)  # the DataArray renders as HTML
    assert "IProgress not found" not in text  # progress bars are the notebook kind (ipywidgets installed)
