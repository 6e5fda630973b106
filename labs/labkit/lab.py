"""One lab's run: its headline figures, its sanity checks and its plots, written to disk."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class LabCheckFailed(AssertionError):
    """A lab's own result is not sane: the lab, or the mesh under it, is broken."""


class Lab:
    """Collects what a lab found and writes `<out_dir>/<name>.json` and its PNGs."""

    def __init__(self, name: str, out_dir: str | Path, quick: bool) -> None:
        self.name, self.quick = name, quick
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.figures: dict[str, Any] = {}
        self.checks: list[str] = []
        self.plots: list[str] = []
        self._started = time.perf_counter()

    def figure(self, key: str, value: Any, note: str = "") -> Any:
        """Records a headline figure (a number, or a small dict or list of them) and shows it."""
        self.figures[key] = value
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{key}: {shown}" + (f"  ({note})" if note else ""))
        return value

    def check(self, ok: bool, claim: str) -> None:
        """Fails the lab, with the claim that did not hold, when `ok` is false."""
        if not ok:
            raise LabCheckFailed(f"{self.name}: expected {claim}")
        self.checks.append(claim)
        print(f"check: {claim}")

    def save_plot(self, figure: Any, stem: str) -> Path:
        """Saves a matplotlib figure as `<name>-<stem>.png` beside the lab's JSON."""
        path = self.out_dir / f"{self.name}-{stem}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        self.plots.append(path.name)
        return path

    def write(self) -> Path:
        """Writes the figures, checks and plots; the lab's last step."""
        path = self.out_dir / f"{self.name}.json"
        record = {
            "lab": self.name,
            "quick": self.quick,
            "seconds": round(time.perf_counter() - self._started, 1),
            "figures": self.figures,
            "checks": self.checks,
            "plots": self.plots,
        }
        path.write_text(json.dumps(record, indent=2, default=float) + "\n")
        print(f"wrote {path}")
        return path
