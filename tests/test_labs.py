"""Every lab notebook, in quick mode, against the session's mesh: a broken lab fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.notebooks import execute, notebooks
from tests.conftest import Mesh


@pytest.mark.parametrize("notebook", notebooks(), ids=lambda p: p.stem)
def test_lab_runs_and_its_checks_hold(mesh: Mesh, notebook: Path, tmp_path: Path) -> None:
    execute(
        notebook,
        tmp_path,
        {
            "target": mesh.gateway.address,
            "quick": True,
            "out_dir": str(tmp_path),
            "management": mesh.torchserve.management,
            "key_file": str(mesh.torchserve.key_file),
            "predictor_metrics": mesh.metrics.url,
        },
    )
    record = json.loads((tmp_path / f"{notebook.stem}.json").read_text())
    assert record["checks"], "a lab checks its own result"
    assert record["figures"]
    for plot in record["plots"]:
        assert (tmp_path / plot).stat().st_size > 1000
