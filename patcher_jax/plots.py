"""Curves of SR, GR, ER, TrainR and TestR against the number of edits.

Two panels: the rates (SR, GR with GR before the edits, ER; in [0, 1]) and
the retention ratios (TrainR, TestR; around 1, scaled to their own range so
a ratio above 1 is not clipped). Curves that coincide (SR and ER often sit
at 1.0 together) stay visible: each has its own line style and marker, the
earlier-drawn ones larger and hollow.
"""
from typing import Dict, Sequence

# name: (line style, marker, marker size, hollow)
STYLES = {
    "SR": ("-", "o", 9, True),
    "GR": ("-", "s", 5, False),
    "GR_before": (":", "s", 4, True),
    "ER": ("--", "x", 7, False),
    "TrainR": ("-", "o", 8, True),
    "TestR": ("--", "x", 6, False),
}
PANELS = (("rate", ("SR", "GR", "GR_before", "ER")),
          ("ratio to the unedited model", ("TrainR", "TestR")))


def plot_curves(points: Sequence[Dict], path: str, title: str = "") -> None:
  """Writes the curves of `points` (dicts with "edits" and metric names).

  Example:
    >>> plot_curves([{"edits": 1, "SR": 1.0, "ER": 1.0, "TestR": 1.0},
    ...              {"edits": 2, "SR": 1.0, "ER": 1.0, "TestR": 0.98}],
    ...             "/tmp/curves.png")
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  edits = [p["edits"] for p in points]
  fig, axes = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True,
                           gridspec_kw={"height_ratios": (3, 2)})
  for ax, (ylabel, names) in zip(axes, PANELS):
    for name in names:
      values = [p.get(name) for p in points]   # GR: None without rephrases
      values = [float("nan") if v is None else v for v in values]
      style, marker, size, hollow = STYLES[name]
      line, = ax.plot(edits, values, linestyle=style, marker=marker,
                      markersize=size, label=name, linewidth=1.4)
      if hollow:
        line.set_markerfacecolor("none")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", ncol=len(names), fontsize=8)
  lo = axes[0].get_ylim()[0]
  axes[0].set_ylim(min(0.0, lo), 1.05)
  axes[1].axhline(1.0, color="gray", linewidth=0.8, alpha=0.6)
  lo, hi = axes[1].get_ylim()
  axes[1].set_ylim(min(lo, 0.95), max(hi, 1.05))
  axes[-1].set_xlabel("edits")
  if title:
    axes[0].set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
