"""The lookahead thread and the pools drawn ahead (tasks/common.Pools)."""
import os
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from patcher_jax import lookahead
from patcher_jax.tasks import common


def test_urgent_work_runs_before_work_queued_earlier():
  ahead = lookahead.Lookahead()
  gate, ran = threading.Event(), []
  ahead.submit(lookahead.SOON, gate.wait)          # keeps the thread busy
  soon = ahead.submit(lookahead.SOON, ran.append, "soon")
  later = ahead.submit(lookahead.NEXT, ran.append, "next")
  urgent = ahead.submit(lookahead.URGENT, ran.append, "urgent")
  gate.set()
  for f in (soon, later, urgent):
    f.result(timeout=10)
  assert ran == ["urgent", "next", "soon"]


def test_wait_runs_the_awaited_call_here_if_it_has_not_started():
  ahead = lookahead.Lookahead()
  gate, ran = threading.Event(), []
  busy = ahead.submit(lookahead.SOON, gate.wait)   # keeps the thread busy
  deadline = time.time() + 10
  while not busy.running() and time.time() < deadline:
    time.sleep(0.01)
  urgent = ahead.submit(lookahead.URGENT, ran.append, "urgent")
  mine = ahead.submit(lookahead.NEXT, lambda: threading.current_thread().name)
  assert ahead.wait(mine) == threading.current_thread().name
  assert not urgent.done()      # left to the background thread
  gate.set()
  urgent.result(timeout=10)
  assert ran == ["urgent"]


def test_wait_on_a_call_already_done_or_running_elsewhere():
  ahead = lookahead.Lookahead()
  gate = threading.Event()
  running = ahead.submit(
      lookahead.SOON, lambda: gate.wait() and threading.current_thread().name)
  deadline = time.time() + 10
  while not running.running() and time.time() < deadline:
    time.sleep(0.01)
  gate.set()
  assert ahead.wait(running) == "patcher_jax-lookahead"    # not run again
  assert ahead.wait(running) == "patcher_jax-lookahead"    # done: read again


def test_errors_surface_where_the_result_is_read():
  ahead = lookahead.Lookahead()
  with pytest.raises(ZeroDivisionError):
    ahead.submit(lookahead.URGENT, lambda: 1 / 0).result(timeout=10)
  assert ahead.submit(lookahead.URGENT, lambda: 2).result(timeout=10) == 2


def _draw(calls):
  def draw(rng):
    calls.append(threading.current_thread().name)
    return np.asarray(jax.random.normal(rng, (4, 3)))
  return draw


def test_a_right_guess_is_drawn_ahead_and_equals_drawing_in_place():
  calls = []
  pools = common.Pools(lookahead.Lookahead())
  key = jax.random.PRNGKey(3)
  pools.start(7, key, 4, _draw(calls))
  deadline = time.time() + 10
  while not calls and time.time() < deadline:   # the draw has begun
    time.sleep(0.01)
  got = pools.get(7, key, 4, _draw(calls))
  assert calls == ["patcher_jax-lookahead"]
  np.testing.assert_array_equal(got, _draw([])(key))


def test_a_guess_still_queued_is_drawn_in_place_instead():
  calls, gate = [], threading.Event()
  ahead = lookahead.Lookahead()
  ahead.submit(lookahead.URGENT, gate.wait)          # the other core is busy
  pools = common.Pools(ahead)
  key = jax.random.PRNGKey(3)
  pools.start(7, key, 4, _draw(calls))
  got = pools.get(7, key, 4, _draw(calls))
  gate.set()
  ahead.submit(lookahead.SOON, lambda: None).result(timeout=10)
  assert calls == [threading.current_thread().name]   # drawn once, here
  np.testing.assert_array_equal(got, _draw([])(key))


@pytest.mark.parametrize("i, seed, size", [(8, 3, 4), (7, 4, 4), (7, 3, 8)])
def test_a_wrong_guess_is_never_used(i, seed, size):
  calls = []
  pools = common.Pools(lookahead.Lookahead())
  pools.start(7, jax.random.PRNGKey(3), 4, _draw(calls))
  key = jax.random.PRNGKey(seed)
  got = pools.get(i, key, size, _draw(calls))
  np.testing.assert_array_equal(got, _draw([])(key))
  assert threading.current_thread().name in calls   # drawn in place


def test_first_base_mistake():
  wrong = np.array([False, True, False, True])
  assert common.first_base_mistake([2, 3, 1], wrong) == 3
  assert common.first_base_mistake([0, 2], wrong) is None


def test_a_waiting_thread_runs_queued_urgent_work_itself():
  ran, gate = [], threading.Event()
  ahead = lookahead.Lookahead()
  wanted = ahead.submit(lookahead.URGENT, gate.wait)   # runs in the background
  deadline = time.time() + 10
  while not wanted.running() and time.time() < deadline:
    time.sleep(0.01)
  here = lambda name: ran.append((name, threading.current_thread().name))
  later = ahead.submit(lookahead.SOON, here, "later")  # not urgent: left
  # the urgent call ends the background one when it runs
  first = ahead.submit(lookahead.URGENT, lambda: (here("first"), gate.set()))
  assert ahead.wait(wanted) is True
  me = threading.current_thread().name
  assert ran[0] == ("first", me) and first.done()
  later.result(timeout=10)
  assert ran[-1] == ("later", "patcher_jax-lookahead")


def test_close_cancels_the_queue_and_waits_for_the_running_call():
  ahead = lookahead.Lookahead()
  gate = threading.Event()
  running = ahead.submit(lookahead.SOON, gate.wait)
  queued = ahead.submit(lookahead.SOON, lambda: 1)
  while not running.running():
    time.sleep(0.001)
  closer = threading.Thread(target=ahead.close)
  closer.start()
  closer.join(0.05)
  assert closer.is_alive()             # waits for the call under way
  gate.set()
  closer.join(10)
  assert not closer.is_alive() and running.result() is True
  assert queued.cancelled()
  # usable again: a new thread
  assert ahead.submit(lookahead.URGENT, lambda: 2).result(timeout=10) == 2


_EXIT_WITH_WORK_QUEUED = """
import jax, jax.numpy as jnp
from patcher_jax import lookahead
f = jax.jit(lambda x: (x @ x).sum())
a = jnp.ones((800, 800))
f(a).block_until_ready()
ahead = lookahead.Lookahead()
for _ in range(50):
  ahead.submit(lookahead.SOON, lambda: f(a).block_until_ready())
"""


def test_a_program_that_ends_with_work_queued_exits_cleanly():
  # Without the close at exit, the daemon thread was inside an XLA call
  # during interpreter teardown and the process aborted (status 134).
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root)
  done = subprocess.run([sys.executable, "-c", _EXIT_WITH_WORK_QUEUED],
                        env=env, capture_output=True, timeout=300)
  assert done.returncode == 0, done.stderr.decode()[-2000:]
