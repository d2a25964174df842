"""The machine-speed probe (experiments/machine_speed.py) runs and reports
positive figures (no timing is asserted: the machines are shared)."""
import doctest
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments"))
import machine_speed  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_doctests():
  result = doctest.testmod(machine_speed)
  assert result.attempted and not result.failed


def test_median_call_s_runs_at_least_five_calls():
  calls = []
  machine_speed.median_call_s(lambda: calls.append(1) or 0, seconds=0.0)
  assert len(calls) == 6     # the compile call, then five timed ones
