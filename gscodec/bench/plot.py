"""The rate-distortion plot: PSNR (dB) and MS-SSIM (dB) against bpp for every codec, as PNG, PDF or SVG.

Uses matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..format import GsiError, write_atomic
from .reference import PublishedCurve
from .store import BenchError

EDITABLE_TEXT = {"svg.fonttype": "none", "pdf.fonttype": 42}
"""Text stays text: SVG ``<text>`` elements, TrueType (not Type 3) fonts in the PDF, as journals ask."""

STYLES = {"gsi": ("tab:red", "o"), "jpeg": ("tab:blue", "s"), "webp": ("tab:green", "^"), "avif": ("tab:purple", "D")}


def _msssim_db(values: Sequence[float]) -> list[float]:
    return [-10 * math.log10(1 - v) if math.isfinite(v) and v < 1 else math.nan for v in values]


def plot_rd(curves: Mapping[str, Mapping[str, Sequence[float]]], paths: Sequence[Path], title: str,
            references: Sequence[PublishedCurve] = ()) -> None:
    """Write the RD plot of ``curves`` (name -> ``{"bpp", "psnr", "ms_ssim"}``) to each of ``paths``, in the
    format its extension names (``.png``, ``.pdf``, ``.svg``), each atomically.

    ``references`` are drawn dashed on the PSNR panel, under their own labels (which name their image set).
    """
    try:
        from matplotlib import rc_context
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise BenchError(f"the RD plot needs matplotlib (pip install matplotlib): {exc}") from None

    fig = Figure(figsize=(12, 5.4), dpi=120)
    FigureCanvasAgg(fig)
    ax_psnr, ax_ssim = fig.subplots(1, 2)
    series: dict[object, list[tuple[Sequence[float], Sequence[float]]]] = {ax_psnr: [], ax_ssim: []}
    for name, c in curves.items():
        color, marker = STYLES.get(name, (None, "x"))
        ax_psnr.plot(c["bpp"], c["psnr"], marker=marker, color=color, label=name)
        series[ax_psnr].append((c["bpp"], c["psnr"]))
        ms = _msssim_db(c["ms_ssim"])
        if any(math.isfinite(v) for v in ms):
            ax_ssim.plot(c["bpp"], ms, marker=marker, color=color, label=name)
            series[ax_ssim].append((c["bpp"], ms))
    for ref in references:
        ax_psnr.plot(ref.bpp, ref.psnr, linestyle="--", marker=".", color="grey", label=ref.label)
        series[ax_psnr].append((ref.bpp, ref.psnr))
    max_bpp = max((b for bpp, _ in series[ax_psnr] for b in bpp), default=1.0)
    if "gsi" in curves and curves["gsi"]["bpp"]:  # keep the splat codec's range readable
        max_bpp = min(max_bpp, max(2.0, 1.5 * max(curves["gsi"]["bpp"])))
    for ax, ylabel in ((ax_psnr, "PSNR-RGB (dB)"), (ax_ssim, "MS-SSIM (dB, -10 log10(1 - MS-SSIM))")):
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, max_bpp * 1.02)
        visible = [y for bpp, ys in series[ax] for b, y in zip(bpp, ys) if b <= max_bpp * 1.02 and math.isfinite(y)]
        if visible:
            pad = 0.04 * (max(visible) - min(visible)) or 0.5
            ax.set_ylim(min(visible) - pad, max(visible) + pad)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right")
    if not series[ax_ssim]:
        ax_ssim.text(0.5, 0.5, "MS-SSIM not computed\n(images smaller than 161 px)", ha="center", va="center",
                     transform=ax_ssim.transAxes)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    for path in paths:
        buf = io.BytesIO()
        with rc_context(EDITABLE_TEXT):
            fig.savefig(buf, format=path.suffix.lstrip(".").lower())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, buf.getvalue())
        except (GsiError, OSError) as exc:
            raise BenchError(f"cannot write the RD plot: {exc}") from None


__all__ = ["plot_rd"]
