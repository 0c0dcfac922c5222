"""The batch packages are an extra (pip install 'boneqct[batch]'): a plain install runs the
demo and every single-case command without them, and `boneqct batch` without them says what
to install (exit 2) instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from boneqct.cli import main
from boneqct.cli.batch import BATCH_EXTRA_MODULES

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.mark.parametrize("module", BATCH_EXTRA_MODULES)
def test_batch_without_its_extra_exits_2_naming_the_install(module, monkeypatch, tmp_path,
                                                           capsys):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: import fails
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("case_id,ct,analysis\n")
    code = main(["batch", str(manifest), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"needs {module}" in err and "pip install 'boneqct[batch]'" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_the_demo_and_the_command_line_do_not_import_the_batch_packages():
    """What `make demo` installs is enough: the command line and the demo's code load without
    dask, distributed or pyarrow."""
    probe = ("import sys, boneqct.cli, boneqct.demo; boneqct.cli.build_parser(); "
             f"print(sorted(m for m in {BATCH_EXTRA_MODULES!r} + ('bokeh',) if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_pyproject_keeps_the_batch_packages_in_their_extra_and_the_tests():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    names = {dep.split("==")[0] for dep in project["dependencies"]}
    assert not names & {*BATCH_EXTRA_MODULES, "bokeh"}
    batch = {dep.split("==")[0] for dep in project["optional-dependencies"]["batch"]}
    assert set(BATCH_EXTRA_MODULES) <= batch
    assert "boneqct[batch]" in project["optional-dependencies"]["test"]
