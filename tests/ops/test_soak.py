"""The soak harness (ops/bench/soak.py) runs one compressed day end to end and its invariants hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_one_compressed_day_with_a_plex_outage_and_a_worker_sigkill_keeps_every_invariant(tmp_path: Path) -> None:
    result_file = tmp_path / "soak.json"
    command = [sys.executable, "-m", "ops.bench.soak", "--days", "1", "--day-seconds", "10", "--scenes", "20",
               "--edits", "6", "--breaker-reset", "1", "--fault", "kill=1", "--fault", "plex=1", "--json", str(result_file)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result_file.exists(), run.stdout + run.stderr
    result = json.loads(result_file.read_text())
    [day] = result["days"]
    assert day["faults"] == ["kill", "plex"]
    assert day["restarts"] == 1, "the supervisor restarted the killed workers"
    assert day["edits"] == 6
    assert day["lost"] == []                                  # (a)
    assert day["dlq_unexpected"] == {}, day["dlq_unexpected"]  # (b) one entry per unsyncable scene, nothing else
    assert day["drained"] and day["queues_left"] == {}         # (d)
    assert day["dead_series"] == [] and day["dead_files"] == []
    assert result["ok"] and run.returncode == 0, run.stdout
