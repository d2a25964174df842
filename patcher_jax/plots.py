"""Curves of SR, GR, ER, TrainR and TestR against the number of edits."""
from typing import Dict, Sequence


def plot_curves(points: Sequence[Dict], path: str, title: str = "") -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  edits = [p["edits"] for p in points]
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  for name in ("SR", "GR", "ER", "TrainR", "TestR"):
    values = [p.get(name) for p in points]   # GR is None without rephrases
    ax.plot(edits, [float("nan") if v is None else v for v in values],
            marker="o",
            markersize=3, label=name)
  ax.set_xlabel("edits")
  ax.set_ylabel("rate")
  ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
  ax.grid(alpha=0.3)
  ax.legend(loc="lower left", ncol=5, fontsize=8)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
