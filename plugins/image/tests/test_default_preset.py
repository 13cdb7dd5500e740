"""The image domain's default preset is the one the faithfulness measurement picked.

``benchmarks/bench_image_faithfulness.py`` measures LRP composites on EfficientNet-Lite0 over
the twelve bundled photos and stores its table in ``benchmarks/results/image_faithfulness.json``.
The default must be the LRP composite with the largest ABPC (area between the LeRF and MoRF
curves) there, and the named preset must compute exactly that composite.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sciexplain as sx
from sciexplain_image import load_efficientnet_lite0, load_photo
from sciexplain_image.domain import DOMAIN
from sciexplain_image.explain import DEFAULT_PRESET, input_bounds

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "benchmarks" / "results" / "image_faithfulness.json"
BENCH = ROOT / "benchmarks" / "bench_image_faithfulness.py"

#: the benchmark's label of the composite each named preset implements on EfficientNet-Lite0
LABEL_OF_PRESET = {"mobilenet": "zB + Gamma(0.25) depthwise + ScaledEpsilon(0.25) pointwise/fc"}


def _table() -> dict:
    if not RESULTS.exists():
        pytest.skip("benchmarks/results/image_faithfulness.json is not there (plugin installed on its own)")
    return json.loads(RESULTS.read_text())


def _best_lrp(table: dict) -> str:
    rows = [r for r in table["rows"] if r["metric"] == "abpc"]
    lrp = [r for r in rows if r["method"] not in ("sensitivity", "gradient x input", "random order")
           and not table["extra"].get(r["method"], {}).get("diverged")]
    return max(lrp, key=lambda r: r["estimate"])["method"]


def test_the_default_is_the_composite_the_table_ranks_first():
    table = _table()
    assert DOMAIN.default_preset == DEFAULT_PRESET == "mobilenet"
    best = _best_lrp(table)
    assert LABEL_OF_PRESET[DEFAULT_PRESET] == best, f"the table ranks {best!r} first by ABPC"
    rows = {(r["method"], r["metric"]): r for r in table["rows"]}
    # and it beats the old default and the random order, not only by its point estimate
    assert rows[(best, "abpc")]["ci_low"] > rows[("random order", "abpc")]["ci_high"]
    assert rows[(best, "abpc")]["estimate"] > rows[("epsilon-plus-box (old default)", "abpc")]["estimate"]


@pytest.fixture(scope="module")
def effnet():
    torch.set_num_threads(2)
    return load_efficientnet_lite0()


def test_the_named_preset_computes_the_measured_composite(effnet):
    spec = importlib.util.spec_from_file_location("bench_image_faithfulness", BENCH)
    if spec is None or not BENCH.exists():
        pytest.skip("the benchmark script is not there (plugin installed on its own)")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lo, hi = input_bounds(effnet.preprocess)
    composite = bench.composites(sx.rules.ZBox(lo, hi))[LABEL_OF_PRESET[DEFAULT_PRESET]]
    x = effnet.preprocess(load_photo("chelsea"))[0]
    named = sx.explain(effnet, x, preset=DEFAULT_PRESET, bounds=(lo, hi))
    measured = sx.explain(effnet, x, target=named.target.values, **composite)  # ZBox is in the mapping
    named.relevance.check()
    np.testing.assert_allclose(named.values, measured.values, rtol=1e-4, atol=1e-6 * float(np.abs(named.values).max()))
    # the heatmap is an explanation: most positive evidence on the cat's box
    from sciexplain_image import photo_box
    b = photo_box("chelsea", effnet.preprocess)
    y0, y1, x0, x1 = int(b.y0), int(b.y1), int(b.x0), int(b.x1)
    pos = np.clip(np.asarray(named.values[0]).sum(axis=0), 0, None)  # (y, x), colour summed
    inside = pos[y0:y1, x0:x1].sum() / pos.sum()
    area = (y1 - y0) * (x1 - x0) / pos.size
    assert inside > area, (inside, area)  # more than a uniform map would put there
