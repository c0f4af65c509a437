"""The engine loop on a fake vLLM engine (no model): follow-ups join the running batch the step
their request ends, callers from several threads share the engine's steps, a request the engine
refuses fails alone, and an engine that dies fails every request, later ones included."""

import threading
from types import SimpleNamespace

import pytest

from diversens.sampling.engine_loop import Countdown, EngineLoop


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
    loop = EngineLoop(FakeEngine(), threads=1)
    ended, error = run(loop, [2, 0, 3])
    assert isinstance(error, ValueError) and "too short" in str(error)
    assert sorted(x for x in ended if isinstance(x, int)) == [2, 3]


def test_a_dead_engine_fails_every_request_then_and_later():
    loop = EngineLoop(FakeEngine(fail_at_step=1), threads=1)
    ended, error = run(loop, [5, 5])
    assert isinstance(error, RuntimeError) and len(ended) == 2
    ended, error = run(loop, [1])  # the loop has stopped: no waiting forever
    assert isinstance(error, RuntimeError) and "died" in str(error)


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
