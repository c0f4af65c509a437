"""The engine loop on a fake vLLM engine (no model): follow-ups join the running batch the step
their request ends, callers from several threads share the engine's steps, a request the engine
refuses fails alone, and a dead engine ends the process (here: calls `on_dead`) before any
request fails, then fails every request, later ones included."""

import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest

from diversens.sampling.engine_loop import DEAD_ENGINE_EXIT, Countdown, EngineLoop


class EngineDeadError(RuntimeError):
    """Named as vLLM's (vllm.v1.engine.exceptions), which the loop tells by name."""


class FakeEngine:
    """A request's prompt is the number of steps it runs; each step records who ran in it."""

    def __init__(self, fail_at_step=None):
        self.running: dict[str, int] = {}
        self.prompts: dict[str, int] = {}
        self.batches: list[set[str]] = []
        self.fail_at_step = fail_at_step
        self.gate = threading.Event()  # set: steps may run
        self.gate.set()

    def add_request(self, request_id, prompt, params):
        if prompt <= 0:
            raise ValueError(f"prompt {prompt} is too short")
        self.running[request_id] = self.prompts[request_id] = prompt

    def get_num_unfinished_requests(self):
        return len(self.running)

    def step(self):
        self.gate.wait()
        if self.fail_at_step == len(self.batches):
            raise RuntimeError("engine core died")
        self.batches.append(set(self.running))
        done = []
        for rid in list(self.running):
            self.running[rid] -= 1
            if self.running[rid] == 0:
                del self.running[rid]
                done.append(SimpleNamespace(request_id=rid, finished=True, prompt=self.prompts[rid],
                                            steps=len(self.batches)))  # fmt: skip
        return done


def run(loop, prompts, then=lambda out: []):
    """Submit `prompts`; each finished request's `then(output)` gives follow-up prompts.
    Returns the step each request (follow-ups included) ended at, or its error."""
    ended, countdown = [], Countdown()

    def submit(prompt):
        countdown.expect()

        def done(out):
            if isinstance(out, BaseException):
                ended.append(out)
                return countdown.done(out)
            ended.append(out.steps)
            for p in then(out):
                submit(p)
            countdown.done()

        loop.submit(prompt, None, done)

    for p in prompts:
        submit(p)
    try:
        countdown.wait()
    except Exception as e:  # noqa: BLE001 - returned with the rest
        return ended, e
    return ended, None


def test_follow_ups_join_the_running_batch_the_step_their_request_ends():
    engine = FakeEngine()
    loop = EngineLoop(engine, threads=1)
    # Two first turns of 2 and 6 steps; each has a follow-up of 3 steps. Two calls (all first
    # turns, then all follow-ups) would take 6 + 3 = 9 steps; here the short one's follow-up
    # runs while the long one goes on.
    ended, error = run(loop, [2, 6], lambda out: [3] if out.prompt in (2, 6) else [])
    assert error is None
    assert sorted(ended) == [2, 5, 6, 9]  # 2, its follow-up 2+3; 6, its follow-up 6+3
    assert max(len(b) for b in engine.batches) == 2
    assert engine.batches[2] == {"1", "2"}  # step 3: the long first turn and the follow-up
    assert loop.stats.steps == 9 and loop.stats.requests == 4


def test_two_threads_share_the_engines_steps():
    engine = FakeEngine()
    engine.gate.clear()  # hold the loop until both callers have submitted
    loop = EngineLoop(engine, threads=1)
    results = {}

    def caller(name, prompts):
        results[name] = run(loop, prompts)

    threads = [threading.Thread(target=caller, args=(n, [p, p])) for n, p in (("a", 4), ("b", 5))]
    for t in threads:
        t.start()
    while loop._inbox.qsize() + len(engine.running) < 4:
        threading.Event().wait(0.01)
    engine.gate.set()
    for t in threads:
        t.join(10)
    assert results["a"][1] is None and results["b"][1] is None
    # Both callers' requests ran in the same steps: about max(4, 5) steps, not 4 + 5 in turn.
    assert any({engine.prompts[r] for r in batch} == {4, 5} for batch in engine.batches)
    assert len(engine.batches) <= 6


def test_a_refused_request_fails_alone():
    dead = []
    loop = EngineLoop(FakeEngine(), threads=1, on_dead=dead.append)
    ended, error = run(loop, [2, 0, 3])
    assert isinstance(error, ValueError) and "too short" in str(error)
    assert sorted(x for x in ended if isinstance(x, int)) == [2, 3]
    assert dead == []  # a prompt's fault, not the engine's


def dies_first(dead: list, ended: list):
    """An on_dead that records the error and whether any request had failed before it."""
    return lambda error: dead.append((error, list(ended)))


def test_a_dead_engine_is_reported_first_then_fails_every_request_then_and_later():
    dead, ended = [], []
    loop = EngineLoop(FakeEngine(fail_at_step=1), threads=1, on_dead=dies_first(dead, ended))
    got, error = run(loop, [5, 5])
    ended.extend(got)
    assert isinstance(error, RuntimeError) and len(got) == 2
    assert len(dead) == 1 and dead[0][0] is error and dead[0][1] == []  # no request failed yet
    got, error = run(loop, [1])  # the loop has stopped: no waiting forever
    assert isinstance(error, RuntimeError) and "died" in str(error) and len(dead) == 1


class DeadOnAdd(FakeEngine):
    """vLLM's client once its core is dead: add_request raises EngineDeadError."""

    def add_request(self, request_id, prompt, params):
        raise EngineDeadError("EngineCore encountered an issue.")


def test_engine_dead_on_add_request_is_the_engines_death_not_the_prompts():
    dead, ended = [], []
    loop = EngineLoop(DeadOnAdd(), threads=1, on_dead=dies_first(dead, ended))
    got, error = run(loop, [2])
    assert isinstance(error, EngineDeadError) and len(dead) == 1 and dead[0][1] == []


class KilledCore(FakeEngine):
    """A core killed outright in another process: vLLM's client is marked dead
    (`engine_core.ensure_alive` raises) and `step` waits for output forever."""

    def __init__(self):
        super().__init__()
        self.core_dead = threading.Event()
        self.engine_core = SimpleNamespace(ensure_alive=self.ensure_alive)

    def ensure_alive(self):
        if self.core_dead.is_set():
            raise EngineDeadError("EngineCore encountered an issue.")

    def step(self):
        self.core_dead.set()
        threading.Event().wait()  # never returns


def test_a_core_killed_mid_step_is_seen_by_the_watchdog():
    dead = threading.Event()
    loop = EngineLoop(KilledCore(), threads=1, on_dead=lambda e: dead.set())
    result = []
    caller = threading.Thread(target=lambda: result.append(run(loop, [3])), daemon=True)
    caller.start()
    assert dead.wait(10), "the watchdog did not see the dead core"
    caller.join(5)
    assert isinstance(result[0][1], EngineDeadError)  # the caller is not left waiting


DIES = r"""
import time
from diversens.sampling.engine_loop import EngineLoop

class EngineDeadError(Exception):
    pass

class Dead:
    def add_request(self, *args):
        pass
    def get_num_unfinished_requests(self):
        return 1
    def step(self):
        raise EngineDeadError("EngineCore encountered an issue.\nSee above.")

EngineLoop(Dead(), threads=1).submit(1, None, lambda out: print("a request failed"))
time.sleep(60)
"""


def test_by_default_a_dead_engine_exits_the_process_with_one_line():
    proc = subprocess.run([sys.executable, "-c", DIES], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == DEAD_ENGINE_EXIT != 0
    assert "a request failed" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Ray restarts this actor" in lines[0]
    assert "(EngineDeadError: EngineCore encountered an issue. See above.)" in lines[0]


def test_countdown_waits_for_every_expected_request():
    countdown = Countdown()
    countdown.expect(2)
    countdown.done()
    raised = []

    def wait():
        try:
            countdown.wait()
        except KeyError as e:
            raised.append(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # one is still out
    countdown.done(KeyError("x"))
    waiter.join(2)
    assert not waiter.is_alive() and len(raised) == 1  # the waiter got the error
    with pytest.raises(KeyError):
        countdown.wait()
