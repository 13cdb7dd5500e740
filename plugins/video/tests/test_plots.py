"""Figures return matplotlib Figures and mark frames without vectors."""

from __future__ import annotations

import matplotlib
import pytest

import sciexplain_video as sv


def test_frame_curve_and_frames(cnn, fields, clips):
    R = sv.explain_motion(cnn, fields)
    fig = sv.plot_frame_curve(R, clip=1, truth=clips[1][1])
    assert isinstance(fig, matplotlib.figure.Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("I") == 2  # the two I-frames are marked
    fig = sv.plot_frames(R, frames=[0, 5, 9], clip=1)
    assert isinstance(fig, matplotlib.figure.Figure)
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert "no vectors" in titles[0] and "(P)" in titles[1]
    fig = sv.DOMAIN.plot(R)
    assert isinstance(fig, matplotlib.figure.Figure)
    fig = R.relevance.plot(1, truth=clips[1][1])  # the video view of clip 1: its frame curve
    assert [t.get_text() for t in fig.axes[0].texts].count("I") == 2
    matplotlib.pyplot.close("all")


def test_perturbation_figure(cnn, fields):
    R = sv.explain_motion(cnn, fields)
    curves = {"LRP": sv.block_perturbation(cnn, fields, R, steps=8),
              "random": sv.block_perturbation(cnn, fields, R, order="random", steps=8)}
    assert curves["LRP"].sizes["step"] == 9
    assert isinstance(sv.plot_perturbation(curves), matplotlib.figure.Figure)
    matplotlib.pyplot.close("all")


def test_titles_escape_mathtext(cnn, clips, tmp_path):
    import shutil

    odd = tmp_path / "price_$5_$6.mp4"
    shutil.copy(clips[0][0], odd)
    R = sv.explain_motion(cnn, sv.read_motion_vectors(odd))
    fig = sv.plot_frame_curve(R)
    fig.canvas.draw()  # unescaped "$5_$" would be parsed as TeX
    assert r"price_\$5_\$6.mp4" in fig.axes[0].get_title()
    matplotlib.pyplot.close("all")
