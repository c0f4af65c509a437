"""SampleStage: k candidates per prompt by sequential prompting, one output row per prompt.

Plan for k candidates with f = `num_first_turn` (see `candidate_plan`): candidates 0..f-1 are
independent first answers (turn 1); candidate c >= f is a second turn (turn 2) in the
conversation of first answer `parent = (c - f) % f`: the prompt, that answer as the assistant
message, then the task's follow-up asking for a different answer. k = 4, f = 2 gives
[a, b, a', b'] with turn [1, 1, 2, 2] and parent [-1, -1, 0, 1].

Seeds: the request for the first answers of a prompt is seeded with
derive_seed(seed, prompt_id, 1), the second turns after first answer p with
derive_seed(seed, prompt_id, 2, p); engines derive one seed per sample from those. Results thus
depend on the config and the prompt, not on which actor ran the batch; the batch's other prompts
can matter only through float rounding of padding (see engines.py), so a rerun with the same
input order and `batch_size` gives the same rows.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from diversens.config import config_hash
from diversens.sampling.config import SamplingConfig
from diversens.sampling.engines import Engine, Messages, Request, derive_seed, make_engine
from diversens.stage import Stage


def candidate_plan(k: int, num_first_turn: int) -> list[tuple[int, int]]:
    """(turn, parent) per candidate index; parent is the first-turn index a second turn follows."""
    f = num_first_turn
    return [(1, -1)] * f + [(2, (c - f) % f) for c in range(f, k)]


def followup_messages(messages: Messages, answer: str, followup: str) -> Messages:
    """The second-turn conversation: the prompt, the first answer, then the follow-up request."""
    return [
        *messages,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": followup},
    ]


def as_messages(value) -> Messages:
    """Messages as plain dicts, whether they arrive as lists or as Arrow-born numpy arrays."""
    items = value.tolist() if isinstance(value, np.ndarray) else list(value)
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in items]


class SampleStage(Stage):
    """Adds the candidates columns (DESIGN.md §3). Loads the engine once (one per Ray actor)."""

    requires = ("prompt_id", "task", "messages")
    adds = (
        "responses",
        "turn",
        "parent",
        "finish_reason",
        "n_tokens",
        "truncated",
        "engine",
        "model",
        "sampling",
        "config_hash",
    )

    def __init__(self, cfg: SamplingConfig | None = None, engine: Engine | None = None):
        self.cfg = cfg or SamplingConfig()
        self.engine = engine or make_engine(self.cfg)
        self.plan = candidate_plan(self.cfg.num_samples_per_prompt, self.cfg.num_first_turn)
        self.config_hash = config_hash(self.cfg)

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        cfg, f = self.cfg, self.cfg.num_first_turn
        pids = [str(p) for p in batch["prompt_id"]]
        tasks = [str(t) for t in batch["task"]]
        convs = [as_messages(m) for m in batch["messages"]]

        pairs = zip(pids, convs, strict=True)
        first = self.engine.generate([Request(m, derive_seed(cfg.seed, p, 1), f) for p, m in pairs])
        # Second turns grouped by parent: one request (n = its count) per first answer.
        counts = [sum(1 for t, p in self.plan if t == 2 and p == j) for j in range(f)]
        requests, owners = [], []
        for i, (pid, m, task) in enumerate(zip(pids, convs, tasks, strict=True)):
            for j, n in enumerate(counts):
                if n:
                    conv = followup_messages(m, first[i][j].text, cfg.followup(task))
                    requests.append(Request(conv, derive_seed(cfg.seed, pid, 2, j), n))
                    owners.append((i, j))
        second: dict[tuple[int, int], list] = dict(
            zip(owners, self.engine.generate(requests), strict=True)
        )

        candidates = []
        for i in range(len(pids)):
            taken = {j: iter(second.get((i, j), [])) for j in range(f)}
            row = [first[i][c] if t == 1 else next(taken[p]) for c, (t, p) in enumerate(self.plan)]
            candidates.append(row)

        out = batch.copy()
        out["responses"] = [[c.text for c in row] for row in candidates]
        out["turn"] = [[t for t, _ in self.plan]] * len(out)
        out["parent"] = [[p for _, p in self.plan]] * len(out)
        out["finish_reason"] = [[c.finish_reason for c in row] for row in candidates]
        out["n_tokens"] = [[c.n_tokens for c in row] for row in candidates]
        out["truncated"] = [[c.finish_reason == "length" for c in row] for row in candidates]
        out["engine"] = self.engine.name
        out["model"] = cfg.model
        out["sampling"] = [
            json.dumps({**cfg.sampling_params(), "followup": cfg.followup(t)}) for t in tasks
        ]
        out["config_hash"] = self.config_hash
        return out
