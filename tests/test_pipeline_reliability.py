"""Pipeline files under careless and hostile input (issue 18): every problem is a ConfigError with its
line, never another exception; check validates every value the run validates; labels are never truncated."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability_fixtures import PIPELINE, write_inputs
from sciexplain.pipeline import ConfigError, DataLoadError, check, load_config, run
from sciexplain.pipeline.config import MAX_DEPTH
from sciexplain.pipeline.loading import load_labels

pytest.importorskip("dask")
pytest.importorskip("zarr")


def _line(text: str, needle: str) -> int:
    for no, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return no
    raise AssertionError(f"{needle!r} not in the text")


def _problems(err: ConfigError) -> dict:
    return {(p.line, p.path): p.message for p in err.problems}


# -- encodings and nesting ------------------------------------------------------------------------

def test_a_latin1_file_is_a_config_error_with_its_line(tmp_path):
    path = tmp_path / "latin.toml"
    path.write_bytes('[run]\nname = "ok"\n# caf\u00e9 au lait\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        check(path)
    (problem,) = info.value.problems
    assert problem.line == 3 and "not UTF-8" in problem.message and "0xe9" in problem.message
    assert "column 6" in problem.message


def test_a_utf8_bom_is_accepted(tmp_path):
    write_inputs(tmp_path)
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + PIPELINE.encode("utf-8"))
    assert check(path)["run"]["chunk"] == 3


@pytest.mark.parametrize("text", [
    "a = " + "[" * 5000 + "]" * 5000,
    "a = " + "{ b = " * 3000 + "1" + " }" * 3000,
    ".".join(f"k{i}" for i in range(MAX_DEPTH + 5)) + " = 1",
    "\n".join(f"[{'.'.join(['t'] * (d + 1))}]" for d in range(MAX_DEPTH + 3)),
])
def test_deep_nesting_is_a_config_error_not_a_recursion_error(tmp_path, text):
    path = tmp_path / "deep.toml"
    path.write_text("[run]\nseed = 1\n" + text + "\n")
    with pytest.raises(ConfigError) as info:
        check(path)
    assert any("nested" in p.message for p in info.value.problems)
    if text.startswith("a = "):
        assert info.value.problems[0].line == 3


def test_a_missing_file_and_a_folder_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        check(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="is a folder"):
        check(tmp_path)


# -- labels ---------------------------------------------------------------------------------------

def test_float_labels_are_refused_naming_the_first_bad_row(tmp_path):
    cfg = write_inputs(tmp_path)
    np.save(tmp_path / "y.npy", np.array([1.0, 0.0, 2.9, 1.0, 2.2, 0.0]))
    with pytest.raises(ConfigError) as info:
        check(cfg)
    problems = _problems(info.value)
    message = problems[(_line(PIPELINE, "target_file"), "data.target_file")]
    assert "row 2 holds 2.9" in message and "not an integer" in message
    with pytest.raises(ConfigError, match="row 2 holds 2.9"):
        run(cfg, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("labels, row", [
    (np.array([0.0, np.nan, 1.0]), 1), (np.array([0, 1, np.inf]), 2), (np.array([1.5]), 0),
])
def test_load_labels_refuses_non_integers(tmp_path, labels, row):
    np.save(tmp_path / "y.npy", labels)
    with pytest.raises(DataLoadError, match=f"row {row} holds"):
        load_labels(tmp_path / "y.npy")


def test_load_labels_accepts_whole_floats_and_refuses_other_kinds(tmp_path):
    np.save(tmp_path / "y.npy", np.array([2.0, 0.0, 1.0]))
    got = load_labels(tmp_path / "y.npy")
    assert got.dtype == np.int64 and got.tolist() == [2, 0, 1]
    np.save(tmp_path / "c.npy", np.array([[1], [2]]))
    assert load_labels(tmp_path / "c.npy").tolist() == [1, 2]
    for name, bad, match in (("b.npy", np.array([True, False]), "bool"), ("s.npy", np.array(["1", "2"]), "<U1"),
                             ("m.npy", np.zeros((2, 3)), r"shape \(2, 3\)")):
        np.save(tmp_path / name, bad)
        with pytest.raises(DataLoadError, match=match):
            load_labels(tmp_path / name)
    (tmp_path / "t.npy").write_bytes((tmp_path / "y.npy").read_bytes()[:-5])
    with pytest.raises(DataLoadError, match="could not be read"):
        load_labels(tmp_path / "t.npy")


# -- one validation path: what the run refuses, check refuses first, with the line -----------------

def _edit(old: str, new: str) -> str:
    assert old in PIPELINE
    return PIPELINE.replace(old, new, 1)


STATIC_CASES = {
    "options set by the pipeline": (_edit('method = "gradient"\n', 'method = "gradient"\noptions = { dims = ["a"] }\n'),
                                    "options = { dims", "methods[1].options.dims", "set by the pipeline itself"),
    "dims of the wrong length": (_edit('dims = ["image", "color", "y", "x"]', 'dims = ["image", "y", "x"]'),
                                 "dims = [", "data.dims", "names 3 dims"),
    "duplicate dims": (_edit('dims = ["image", "color", "y", "x"]', 'dims = ["image", "y", "y", "x"]'),
                       "dims = [", "data.dims", "distinct"),
    "a negative target": (_edit('method = "gradient"\n', 'method = "gradient"\ntarget = -1\n'), "target = -1",
                          "methods[1].target", "expected a class index >= 0"),
    "reversed bounds": (_edit("bounds = [0.0, 1.0]", "bounds = [1.0, 0.0]"), "bounds =", "methods[0].bounds",
                        "low must be <= high"),
    "NaN bounds": (_edit("bounds = [0.0, 1.0]", "bounds = [nan, 1.0]"), "bounds =", "methods[0].bounds[0]",
                   "finite"),
    "an infinite radius": (PIPELINE + "\n[evaluation.continuity]\nradius = inf\n", "radius = inf",
                           "evaluation.continuity.radius", "finite"),
    "a NaN window size": (_edit('kind = "pool"\ndims = ["color"]', 'kind = "windows"\ndim = "x"\nsize = nan'),
                          "size = nan", "pooling[0].size", "finite"),
    "bounds for a gradient": (_edit('method = "gradient"\n', 'method = "gradient"\nbounds = [0.0, 2.0]\n'),
                              "bounds = [0.0, 2.0]", "methods[1].bounds", "remove bounds="),
    "an unknown option": (_edit('method = "gradient"\n', 'method = "gradient"\noptions = { steps = 4 }\n'),
                          "options = { steps", "methods[1].options", "unknown option"),
    "an option value the method refuses": (
        _edit('method = "gradient"\n', 'method = "integrated_gradients"\noptions = { steps = 0 }\n'),
        "options = { steps", "methods[1].options", "steps and batch_size must be >= 1"),
    "an option of the wrong type": (
        _edit('method = "gradient"\n', 'method = "smoothgrad"\noptions = { noise = "loud" }\n'),
        "options = { noise", "methods[1].options", "refuses these options"),
}


@pytest.mark.parametrize("case", sorted(STATIC_CASES))
def test_check_refuses_what_the_run_refuses_with_the_line(tmp_path, case):
    text, needle, path, fragment = STATIC_CASES[case]
    cfg = write_inputs(tmp_path, text=text)
    with pytest.raises(ConfigError) as info:
        check(cfg)
    problems = _problems(info.value)
    hits = [m for (line, p), m in problems.items() if p == path and line == _line(text, needle)]
    assert hits and fragment in hits[0], problems
    # the run refuses the same file with the same problems, before writing anything
    with pytest.raises(ConfigError) as ran:
        run(cfg, out=tmp_path / "out")
    assert _problems(ran.value) == problems
    assert not (tmp_path / "out").exists()


def test_a_target_beyond_the_models_classes_is_found_by_the_probe_with_its_line(tmp_path):
    text = _edit('method = "gradient"\n', 'method = "gradient"\ntarget = 7\n')
    cfg = write_inputs(tmp_path, text=text)
    check(cfg)  # the file alone cannot say how many classes the model has
    with pytest.raises(ConfigError) as info:
        check(cfg, probe=True)
    (problem,) = info.value.problems
    assert problem.line == _line(text, "target = 7") and problem.path == "methods[1].target"
    assert "out of range" in problem.message and "3 output(s)" in problem.message
    # the run's first step is the same probe: the same problem, nothing written
    with pytest.raises(ConfigError) as ran:
        run(cfg, out=tmp_path / "out")
    assert ran.value.problems == info.value.problems
    assert not (tmp_path / "out").exists()


def test_the_probe_passes_a_good_file_and_check_writes_nothing(tmp_path):
    cfg = write_inputs(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert check(cfg, probe=True)["methods"][0]["name"] == "lrp"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_output_path_under_a_file_is_a_problem_of_the_file(tmp_path):
    cfg = write_inputs(tmp_path, text=PIPELINE.replace("[run]\n", '[run]\nout = "x.npy/results"\n'))
    with pytest.raises(ConfigError) as info:
        check(cfg)
    assert any(p.path == "run.out" and "is a file" in p.message and p.line == 2 for p in info.value.problems)


# -- fuzzing the parser: a ConfigError or a valid config, never another exception ------------------

_KEYS = st.sampled_from(["run", "data", "model", "methods", "pooling", "evaluation", "figures", "name", "seed",
                         "chunk", "file", "dims", "target", "bounds", "options", "params", "kind", "radius",
                         "perturbation", "continuity", "x", "é", "a b", ""])
_SCALARS = st.one_of(st.integers(-2 ** 63, 2 ** 63 - 1), st.floats(allow_nan=True, allow_infinity=True),
                     st.booleans(), st.text(max_size=8))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(_KEYS, inner, max_size=3)), max_leaves=12)


def _toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "_-" for c in key) and key.isascii() else _toml_str(key)


def _toml_str(s: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in s) + '"'


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _toml(doc: dict) -> str:
    lines = []
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{_toml_key(key)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"[[{_toml_key(key)}]]")
                lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _load(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_bytes(raw)
    try:
        config = load_config(path, domains={})[0]
    except ConfigError as err:
        assert err.problems and all(isinstance(p.message, str) for p in err.problems)
        str(err)
    else:
        assert isinstance(config, dict)


_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(doc=st.dictionaries(_KEYS, _VALUES, max_size=5))
def test_fuzz_random_toml_documents(tmp_path, doc):
    _load(tmp_path, _toml(doc).encode("utf-8"))


@_FUZZ
@given(raw=st.binary(max_size=200))
def test_fuzz_random_bytes(tmp_path, raw):
    _load(tmp_path, raw)


_TOKENS = st.sampled_from(["[", "]", "[[", "]]", "{", "}", "=", ",", ".", '"', "'", '"""', "\n", " ", "#", "\\",
                           "run", "methods", "data", "model", "name", "1", "1.5", "nan", "-inf", "true", "é",
                           "\x00", "\u202e", "options", "dims", "target"])


@_FUZZ
@given(tokens=st.lists(_TOKENS, max_size=60), encoding=st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252"]))
def test_fuzz_token_soup_in_several_encodings(tmp_path, tokens, encoding):
    _load(tmp_path, "".join(tokens).encode(encoding, errors="replace"))


@_FUZZ
@given(depth=st.integers(0, 400), opener=st.sampled_from(["[", "{ a = "]))
def test_fuzz_nesting(tmp_path, depth, opener):
    closer = "]" if opener == "[" else " }"
    _load(tmp_path, f"x = {opener * depth}1{closer * depth}\n".encode())


def test_the_pipeline_in_the_fixture_is_valid(tmp_path):
    cfg = write_inputs(tmp_path)
    assert textwrap.dedent(cfg.read_text()) == PIPELINE
    assert len(check(cfg)["methods"]) == 2
