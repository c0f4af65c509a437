"""EngineLoop: one thread steps a vLLM engine while any request is unfinished, so it never drains
while work is queued.

`vllm.LLM.generate` adds a batch and steps until the batch's longest answer ends: the engine runs
ever fewer sequences (occupancy 0.55-0.64 on the demo, benchmarks/results/generate.md), a second
turn waits for every first turn of its chunk, and the next chunk for the last sequence of this one.
Here callers from any thread `submit` a request with a callback; the loop thread alone touches the
engine (vLLM's `LLMEngine` is not thread-safe), adds what arrived before each step, and calls a
request's callback the step it finishes. A callback may submit follow-ups (a second turn): they
join the running batch at the next step. A request's text depends on its seed and prompt only
(vLLM seeds each request itself), not on what ran beside it.

A dead engine ends the process (`exit_process`): in a Ray actor, Ray then restarts the actor
(`max_restarts`) and retries its batches, as for an OOM kill. Raised instead, the error would
reach the stage as the batch's, be retried prompt by prompt and quarantine prompts as
`engine_error` (Ray Data retries system errors only). Dead: `step` raised (the loop can step no
more), `add_request` raised vLLM's EngineDeadError, or, for a core in its own process (vLLM's
multiprocessing, the default on GPU), the core died while a step waits for it: a core killed
outright (OOM killer, segfault) sends no word, vLLM's monitor only marks the client dead and
`step` would wait forever, so a watchdog thread checks the client while a step runs.

`Countdown` lets a caller wait for a group of requests, follow-ups included.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]  # gets the finished RequestOutput, or the exception
DEAD_ENGINE_EXIT = 1  # non-zero: an unexpected exit, which Ray answers with a restart
WATCH_S = 1.0  # how often the watchdog checks a stepping engine's core (vLLM's monitor: 1 s)


def engine_is_dead(error: BaseException) -> bool:
    """vLLM's EngineDeadError, told by name: this module imports no vLLM."""
    return any(c.__name__ == "EngineDeadError" for c in type(error).__mro__)


def exit_process(error: BaseException) -> NoReturn:
    """One line to stderr (the actor's log), then exit at once: no finalizer waits on the dead
    core, and no caller thread gets to return a batch of failed prompts."""
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    print(
        f"diversens: the vLLM engine is dead ({reason}); exiting with code {DEAD_ENGINE_EXIT} "
        "so Ray restarts this actor and retries its batches",
        file=sys.stderr,
        flush=True,
    )
    os._exit(DEAD_ENGINE_EXIT)


@dataclass
class LoopStats:
    """Where the loop's time went since it started (read by benchmarks)."""

    busy_s: float = 0.0  # inside engine.step()
    idle_s: float = 0.0  # nothing unfinished: waiting for a submit
    steps: int = 0
    sequence_steps: int = 0  # unfinished sequences summed over steps (mean batch = / steps)
    requests: int = 0


class EngineLoop:
    def __init__(
        self,
        engine,
        threads: int,
        on_dead: Callable[[BaseException], Any] = exit_process,
    ):
        """`engine`: a vLLM LLMEngine; `threads`: torch's thread count in the loop thread, as
        the engine was built with (vLLM's CPU attention checks that its OpenMP threads match);
        `on_dead(error)`: what a dead engine does to the process (should it return, every
        request fails with the error, later ones included)."""
        self.engine = engine
        self.threads = threads
        self.on_dead = on_dead
        self.stats = LoopStats()
        self._stepping = False
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._callbacks: dict[str, Callback] = {}
        self._ids = itertools.count()
        self._dead: BaseException | None = None
        self._lock = threading.Lock()  # a submit never lands after the loop has failed all
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self._thread.start()
        # vLLM's client of a core in another process (MPClient) has it; an in-process one not.
        ensure_alive = getattr(getattr(engine, "engine_core", None), "ensure_alive", None)
        if ensure_alive is not None:
            threading.Thread(target=self._watch, args=(ensure_alive,), name="engine-watch",
                             daemon=True).start()  # fmt: skip

    def submit(self, prompt, params, callback: Callback) -> None:
        """Queue one request (a vLLM prompt: text or {"prompt_token_ids": ...}, and its
        SamplingParams with output_kind FINAL_ONLY); `callback` runs in the loop thread."""
        with self._lock:
            if self._dead is None:
                self._inbox.put((prompt, params, callback))
                return
        callback(self._dead)

    def _admit(self, block: bool) -> None:
        start = time.perf_counter()
        try:
            item = self._inbox.get(block=block)
        except queue.Empty:
            return
        if block:
            self.stats.idle_s += time.perf_counter() - start
        while item is not None:
            prompt, params, callback = item
            request_id = str(next(self._ids))
            try:
                self.engine.add_request(request_id, prompt, params)
            except Exception as e:  # noqa: BLE001 - this request's fault (too long, bad params)
                if engine_is_dead(e):  # or the engine's: no caller may see it as a prompt's
                    self._died(e)
                _call(callback, e)
            else:
                self._callbacks[request_id] = callback
                self.stats.requests += 1
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                item = None

    def _run(self) -> None:
        import torch

        # OpenMP's thread count is per thread, and a new one starts from the environment's.
        # torch._C's: vLLM's CPU worker replaces torch.set_num_threads with a no-op.
        torch._C.set_num_threads(self.threads)
        while self._dead is None:
            self._admit(block=not self._callbacks)
            if not self._callbacks:
                continue
            self.stats.sequence_steps += self.engine.get_num_unfinished_requests()
            start = time.perf_counter()
            self._stepping = True
            try:
                outputs = self.engine.step()
            except BaseException as e:  # noqa: BLE001 - whatever it was, the loop steps no more
                self._died(e)
                return
            finally:
                self._stepping = False
            self.stats.busy_s += time.perf_counter() - start
            self.stats.steps += 1
            for out in outputs:
                if out.finished:
                    _call(self._callbacks.pop(out.request_id), out)

    def _watch(self, ensure_alive: Callable[[], None]) -> None:
        """Checks the core while a step waits for it (not between steps: vLLM's own shutdown
        marks the client dead too, and a dead core fails the next add_request anyway)."""
        while self._dead is None:
            time.sleep(WATCH_S)
            if not self._stepping:
                continue
            try:
                ensure_alive()
            except Exception as e:  # noqa: BLE001 - vLLM's EngineDeadError
                self._died(e)
                return

    def _died(self, error: BaseException) -> None:
        self.on_dead(error)
        self._fail_all(error)

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            self._dead = error
        for callback in self._callbacks.values():
            _call(callback, error)
        self._callbacks.clear()
        while True:
            try:
                _call(self._inbox.get_nowait()[2], error)
            except queue.Empty:
                return


def _call(callback: Callback, result) -> None:
    """A callback that raises must not stop the loop (the others' requests go on); its caller
    learns of the failure through its own bookkeeping (see Countdown)."""
    try:
        callback(result)
    except Exception:  # noqa: BLE001
        log.exception("engine loop: a request's callback raised")


class Countdown:
    """Waits for a group of requests, follow-ups included: `expect` before each submit, `done`
    in its callback; `wait` returns once every one is done and raises the first error."""

    def __init__(self):
        self._left = 0
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def expect(self, n: int = 1) -> None:
        with self._cond:
            self._left += n

    def done(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._left -= 1
            if error is not None and self._error is None:
                self._error = error
            if self._left == 0:
                self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._left == 0)
        if self._error is not None:
            raise self._error
