"""Finds, checks and executes the lab notebooks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LABS_DIR = Path(__file__).resolve().parents[1]
# Labs whose subject the mesh does not have yet: listed, never faked.
PENDING = {
    "07_speculative_decoding": "the llama predictor has no speculative decoding yet (the "
    "performance issue asks for it); this lab is written when it lands",
}


def notebooks(only: str = "") -> list[Path]:
    """The lab notebooks in their order, those whose name contains `only` when given."""
    return [p for p in sorted(LABS_DIR.glob("[0-9][0-9]_*.ipynb")) if only in p.stem]


def problems(path: Path) -> list[str]:
    """Why a committed notebook is not clean: outputs, execution counts, no parameters cell."""
    nb = json.loads(path.read_text())
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell.get("outputs"):
            found.append(f"{path.name}: cell {i} has outputs (clear them before committing)")
        if cell.get("execution_count") is not None:
            found.append(f"{path.name}: cell {i} has an execution count")
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        found.append(f"{path.name}: needs exactly one cell tagged 'parameters' (papermill)")
    elif not all(f"\n{p} =" in "\n" + "".join(tagged[0]["source"]) for p in ("quick", "out_dir")):
        found.append(f"{path.name}: its parameters cell must set quick and out_dir")
    return found


def declared_parameters(path: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def execute(path: Path, out_dir: Path, parameters: dict[str, Any]) -> Path:
    """Runs the notebook headless in the labs folder; the executed copy goes to `out_dir`.
    Only the parameters the notebook declares are passed."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / path.name
    wanted = declared_parameters(path)
    papermill.execute_notebook(
        str(path),
        str(executed),
        parameters={k: v for k, v in parameters.items() if k in wanted},
        cwd=str(LABS_DIR),
        progress_bar=False,
        log_output=False,
        kernel_name="python3",
    )
    return executed
