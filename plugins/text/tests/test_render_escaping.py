"""Control and bidirectional-override characters are shown as code points in HTML and LaTeX, offsets kept."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

import sciexplain_text as st
from sciexplain_text.render import control_escape, html_escape, latex_escape

HOSTILE = "safe\x00word \u202eevil\u202c text\u2066iso\u2069 and\x1b[31m ansi\x7f del\x85 end"
DANGEROUS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture()
def hostile_R():
    import torch
    tok = st.WordTokenizer.fit([HOSTILE])
    torch.manual_seed(0)
    m = st.TextCNN(len(tok), 2, n_filters=4, window=2, max_length=40).eval()
    return st.explain_documents(m, st.Documents([HOSTILE], tok))


def test_html_and_latex_hold_no_control_or_bidi_character(hostile_R):
    page = st.to_html(hostile_R)
    tex = st.to_latex(hostile_R, standalone=True)
    for out in (page, tex):
        assert not DANGEROUS.search(out)
        for cp in ("[U+0000]", "[U+202E]", "[U+202C]", "[U+2066]", "[U+2069]", "[U+001B]", "[U+007F]", "[U+0085]"):
            assert cp in out, cp


def test_html_shows_the_text_with_code_points_in_place(hostile_R):
    body = re.search(r'pre-wrap[^>]*>(.*)</div></div>', st.to_html(hostile_R), re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]+>", "", body)) == control_escape(HOSTILE)


def test_token_offsets_still_point_into_the_original_text(hostile_R):
    text = str(hostile_R.coords["text"].values[0])
    assert text == HOSTILE  # the result keeps the document as written
    starts, ends = hostile_R.coords["start"].values[0], hostile_R.coords["end"].values[0]
    words = [t.text for t in st.WordTokenizer.fit([HOSTILE]).tokenize(HOSTILE)]
    spans = [text[s:e] for s, e in zip(starts, ends) if s >= 0]
    assert spans == words
    shown = [html.unescape(w) for w in re.findall(r'title="[^"]+">([^<]*)</span>', st.to_html(hostile_R))]
    assert shown == [control_escape(w) for w in spans]


@given(hst.text(alphabet=hst.characters(min_codepoint=0, max_codepoint=0x2100, blacklist_categories=("Cs",)),
                max_size=40))
@settings(max_examples=200, deadline=None)
def test_escapes_never_leave_a_dangerous_character(text):
    for out in (html_escape(text), latex_escape(text)):
        assert not DANGEROUS.search(out)
    # reversible for the code points: every dangerous character becomes exactly its [U+XXXX]
    assert re.sub(r"\[U\+([0-9A-F]{4})\]", lambda m: chr(int(m.group(1), 16)), control_escape(text)) == \
        re.sub(r"\[U\+([0-9A-F]{4})\]", lambda m: chr(int(m.group(1), 16)), text)
    assert control_escape("tab\tnew\nline\r") == "tab\tnew\nline\r"
