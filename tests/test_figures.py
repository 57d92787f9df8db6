"""Every PNG the tools write, rendered from fixed data: its size, that it is not blank, that no
two labels overlap, plain numbers on the axes, and a title naming the protocol and the data."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, read_jsonl
from or_common import figures

VIEW = FIXTURES / "view"


@pytest.fixture
def drawn(monkeypatch):
    """The figures the tools save, kept (and still saved) so a test can inspect them."""
    kept = []
    real_save = figures.save

    def save(fig, path):
        fig.canvas.draw()
        kept.append(fig)
        real_save(fig, path)

    monkeypatch.setattr(figures, "save", save)
    return kept


def check_png(path, min_w=500, min_h=300, max_w=4000, max_h=3000) -> None:
    import matplotlib.image as mpimg

    pixels = mpimg.imread(path)
    h, w = pixels.shape[:2]
    assert min_w <= w <= max_w and min_h <= h <= max_h, (w, h)
    ink = (pixels[..., :3].mean(axis=2) < 0.9).mean()  # share of pixels that are not white
    assert 0.01 < ink < 0.6, ink


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: a.__class__.__name__ == "Text")]


def test_score_chart_labels_never_overlap_and_title_names_protocol_and_data(tmp_path, drawn):
    from or_score.report import load_run, plot, summarize

    def summary(path, label):
        return summarize(load_run(str(path), "strict", label, lambda bad: None))

    # three runs with equal 100.0 bars side by side: the labels the old chart printed as 100.0100.0
    runs = [summary(VIEW / "base.jsonl", "base"), summary(VIEW / "calm.jsonl", "after CALM")]
    runs.append(summary(VIEW / "calm.jsonl", "a third run with a rather long name"))
    png = tmp_path / "scores.png"
    plot(runs, str(png))
    fig = drawn[0]
    assert figures.overlapping_texts(fig) == []
    ax = fig.axes[0]
    assert ax.get_title(loc="left").startswith("pass@1 by benchmark · protocol strict")
    assert "data: " in ax.get_title(loc="left") and "nl4opt_test.jsonl" in ax.get_title(loc="left")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "20", "40", "60", "80", "100"]
    legend = fig.legends[0].get_window_extent()
    assert legend.y1 <= ax.get_window_extent().y0  # under the chart, never over a bar
    check_png(png)


def test_flaw_chart_has_all_seven_triggers_shared_scale_and_run_names(tmp_path, drawn):
    from or_annotate.report import distribution, plot

    base = [
        dict(r, flaws={"triggers": t})
        for r, t in zip(read_jsonl(VIEW / "base.jsonl"), ([7], [], [5, 1], [7], []), strict=True)
    ]
    none = [dict(r, flaws={"triggers": []}) for r in read_jsonl(VIEW / "calm.jsonl")]
    png = tmp_path / "flaws.png"
    plot(
        [("base", distribution(base)), ("after CALM", distribution(none))],
        str(png),
        "Flaw triggers · annotator rules (rules-v1)",
        ["runs/x/09-flaws.jsonl"],
    )
    fig = drawn[0]
    assert figures.overlapping_texts(fig) == []
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert names == [
        "T1 premature natural-language solving",
        "T2 fragmented coding",
        "T3 redundant manual verification",
        "T4 missing sanity check",
        "T5 flawed reasoning or modeling",
        "T6 implementation error",
        "T7 protocol violation",
    ]
    limits = {ax.get_xlim() for ax in fig.axes}
    assert len(limits) == 1 and next(iter(limits))[0] == 0  # one scale, from zero, in every panel
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["base", "after CALM"]
    assert "09-flaws" not in [t.get_text() for t in fig.legends[0].get_texts()]
    assert "data: 09-flaws.jsonl" in fig._suptitle.get_text()
    check_png(png)


def test_flaw_chart_without_any_flaw_starts_at_zero(tmp_path, drawn):
    from or_annotate.report import distribution, plot

    none = [dict(r, flaws={"triggers": []}) for r in read_jsonl(VIEW / "calm.jsonl")]
    plot([("clean", distribution(none))], str(tmp_path / "f.png"))
    low, high = drawn[0].axes[0].get_xlim()
    assert low == 0 and high > 0  # not the -0.04..0.04 of an empty autoscaled axis
    check_png(tmp_path / "f.png")


def test_loss_plot_has_whole_steps_and_no_offset(tmp_path, drawn):
    from or_sft.outputs import plot_loss

    metrics = tmp_path / "metrics.jsonl"
    rows = [
        {"step": i, "loss": 11.92 + 0.0004 * (-1) ** i, "lr": 1e-5 * (4 - i) / 3} for i in (1, 2, 3)
    ]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = plot_loss(metrics, tmp_path / "loss.png", "or-sft · model tiny\ndata: golden.jsonl")
    fig = drawn[0]
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    shown = [t.get_text() for t in ax.get_xticklabels() if low <= t.get_position()[0] <= high]
    assert shown == ["1", "2", "3"]  # whole steps only
    for axis in fig.axes:
        assert axis.yaxis.get_offset_text().get_text() == ""  # no "+1.192e1"
    assert figures.overlapping_texts(fig) == []
    check_png(png)


def test_grpo_curves_share_steps_and_keep_the_legend_outside(tmp_path, drawn):
    from or_grpo.metrics import plot_runs

    def run(shift):
        return [
            {
                "step": s,
                "accuracy": 0.3 + shift + 0.05 * s,
                "val_accuracy": 0.4 + shift,
                "code_blocks": 1 + 0.1 * s,
                "response_tokens": 6000 - 100 * s,
            }
            for s in range(1, 6)
        ]

    png = tmp_path / "curves.png"
    plot_runs([("from base", run(0)), ("from CALM-SFT", run(0.1))], png)
    fig = drawn[0]
    assert figures.overlapping_texts(fig) == []
    assert {ax.get_xlim() for ax in fig.axes} == {fig.axes[0].get_xlim()}
    assert fig.axes[0].get_ylim() == (0, 1)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["from base", "from CALM-SFT"]
    check_png(png)
