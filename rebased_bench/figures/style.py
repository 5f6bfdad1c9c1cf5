"""One look for every figure: the palette (a fixed colour, marker and label per mixer/provider), axes, saving."""

import re
import textwrap
import zlib
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend, headless by construction
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from ..files import write_atomic
from ..models.registry import VARIANTS


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    label: str


# The one palette: mixers (as in the paper's Figure 1), ablation variants, kernel providers.
# A name missing here gets a fixed style picked by a hash of the name (same name, same style, every run).
PALETTE = {
    # mixers, the paper's colours and markers
    "rebased": Style("tab:blue", "o", "ReBased"),
    "based": Style("tab:orange", "s", "Based"),
    "rwkv": Style("tab:green", "^", "RWKV"),
    "mamba": Style("tab:red", "v", "Mamba"),
    "conv_attention": Style("tab:purple", "*", "ConvAttention"),
    "attention": Style("tab:brown", "P", "Attention"),
    # feature-map ablation variants (rebased and based above are variants too)
    "x2": Style("tab:gray", "D", "x²"),
    "gamma_x2": Style("tab:pink", "h", "(γx)²"),
    "affine_x2": Style("tab:olive", "X", "(γx+β)²"),
    "norm_x2": Style("tab:cyan", "p", "norm(x)²"),
    "rebased_shared": Style("navy", "d", "ReBased (shared γ/β, per head)"),
    # kernel providers
    "parallel": Style("tab:blue", "o", "ours parallel"),
    "chunk": Style("tab:cyan", "s", "ours chunk"),
    "dispatch": Style("navy", "D", "ours dispatch"),
    "naive": Style("tab:gray", "x", "naive PyTorch"),
    "quadform": Style("tab:green", "h", "ours quadform (PyTorch)"),
    "fused_chunk": Style("tab:purple", "*", "ours fused_chunk"),
    "quadform_chunk": Style("darkgoldenrod", "d", "ours quadform_chunk"),
    "sdpa": Style("black", "^", "SDPA (softmax)"),
    "fla_parallel_rebased": Style("tab:orange", "v", "FLA parallel_rebased"),
    "fla_chunk_linear_attn": Style("tab:red", "<", "FLA chunk_linear_attn"),
    "fla_parallel_based": Style("tab:olive", ">", "FLA parallel_based"),
    "fla_fused_chunk_based": Style("tab:brown", "P", "FLA fused_chunk_based"),
}
SPARE_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
SPARE_MARKERS = ["o", "s", "^", "v", "D", "P", "X", "h"]


def style(name: str) -> Style:
    """The fixed style of a mixer, variant or provider; unknown names get a stable one (crc32 of the name)."""
    if name in PALETTE:
        return PALETTE[name]
    h = zlib.crc32(str(name).encode())
    return Style(SPARE_COLORS[h % len(SPARE_COLORS)], SPARE_MARKERS[(h // 8) % len(SPARE_MARKERS)], str(name))


# Bars of the feature-map ablation in the paper's table order (simplest map first, Based last).
ABLATION_ORDER = VARIANTS


def order(names, first=tuple(PALETTE)) -> list:
    """`first` order (default: the palette's, so legends read the same in every figure), then the rest sorted."""
    names = set(names)
    return [n for n in first if n in names] + sorted(n for n in names if n not in first)


def log2_axis(ax, values, axis="x"):
    """A log2 axis whose ticks are exactly the measured values, written as plain integers (64, 128, ...)."""
    values = sorted({int(v) for v in values})
    getattr(ax, f"set_{axis}scale")("log", base=2)
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(values))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{int(round(v))}"))
    target.set_minor_locator(NullLocator())
    if len(values) == 1:  # a single point: give it room instead of a zero-width axis
        getattr(ax, f"set_{axis}lim")(values[0] / 1.5, values[0] * 1.5)


def new_figure(panels: int, width=3.2, height=3.0, sharey=True):
    """A 1 x panels figure (paper layout) and its axes as a list."""
    fig = Figure(figsize=(max(width * panels, 4.5), height), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure the legend with (legend_below)
    axes = fig.subplots(1, panels, sharey=sharey, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, color="0.85", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, list(axes)


# About this many characters of the medium font fit an inch (a little fewer than measured, to be safe).
CHARS_PER_INCH = 11


def figure_title(fig, text: str):
    """The figure's title, each line wrapped to the figure's width so that none runs past its edges."""
    width = max(20, int(fig.get_figwidth() * CHARS_PER_INCH))
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in text.splitlines()), fontsize="medium")


def legend_below(fig, axes):
    """One legend for the figure, centred below the panels, as in the paper; the figure grows by the legend's size
    (constrained layout would otherwise take its room from the panels and squash a panel under a long legend)."""
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if not seen:
        return
    # As many columns as fit the figure's width (the label and its handle), at most 6.
    widest = max(len(label) for label in seen) + 5
    ncols = max(1, min(len(seen), 6, int(fig.get_figwidth() * CHARS_PER_INCH // widest)))
    legend = fig.legend(list(seen.values()), list(seen.keys()), loc="outside lower center", ncols=ncols, frameon=True)
    size = legend.get_window_extent(fig.canvas.get_renderer())
    fig.set_figheight(fig.get_figheight() + size.height / fig.dpi)
    fig.set_figwidth(max(fig.get_figwidth(), size.width / fig.dpi + 0.2))


def plain_log_y(ax):
    """A log y axis labelled 0.5, 1, 2 rather than 5x10^-1; call after drawing (it reads the data range)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    low, high = ax.get_ylim()
    if high / low < 100:  # under two decades a log axis may show one major tick: label the 2s and 5s as well
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def safe_name(text) -> str:
    """A file-name-safe form of a suite name or a path (letters, digits, '-', '_', '.')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "unnamed"


def save(fig, out: Path, stem: str) -> list[Path]:
    """Write the figure as `stem`.png and `stem`.pdf, atomically; PDFs carry no creation date, so the same data
    gives the same file. Returns the paths."""
    paths = []
    for fmt, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
        path = out / f"{stem}.{fmt}"  # not with_suffix: stems hold dots (lr0.003)
        paths.append(write_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=150, metadata=metadata)))
    return paths
