"""The study's figures draw what their captions, legends and footnotes say, read back from the
figure objects (``report/figures.py``): each series' points and range band, filled markers for
measured points and hollow for predicted, the × where a line stops short of the largest batch,
the TPOT target, the carbon bars' heights, places and whiskers, the embodied-share curves from
the charge's definition, the region labels and the crossover line, the hourly lines, the
legend's columns and the panels' layout."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.markers import MarkerStyle

from tokenprint.carbon.embodied import gpu_embodied
from tokenprint.carbon.intensity import IntensitySeries
from tokenprint.report import figures as rf
from tokenprint.report.config import StudyConfig
from tokenprint.report.study import StudyResult, best_rows, run_study

J_PER_KWH = 3.6e6
S_PER_YEAR = 365.25 * 86400
MODELS = ["llama-3.2-1b", "llama-2-7b"]
GPUS = ["t4", "rtx-6000-ada"]
BLUE, ORANGE = "#1b6ca8", "#e07b00"       # the first two GPUs' colours
RED = "#aa0000"
MEASURED = {"status": "ok", "source": "measured", "model": "llama-3.2-1b", "hardware_id": "t4",
            "batch": 8, "input_len": 256, "output_len": 64, "prefill_energy_j": 20.0,
            "decode_energy_j": 150.0, "e2e_s": 3.0, "ttft_s": 0.2, "tpot_s": 0.04,
            "energy_kind": "measured"}


@pytest.fixture(scope="module")
def res(catalog: Any) -> StudyResult:
    """Two models on two GPUs in two regions; llama-2-7b fits only batch 1 on the T4, and one
    point is measured."""
    series = IntensitySeries(0.0, 3600.0, 100.0 + 10.0 * np.arange(48))
    return run_study(StudyConfig(models=MODELS, gpus=GPUS, regions=["fr", "pl"],
                                 batches=[1, 8, 64], mix=[(256, 64, 1.0)], pue=1.1,
                                 utilization=0.5, results_records=[MEASURED],
                                 intensity=series, intensity_region="FR"), catalog)


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the module closes, kept open to read back."""
    figs: list[Any] = []
    monkeypatch.setattr(plt, "close", figs.append)
    return figs


def _marker(name: str) -> np.ndarray:
    m = MarkerStyle(name)
    return np.asarray(m.get_path().transformed(m.get_transform()).vertices)


def _same_marker(collection: Any, name: str) -> bool:
    verts = np.asarray(collection.get_paths()[0].vertices)
    want = _marker(name)
    return verts.shape == want.shape and np.allclose(verts, want)


def _groups(res: StudyResult) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    return [(k, df.sort_values("batch")) for k, df in res.performance.groupby(["model", "gpu"])]


def _look(model: str) -> tuple[Any, str]:
    return rf.MODEL_STYLES[MODELS.index(model)], rf.MODEL_MARKERS[MODELS.index(model)]


def _check_series(ax: Any, res: StudyResult, y: str, scale: float) -> None:
    """Each (model, GPU): its line, band, filled measured and hollow predicted markers."""
    lines = {ln.get_label(): ln for ln in ax.lines}
    coll = [c for c in ax.collections if c.get_zorder() < 5]
    for n, ((model, gpu), df) in enumerate(_groups(res)):
        colour = BLUE if gpu == "t4" else ORANGE
        style, marker = _look(model)
        line = lines[f"{model} · {gpu}"]
        assert line.get_color() == colour and line.get_linewidth() == 1.8
        assert line.get_linestyle() == {"-": "-", "--": "--"}[style]
        np.testing.assert_allclose(line.get_xdata(), df["batch"])
        np.testing.assert_allclose(line.get_ydata(), df[y] * scale, rtol=1e-12)
        band, filled, hollow = coll[3 * n: 3 * n + 3]
        assert band.get_alpha() == 0.12 and list(band.get_linewidth()) == [0.0]
        assert np.allclose(band.get_facecolor()[0][:3], matplotlib.colors.to_rgb(colour))
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.min() == pytest.approx(df[f"{y}_low"].min() * scale, rel=1e-9)
        assert ys.max() == pytest.approx(df[f"{y}_high"].max() * scale, rel=1e-9)
        meas = (df["source"] == "measured").to_numpy()
        want = np.column_stack([df["batch"], df[y] * scale])
        np.testing.assert_allclose(np.asarray(filled.get_offsets()).reshape(-1, 2),
                                   want[meas], rtol=1e-12)
        np.testing.assert_allclose(np.asarray(hollow.get_offsets()).reshape(-1, 2),
                                   want[~meas], rtol=1e-12)
        for c in (filled, hollow):
            assert c.get_sizes().tolist() == [28] and c.get_zorder() == 3
            assert _same_marker(c, marker)
        rgba = matplotlib.colors.to_rgba(colour)
        assert np.allclose(filled.get_facecolor()[0], rgba)
        assert np.allclose(hollow.get_facecolor()[0], (1, 1, 1, 1))
        assert np.allclose(hollow.get_edgecolor()[0], rgba)


def _check_memory_marks(ax: Any, res: StudyResult, y: str, scale: float) -> None:
    """One red × at the last batch of each line that stops short of 64: llama-2-7b on the T4."""
    (x,) = [c for c in ax.collections if c.get_zorder() == 5]
    last = res.performance[(res.performance["model"] == "llama-2-7b")
                           & (res.performance["gpu"] == "t4")].sort_values("batch").iloc[-1]
    assert int(last["batch"]) == 1
    np.testing.assert_allclose(x.get_offsets(), [[1, last[y] * scale]], rtol=1e-12)
    assert _same_marker(x, "x") and x.get_sizes().tolist() == [46]
    assert np.allclose(x.get_facecolor()[0], matplotlib.colors.to_rgba(RED))


def _check_batch_axis(ax: Any) -> None:
    assert ax.get_xscale() == "log" and ax.get_xticks().tolist() == [1, 8, 64]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "8", "64"]
    assert ax.get_xlabel() == "batch size (requests)"
    _check_log_axis(ax.yaxis)


def _check_log_axis(axis: Any) -> None:
    ticks = axis.get_major_locator().tick_values(1, 100)
    assert {1, 2, 5, 10, 20, 50, 100} <= set(np.round(ticks, 9).tolist())
    assert not {3, 30} & set(np.round(ticks, 9).tolist())
    assert axis.get_major_formatter()(0.5, 0) == "0.5"


def _legend(fig: Any) -> tuple[list[str], int]:
    (leg,) = fig.legends
    return [t.get_text() for t in leg.get_texts()], leg._ncols


def test_throughput_and_latency_figure(res, drawn, tmp_path: Path):
    out = rf.fig_throughput_latency(res, tmp_path / "t.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    (fig,) = drawn
    # four series make two legend rows of three: 4.3 in + 0.24 in for the second row
    assert fig.get_size_inches().tolist() == [11.0, pytest.approx(4.54)]
    thr, tpot = fig.axes
    assert (thr.get_title(), thr.get_ylabel()) == ("Throughput", "throughput (output tokens/s)")
    assert (tpot.get_title(), tpot.get_ylabel()) == ("Decode latency (TPOT)",
                                                     "time per output token (ms)")
    _check_series(thr, res, "throughput_tok_s", 1.0)
    _check_series(tpot, res, "tpot_s", 1e3)
    _check_memory_marks(thr, res, "throughput_tok_s", 1.0)
    _check_memory_marks(tpot, res, "tpot_s", 1e3)
    for ax in (thr, tpot):
        _check_batch_axis(ax)
        # above the legend (two rows of three: 0.6 in) and the note (one line: 0.24 in)
        assert ax.get_position().y0 >= (0.6 + 0.24) / 4.54
    (target,) = [ln for ln in tpot.lines if ln.get_label().startswith("_")]
    assert list(target.get_ydata()) == [200.0, 200.0]          # 0.2 s, in ms
    assert (target.get_color(), target.get_linestyle(), target.get_linewidth()) == (RED, "--",
                                                                                     1.0)
    (label,) = tpot.texts
    assert label.get_text() == "TPOT target 200 ms" and label.get_position()[1] == 200 / 1.08
    assert label.get_color() == RED and label.get_position()[0] == 0.98
    box = label.get_bbox_patch()        # on white, 1 point of padding at 8-point text
    ref = Figure().text(0, 0, "x", fontsize=8, bbox={"pad": 1}).get_bbox_patch()
    assert box.get_facecolor() == (1.0, 1.0, 1.0, 1.0)
    assert box.get_boxstyle().pad == ref.get_boxstyle().pad
    labels, ncol = _legend(fig)
    assert labels == [f"{m} · {g}" for (m, g), _ in _groups(res)]
    # the longest label (27 characters) takes 0.6 + 0.075 · 27 in; 11 in × 0.95 hold 3
    assert ncol == 3
    assert [t.get_text() for t in fig.texts] == [
        "filled markers: measured · hollow: predicted · bands: range · ×: largest batch that "
        "fits memory"]


def test_energy_per_token_figure(res, drawn, tmp_path: Path):
    rf.fig_energy_per_token(res, tmp_path / "e.png")
    (fig,) = drawn
    pre, dec = fig.axes
    assert pre.get_position().x1 < dec.get_position().x0        # side by side
    assert pre.get_title() == "Prefill: energy per input token"
    assert dec.get_title() == "Decode: energy per output token"
    for ax, y in ((pre, "prefill_j_per_token"), (dec, "decode_j_per_token")):
        assert ax.get_ylabel() == "energy (mJ per token)"
        _check_series(ax, res, y, 1e3)
        _check_memory_marks(ax, res, y, 1e3)
        _check_batch_axis(ax)
        assert ax.get_position().x0 >= 0 and ax.get_position().x1 <= 1
    assert fig.texts[0].get_text().endswith(" · ×: largest batch that fits memory")
    # the legend sits on the one-line note: 0.24 in of the 4.54 in figure
    anchor = fig.legends[0].get_bbox_to_anchor().transformed(fig.transFigure.inverted())
    assert anchor.y0 == pytest.approx(0.24 / 4.54)


def test_nothing_short_of_memory_has_no_cross_in_the_note(res, drawn, tmp_path: Path):
    fits = replace(res, performance=res.performance[res.performance["gpu"] != "t4"])
    rf.fig_throughput_latency(fits, tmp_path / "t.png")
    rf.fig_energy_per_token(fits, tmp_path / "e.png")
    for fig in drawn:
        assert fig.texts[0].get_text() == ("filled markers: measured · hollow: predicted · "
                                           "bands: range")
        assert not [c for c in fig.axes[0].collections if c.get_zorder() == 5]


def test_carbon_bars_by_hand(res, drawn, tmp_path: Path):
    rf.fig_carbon_stacked(res, tmp_path / "c.png")
    (fig,) = drawn
    assert fig.get_size_inches().tolist() == [max(4.4 * 2, 7.0), 4.8]
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == MODELS
    best = best_rows(res)
    width = 0.8 / 4                       # two GPUs, two parts each
    for ax, model in zip(axes, MODELS, strict=True):
        assert ax.get_ylabel() == "mg CO2e per 1k output tokens" and ax.get_yscale() == "log"
        _check_log_axis(ax.yaxis)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["FR", "PL"]
        assert {t.get_fontsize() for t in ax.get_xticklabels()} == {8.5}
        assert [t.get_color() for t in ax.get_xticklabels()] == rf.REGION_COLOURS[:2]
        bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
        for j, gpu in enumerate(GPUS):
            s = best[(best["model"] == model) & (best["gpu"] == gpu)].set_index("region")
            for k, (part, alpha, hatch) in enumerate((("operational", 1.0, None),
                                                      ("embodied", 0.45, "//"))):
                rects = bars[f"{gpu}: {part}"].patches
                for i, (reg, rect) in enumerate(zip(["FR", "PL"], rects, strict=True)):
                    centre = i + (2 * j + 0.5 - 2) * width + k * width
                    assert rect.get_x() + rect.get_width() / 2 == pytest.approx(centre)
                    assert rect.get_width() == pytest.approx(width * 0.92)
                    assert rect.get_height() == pytest.approx(
                        s.loc[reg, f"{part}_g_per_1k"] * 1e3, rel=1e-12)
                    assert np.allclose(rect.get_facecolor(), matplotlib.colors.to_rgba(
                        BLUE if gpu == "t4" else ORANGE, alpha))
                    assert rect.get_hatch() == hatch
        whiskers = [c for c in ax.containers if not hasattr(c, "patches")]
        assert len(whiskers) == 4
        for c in whiskers:
            (bars_,) = c.lines[2]
            assert np.allclose(bars_.get_color(), matplotlib.colors.to_rgba("#333333"))
            assert bars_.get_linewidth() == 0.7
            assert [cap.get_markersize() for cap in c.lines[1]] == [3.0, 3.0]   # capsize 1.5
        segs = np.concatenate([c.lines[2][0].get_segments() for c in whiskers])
        want = np.concatenate([
            best[(best["model"] == model) & (best["gpu"] == gpu)].set_index("region").loc[
                ["FR", "PL"], [f"{part}_g_per_1k_low", f"{part}_g_per_1k_high"]].to_numpy()
            for gpu in GPUS for part in ("operational", "embodied")]) * 1e3
        np.testing.assert_allclose(segs[:, :, 1], want, rtol=1e-12)
    labels, ncol = _legend(fig)
    assert labels == ["t4: operational", "t4: embodied", "rtx-6000-ada: operational",
                      "rtx-6000-ada: embodied"]
    # 25 characters take 0.6 + 0.075 · 25 = 2.475 in; 8.8 in × 0.95 hold 3 of the 4 asked
    assert ncol == 3
    assert fig.texts[0].get_text().replace("\n", " ").endswith("whiskers: range of each part")


def test_panels_wrap_at_four_and_hide_the_rest():
    fig, axes = rf._panels(5, 4.4, 4.8, 7.0)
    assert fig.get_size_inches().tolist() == [4.4 * 4, 4.8 * 2]
    assert len(axes) == 5 and len(fig.axes) == 8
    assert [ax.get_visible() for ax in fig.axes] == [True] * 5 + [False] * 3
    one, _ = rf._panels(1, 4.4, 4.8, 7.0)
    assert one.get_size_inches().tolist() == [7.0, 4.8]
    plt.close("all")


def test_embodied_share_curves_by_hand(res, drawn, tmp_path: Path, catalog):
    cross = next(f for f in res.findings if f.kind == "crossover"
                 and f.numbers["model"] == "llama-3.2-1b")
    shown = replace(cross, numbers={**cross.numbers, "separable": True,
                                    "crossover_g_per_kwh": 123.4})
    rf.fig_embodied_share(replace(res, findings=[shown]), catalog, tmp_path / "s.png")
    (fig,) = drawn
    assert fig.get_size_inches().tolist() == [max(4.2 * 2, 6.4), 4.2]
    axes = [ax for ax in fig.axes if ax.get_visible()]
    perf = res.performance[res.performance["meets_tpot_target"]]
    ci = np.geomspace(5, 1000, 400)
    for ax, model in zip(axes, MODELS, strict=True):
        assert ax.get_title() == model and ax.get_ylim() == (0, 100)
        assert ax.get_xlabel() == "grid carbon intensity (g CO2e/kWh, log scale)"
        assert ax.get_ylabel() == "embodied share of total carbon (%)"
        _check_log_axis(ax.xaxis)
        curves = {ln.get_label(): ln for ln in ax.lines}
        tops = {}
        for gpu in GPUS:
            s = perf[(perf["model"] == model) & (perf["gpu"] == gpu)]
            best = s.loc[s["energy_j_per_output_token"].idxmin()]
            e_per_ci = best["energy_j_per_output_token"] * 1000 * 1.1 / J_PER_KWH
            emb = (gpu_embodied(catalog.gpu(gpu), catalog, "device").total_g.mid
                   * best["seconds_per_output_token"] * 1000 / 0.5 / (5.0 * S_PER_YEAR))
            line = curves[f"{gpu} (batch {int(best['batch'])})"]
            assert line.get_linewidth() == 1.8
            np.testing.assert_allclose(line.get_ydata(), emb / (emb + e_per_ci * ci) * 100,
                                       rtol=1e-9)
            tops[gpu] = lambda x, e=e_per_ci, m=emb: m / (m + e * x)
        for reg, note in zip(("fr", "pl"), ax.texts, strict=True):
            x_r = catalog.region(reg).intensity_g_per_kwh.value
            assert note.get_text() == reg.upper() and note.anncoords == "offset points"
            assert note.xycoords == ("data", "axes fraction") and note.xyann == (3, 0)
            assert note.get_bbox_patch().get_facecolor() == (1.0, 1.0, 1.0, 1.0)
            top = max(f(x_r) for f in tops.values())
            assert note.xy == pytest.approx((x_r, min(top + 0.04, 0.6)))
        dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
        if model == "llama-3.2-1b":
            (line,) = dashed
            assert list(line.get_xdata()) == [123.4, 123.4]
            assert line.get_label() == "equal carbon per token at 123 g/kWh"
        else:
            assert dashed == []
        assert ax.get_legend()._fontsize == 8 and ax.get_legend().get_frame_on()


def test_hourly_figure_by_hand(res, drawn, tmp_path: Path):
    rf.fig_hourly(res, tmp_path / "h.png")
    (fig,) = drawn
    (ax,) = fig.axes
    assert ax.get_title() == "Same load by hour: FR"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("hour of day (UTC)",
                                                   "mg CO2e per 1k output tokens")
    assert ax.get_xticks().tolist() == list(range(0, 24, 3))
    for (model, gpu), df in res.hourly.groupby(["model", "gpu"]):
        (line,) = [ln for ln in ax.lines if ln.get_label() == f"{model} · {gpu}"]
        np.testing.assert_allclose(line.get_ydata(), df["total_g_per_1k"] * 1e3, rtol=1e-12)
        assert line.get_marker() == _look(model)[1] and line.get_markersize() == 3.5
    assert ax.get_position().y1 <= 1.0 and ax.get_position().x0 < 0.2   # inside the figure
    assert rf.fig_hourly(replace(res, hourly=pd.DataFrame()), tmp_path / "none.png") is None
    unnamed = replace(res, config=replace(res.config, intensity_region=None))
    rf.fig_hourly(unnamed, tmp_path / "h2.png")
    assert drawn[-1].axes[0].get_title() == "Same load by hour: hourly grid"


def test_render_all_writes_every_figure_twice_over(res, tmp_path: Path, catalog):
    for _ in range(2):   # a new folder in a new folder, then the same folder again
        paths = rf.render_all(res, catalog, tmp_path / "new" / "fig")
    assert [p.name for p in paths] == ["throughput_latency.png", "energy_per_token.png",
                                       "carbon_per_1k_tokens.png",
                                       "embodied_share_vs_intensity.png", "carbon_by_hour.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_heights_footnotes_and_legends_by_hand():
    from types import SimpleNamespace

    def height(series: int) -> float:
        perf = pd.DataFrame({"model": [f"m{i}" for i in range(series)], "gpu": "t4"})
        return rf._height(SimpleNamespace(performance=perf))  # type: ignore[arg-type]

    # a legend row of three series each past the first adds 0.24 in to 4.3 in
    assert [height(n) for n in (1, 3, 4, 7, 10)] == pytest.approx([4.3, 4.3, 4.54, 4.78, 5.02])
    fig = Figure(figsize=(8, 4))
    text = " ".join(["word"] * 50)                       # 249 characters
    share = rf._footnote(fig, text)
    (note,) = fig.texts
    assert (note.get_va(), note.get_color(), note.get_fontsize()) == ("bottom", "#555555", 8)
    lines = note.get_text().split("\n")
    assert max(map(len, lines)) <= 120 and len(lines) == 3     # 8 in × 15 characters
    assert share == pytest.approx((0.16 * 3 + 0.08) / 4)
    narrow = Figure(figsize=(1, 4))                     # never narrower than 30 characters
    rf._footnote(narrow, "x" * 31)
    assert narrow.texts[0].get_text().split("\n") == ["x" * 30, "x"]
    wide = Figure(figsize=(20, 5))
    ax = wide.add_subplot()
    for i in range(5):
        ax.plot([0, 1], [i, i], label=f"s{i}")
    bottom = rf._legend_below(wide, ax, ncol=2, above=0.1)
    (leg,) = wide.legends
    assert leg._ncols == 2                               # the width holds more: 2 were asked
    assert bottom == pytest.approx(0.1 + (0.24 * 3 + 0.12) / 5)
    anchor = leg.get_bbox_to_anchor().transformed(wide.transFigure.inverted())
    assert (anchor.x0, anchor.y0) == pytest.approx((0.5, 0.1))   # centred, on the note
    again = Figure(figsize=(20, 5))
    ax2 = again.add_subplot()
    for i in range(5):
        ax2.plot([0, 1], [i, i], label=f"s{i}")
    rf._legend_below(again, ax2)
    assert again.legends[0]._ncols == 3                  # three columns unless told
    alone = Figure(figsize=(20, 5))
    ax3 = alone.add_subplot()
    ax3.plot([0, 1], [0, 1], label="only")
    rf._legend_below(alone, ax3)
    assert alone.legends[0]._ncols == 1                  # never more columns than labels
    plain = Figure(figsize=(8, 4))
    rf._legend_note(plain)
    assert plain.texts[0].get_text() == ("filled markers: measured · hollow: predicted · bands: "
                                         "range")
