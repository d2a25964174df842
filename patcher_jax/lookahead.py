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
import atexit
import concurrent.futures
import heapq
import itertools
import threading
from typing import Any, Callable, Optional
import weakref

# Priorities: needed before the next edit (its pool) / by the round after
# it (the last edit's checks) / within a few rounds (blocks of drafts) /
# by the next checkpoint or the end (curve points, final metrics).
URGENT, NEXT, SOON, LATER = 0, 1, 2, 3


class Lookahead:
  """A background thread that runs submitted calls, lowest priority first
  (then in submission order).

  Example:
    >>> ahead = Lookahead()
    >>> ahead.submit(URGENT, sum, [1, 2, 3]).result()
    6
  """

  def __init__(self):
    self._heap = []        # (priority, order, future, fn, args)
    self._ready = threading.Condition()
    self._order = itertools.count()
    self._thread: Optional[threading.Thread] = None
    self._lock = threading.Lock()
    self._closed = False

  def submit(self, priority: int, fn: Callable[..., Any], *args
             ) -> concurrent.futures.Future:
    """Run fn(*args) in the background; its result (or error) comes through
    the returned future."""
    future = concurrent.futures.Future()
    with self._ready:
      heapq.heappush(self._heap, (priority, next(self._order), future, fn,
                                  args))
      self._ready.notify()
    self._start()
    return future

  def wait(self, future: concurrent.futures.Future) -> Any:
    """`future.result()`, never idle meanwhile: if the awaited call has not
    started, this thread runs it itself; while it runs on the background
    thread, this one runs queued URGENT calls. So when the background thread
    is behind, both cores work (the calls are pure: the same results
    wherever they run)."""
    mine = self._take(future)
    if mine is not None:
      _run(mine)
    while not future.done():
      item = self._pop(URGENT, block=False)
      if item is None:
        break
      _run(item)
    return future.result()

  def _take(self, future: concurrent.futures.Future):
    """The queued call whose result is `future`, removed from the queue
    (None: it has started, or was never queued here)."""
    with self._ready:
      for k, item in enumerate(self._heap):
        if item[2] is future:
          self._heap[k] = self._heap[-1]
          self._heap.pop()
          heapq.heapify(self._heap)
          return item
    return None

  def close(self) -> None:
    """Cancel the queued calls and wait for the running one; the thread
    ends. Called at exit for every live Lookahead: a daemon thread still
    inside an XLA call while the interpreter tears down aborts the process
    (a probe that ended with pools drawn ahead exited with status 134).
    A later `submit` starts a new thread."""
    with self._ready:
      self._closed = True
      for item in self._heap:
        item[2].cancel()
      self._heap.clear()
      self._ready.notify_all()
    with self._lock:
      thread, self._thread = self._thread, None
    if thread is not None and thread is not threading.current_thread():
      thread.join()
    with self._ready:
      self._closed = False

  def _start(self) -> None:
    with self._lock:
      if self._thread is None:
        # a daemon: an idle worker never keeps a finished program alive
        self._thread = threading.Thread(target=self._work, daemon=True,
                                        name="patcher_jax-lookahead")
        self._thread.start()
        _LIVE.add(self)

  def _pop(self, at_most: int = LATER, block: bool = True):
    """The most urgent queued call of priority <= `at_most` (None if none
    and not `block`, or once closed)."""
    with self._ready:
      while block and not self._heap and not self._closed:
        self._ready.wait()
      if self._heap and self._heap[0][0] <= at_most:
        return heapq.heappop(self._heap)
      return None

  def _work(self) -> None:
    while (item := self._pop()) is not None:
      _run(item)


# Lookaheads whose thread has started, closed at exit (`Lookahead.close`).
_LIVE = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
  for ahead in list(_LIVE):
    ahead.close()


def _run(item) -> None:
  _, _, future, fn, args = item
  if not future.set_running_or_notify_cancel():   # cancelled meanwhile
    return
  try:
    future.set_result(fn(*args))
  except BaseException as e:  # pylint: disable=broad-except
    future.set_exception(e)    # raised where the result is read
