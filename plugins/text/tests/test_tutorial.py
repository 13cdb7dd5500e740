"""The text tutorial runs offline from top to bottom on the real 20 Newsgroups posts."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[3] / "tutorials" / "text_newsgroups.ipynb"


@pytest.mark.slow
def test_text_tutorial_runs(tmp_path):
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
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs if "data" in o)
    assert "held-out accuracy" in text and "BiLSTM: 5-fold CV accuracy" in text
    assert html.count('class="sciexplain-text"') >= 2  # the CNN and the LSTM post render as highlighted text
    accuracy = float(text.split("held-out accuracy ")[-1].split()[0])
    assert accuracy >= 0.8
