"""The console's component tests (Vitest, jsdom: the deployment editor's weight logic, the tensor
form) run under pytest so that `make test` and CI cover them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

CONSOLE = Path(__file__).resolve().parents[4] / "console"
VITEST = CONSOLE / "node_modules" / ".bin" / "vitest"


@pytest.mark.timeout(660)  # the suite's 300 s would cut the 600 s allowed to the run below
def test_vitest_component_tests_pass() -> None:
    if not VITEST.exists():
        pytest.skip("console/node_modules is missing: run `make setup` (npm ci in console/)")
    env = {**os.environ, "CI": "1", "NO_COLOR": "1", "FORCE_COLOR": "0"}
    proc = subprocess.run(
        [str(VITEST), "run", "--reporter=dot"],
        cwd=CONSOLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # 10 jsdom files take minutes on the loaded shared machine
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "passed" in proc.stdout
