"""Work the stream will need soon, computed on a second CPU core meanwhile.

Each edit runs on one core (its ops are too small for XLA to split), while
much of what a stream needs does not depend on the patch bank: the dropout
pool of the next mistake, the drafts of the coming records' rephrases. A
`Lookahead` runs such work on one background thread, most urgent first, so
it overlaps the edits. The work is pure (same inputs, same arrays), so a
stream decides exactly as it would compute everything in place. Keep
tokenizers out of the submitted work: HF fast tokenizers are not for
concurrent use.
"""
import concurrent.futures
import itertools
import queue
import threading
from typing import Any, Callable, Optional

# Priorities: needed before the next edit (its pool) / by the round after
# it (the last edit's checks) / within a few rounds (blocks of drafts).
URGENT, NEXT, SOON = 0, 1, 2


class Lookahead:
  """A background thread that runs submitted calls, lowest priority first
  (then in submission order).

  Example:
    >>> ahead = Lookahead()
    >>> ahead.submit(URGENT, sum, [1, 2, 3]).result()
    6
  """

  def __init__(self):
    self._queue = queue.PriorityQueue()
    self._order = itertools.count()
    self._thread: Optional[threading.Thread] = None
    self._lock = threading.Lock()

  def submit(self, priority: int, fn: Callable[..., Any], *args
             ) -> concurrent.futures.Future:
    """Run fn(*args) in the background; its result (or error) comes through
    the returned future."""
    future = concurrent.futures.Future()
    self._queue.put((priority, next(self._order), future, fn, args))
    self._start()
    return future

  def _start(self) -> None:
    with self._lock:
      if self._thread is None:
        # a daemon: an idle worker never keeps a finished program alive
        self._thread = threading.Thread(target=self._work, daemon=True,
                                        name="patcher_jax-lookahead")
        self._thread.start()

  def _work(self) -> None:
    while True:
      _, _, future, fn, args = self._queue.get()
      if not future.set_running_or_notify_cancel():
        continue
      try:
        future.set_result(fn(*args))
      except BaseException as e:  # pylint: disable=broad-except
        future.set_exception(e)    # raised where the result is read
