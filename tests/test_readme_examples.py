"""The README's per-domain examples run as written, and their results keep the ledger."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_three_lines_per_domain_run(monkeypatch):
    pytest.importorskip("sciexplain_eeg")
    pytest.importorskip("sciexplain_image")
    pytest.importorskip("sciexplain_text")
    pytest.importorskip("sciexplain_video")
    import matplotlib
    matplotlib.use("Agg")
    code = _block("## Three lines per domain")
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)  # noqa: S102 -- the project's own README
    import numpy as np
    ns["R"].relevance.check()  # the last result (video) balances
    assert ns["shares"]["share"].sum("region").values == pytest.approx(np.ones(1), abs=1e-4)
    assert "sciexplain-text" in ns["html"]
    import matplotlib.pyplot as plt
    plt.close("all")
