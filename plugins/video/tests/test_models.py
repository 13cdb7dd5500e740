"""Bundled weights, save/load, seeded training."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import sciexplain_video as sv


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Clips from a seed that neither training nor the bundled test split used."""
    items = sv.make_dataset(tmp_path_factory.mktemp("heldout"), 3, seed=777)
    return [sv.read_motion_vectors(p) for p, _ in items], [t.label for _, t in items]


@pytest.mark.parametrize("kind", ["cnn", "fisher"])
def test_bundled_models_classify_new_clips(kind, held_out):
    model = sv.load_pretrained(kind)
    assert model.classes == sv.ACTIONS and model.block == 16
    info = model.info
    assert info["test_accuracy"] >= 0.9 and info["train_clips"] == 120
    F, y = held_out
    assert sv.accuracy(model, F, y) >= 2 / 3  # chance is 1/3


def test_weights_are_plain_arrays():
    from importlib import resources

    base = resources.files("sciexplain_video") / "weights"
    for stem in ("motion_cnn", "motion_fisher"):
        with np.load(str(base / f"{stem}.npz"), allow_pickle=False) as data:
            assert all(data[k].dtype.kind == "f" for k in data.files)
        json.loads((base / f"{stem}.json").read_text())


def test_save_load_round_trip(tmp_path, fields, cnn, fisher_model):
    for model in (cnn, fisher_model):
        sv.save_model(model, tmp_path / "m", {"note": "x"})
        back = sv.load_model(tmp_path / "m")
        assert back.info == {"note": "x"}
        x = (sv.stack_fields(fields) if isinstance(model, sv.MotionCNN)
             else sv.descriptor_batch(fields, model.spec)[0])
        with torch.no_grad():
            torch.testing.assert_close(back(x), model(x))


def test_training_is_seeded(fields):
    labels = [0, 1, 2]
    a = sv.train_cnn(fields, labels, seed=3, epochs=2)
    b = sv.train_cnn(fields, labels, seed=3, epochs=2)
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k
    f = sv.fit_fisher(fields * 2, labels * 2, seed=0, n_components=2)
    assert f.fisher.n_components == 2 and sv.predict(f, fields).shape == (3,)


def test_import_is_cheap():
    code = ("import sys, sciexplain_video; "
            "print(any(m in sys.modules for m in ('torch', 'av', 'sciexplain', 'xarray')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_entry_point_and_claims(fields):
    import sciexplain as sx
    from sciexplain.plugins import load_domains

    assert "video" in sx.domains()
    dom = load_domains()["video"]
    assert dom.claims(fields[0]) and dom.claims(fields) and not dom.claims([]) and not dom.claims("clip.mp4")
    x, labels = dom.to_tensor(fields)
    assert tuple(x.shape) == (3, 2, 24, 4, 4) and labels["dims"][1] == "component"
    assert dom.dims == ("clip", "frame", "block_y", "block_x")
