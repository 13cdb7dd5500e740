"""HTML and LaTeX show the text as written, escaped; the Jupyter wrapper; figures."""

from __future__ import annotations

import html
import re

import matplotlib
import numpy as np
import pytest

import sciexplain_text as st

NASTY = "Hi <script>alert('x')</script> & 100% of {braces} \\cmd #1 a_b $5 ~tilde ^hat\n\nnew paragraph"


@pytest.fixture()
def nasty_R(cnn):
    tok = st.WordTokenizer.fit([NASTY])
    import torch
    torch.manual_seed(0)
    m = st.TextCNN(len(tok), 2, n_filters=4, window=2, max_length=40).eval()
    return st.explain_documents(m, st.Documents([NASTY], tok))


def test_html_is_escaped_and_keeps_the_text(nasty_R):
    page = st.to_html(nasty_R)
    assert "<script" not in page and "</script" not in page and "&lt;" in page and "&amp;" in page
    body = re.search(r'pre-wrap[^>]*>(.*)</div></div>', page, re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]+>", "", body)) == NASTY  # every character kept, in order
    spans = re.findall(r'title="([^"]+)">([^<]*)</span>', page)
    words = [html.unescape(w) for _, w in spans]
    assert words == [t.text for t in st.WordTokenizer.fit([NASTY]).tokenize(NASTY)]
    np.testing.assert_allclose([float(v) for v, _ in spans], nasty_R.values[0][: len(spans)], rtol=1e-3, atol=1e-6)


def test_latex_escapes_every_special_character(nasty_R, tmp_path):
    path = tmp_path / "doc.tex"
    tex = st.to_latex(nasty_R, path, 0, standalone=True)
    assert path.read_text(encoding="utf-8") == tex
    body = tex.split("\\setlength{\\fboxsep}{1pt}\n", 1)[1].split("\\end{document}")[0]
    for raw, esc in [("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("_", r"\_"), ("$", r"\$"), ("{", r"\{"),
                     ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}"),
                     ("\\cmd", r"\textbackslash{}"), ("<", r"\textless{}")]:
        assert esc in body, raw
    # outside the markup the sciexplain adds, no unescaped special character remains
    stripped = re.sub(r"\\colorbox\{(red|blue)!\d+\}\{\\strut ", "", body).replace("\\par", "")
    stripped = re.sub(r"\\(textbackslash|textasciitilde|textasciicircum|textless|textgreater|textbar)\{\}", "", stripped)
    stripped = re.sub(r"\\[%&#_${}]", "", stripped)
    assert not re.search(r"[%&#_$~^\\]", stripped)
    from sciexplain_text.render import latex_escape
    assert latex_escape("a%b{c}") == r"a\%b\{c\}"


def test_show_wrapper_renders_in_jupyter(nasty_R):
    shown = st.show(nasty_R)
    assert isinstance(shown, st.TextRelevance) and shown.data is nasty_R
    assert shown._repr_html_() == st.to_html(nasty_R)
    assert "top tokens" in repr(shown)
    assert not hasattr(nasty_R, "_repr_html_") or "sciexplain-text" not in nasty_R._repr_html_()
    with pytest.raises(st.TextInputError, match="text explanation"):
        st.show(nasty_R.isel(token=0))
    with pytest.raises(st.TextInputError, match="position"):
        st.to_html(nasty_R, 5)


def test_figures_return_figures(nasty_R, cnn, tok, texts):
    assert isinstance(st.plot_document(nasty_R, 0), matplotlib.figure.Figure)
    docs = st.Documents(texts, tok)
    res = {m: st.explain_documents(cnn, docs, 0, method=m) for m in ("sensitivity", "gradient_x_input", "lrp")}
    assert isinstance(st.plot_methods(res, 1), matplotlib.figure.Figure)
    S = st.word_type_relevance(res["lrp"])
    assert isinstance(st.plot_top_words(S, 3, min_count=1), matplotlib.figure.Figure)
    matplotlib.pyplot.close("all")
