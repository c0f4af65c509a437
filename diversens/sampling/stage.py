"""SampleStage: k candidates per prompt by sequential prompting, one output row per prompt.

Plan for k candidates with f = `num_first_turn` (see `candidate_plan`): candidates 0..f-1 are
independent first answers (turn 1); candidate c >= f is a second turn (turn 2) in the
conversation of first answer `parent = (c - f) % f`: the prompt, that answer as the assistant
message, then the task's follow-up asking for a different answer. k = 4, f = 2 gives
[a, b, a', b'] with turn [1, 1, 2, 2] and parent [-1, -1, 0, 1].

Seeds: the request for the first answers of a prompt is seeded with
derive_seed(seed, prompt_id, 1), the second turns after first answer p with
derive_seed(seed, prompt_id, 2, p); engines derive one seed per sample from those. The draws
thus depend on the config and the prompt, not on which actor ran the batch nor on when: a vLLM
engine takes a prompt's second turns the moment its first answers end and runs several chunks
at once (`SamplingConfig.pool`), so what shares a step with a sequence varies run to run. The
logits can depend on it through rounding (engines.py says what holds where): a chunk sampled
again is the same rows with the transformers engine (same input order and `prompts_per_chunk`),
and with vLLM on GPU only under `sampling.reproducible`.

Quarantine: a prompt the engine cannot take (too long for the context with its answers, a chat
template or tokenizer error, an engine exception on that prompt alone) gets no candidates and
its reason in `quarantine`; the rest of the batch is sampled as usual. A dead vLLM engine is no
prompt's fault: its actor's process exits before any request fails (engine_loop), and Ray
retries the batch on the restarted actor.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from diversens import schema
from diversens.config import config_hash
from diversens.sampling.config import SamplingConfig
from diversens.sampling.engines import (
    Completion,
    Engine,
    Messages,
    Request,
    derive_seed,
    make_engine,
)
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
    """Adds the candidates columns (docs/design.md §6). Loads the engine once (one per actor)."""

    requires = schema.names(schema.PROMPT)
    adds = schema.names(schema.CANDIDATE, schema.QUARANTINE)

    def __init__(self, cfg: SamplingConfig | None = None, engine: Engine | None = None):
        self.cfg = cfg or SamplingConfig()
        self.engine = engine or make_engine(self.cfg)
        self.plan = candidate_plan(self.cfg.num_samples_per_prompt, self.cfg.num_first_turn)
        self.config_hash = config_hash(self.cfg)

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        cfg = self.cfg
        pids = [str(p) for p in batch["prompt_id"]]
        tasks = [str(t) for t in batch["task"]]
        convs = [as_messages(m) for m in batch["messages"]]
        problems = [self.problem(m, t) for m, t in zip(convs, tasks, strict=True)]
        rows = self.sample_isolated(pids, convs, tasks, problems)

        out = batch.copy()
        out["responses"] = [[c.text for c in row] for row in rows]
        out["turn"] = [[t for t, _ in self.plan[: len(row)]] for row in rows]
        out["parent"] = [[p for _, p in self.plan[: len(row)]] for row in rows]
        out["finish_reason"] = [[c.finish_reason for c in row] for row in rows]
        out["n_tokens"] = [[c.n_tokens for c in row] for row in rows]
        out["truncated"] = [[c.finish_reason == "length" for c in row] for row in rows]
        out["quarantine"] = pd.Series(problems, index=out.index, dtype=object)  # None = fine
        out["engine"] = self.engine.name
        out["model"] = cfg.model
        out["sampling"] = [
            json.dumps({**cfg.sampling_params(t), "followup": cfg.followup(t)}) for t in tasks
        ]
        out["config_hash"] = self.config_hash
        return out

    def problem(self, messages: Messages, task: str) -> str | None:
        """Why the engine cannot take this prompt ("<code>: <detail>"), or None.

        The longest conversation is a second turn: the prompt, a first answer of up to the task's
        token cap, the follow-up, then that cap again.
        """
        has_second = any(t == 2 for t, _ in self.plan)
        longest = messages
        if has_second:
            longest = followup_messages(messages, "", self.cfg.followup(task))
        try:
            n = self.engine.count_tokens(longest)
        except Exception as e:  # noqa: BLE001 - templates and tokenizers raise anything
            return f"tokenizer_error: {type(e).__name__}: {e}"
        limit = self.engine.context_length
        need = None if n is None else n + self.cfg.max_tokens(task) * (2 if has_second else 1)
        if limit is not None and need is not None and need > limit:
            return f"too_long: needs {need} tokens (prompt and answers), context is {limit}"
        return None

    def sample_isolated(self, pids, convs, tasks, problems) -> list[list[Completion]]:
        """Candidates per prompt ([] for a quarantined one). If the engine raises on the batch,
        each prompt is retried alone so one bad prompt is quarantined instead of the batch;
        if every prompt then fails, the engine is broken, not the prompts, and that raises."""
        ok = [i for i, p in enumerate(problems) if p is None]
        rows: list[list[Completion]] = [[] for _ in pids]
        try:
            done = self.sample(*([xs[i] for i in ok] for xs in (pids, convs, tasks)))
            for i, row in zip(ok, done, strict=True):
                rows[i] = row
            return rows
        except Exception as batch_error:  # noqa: BLE001 - isolate, then re-raise if not a prompt's
            failed = []
            for i in ok:
                try:
                    rows[i] = self.sample([pids[i]], [convs[i]], [tasks[i]])[0]
                except Exception as e:  # noqa: BLE001
                    problems[i] = f"engine_error: {type(e).__name__}: {e}"
                    failed.append(i)
            if len(ok) > 1 and len(failed) == len(ok):
                raise batch_error
            return rows

    def sample(self, pids: list[str], convs: list[Messages], tasks: list[str]):
        """k candidates per prompt, in plan order (see the module docstring). Each prompt's
        second turns go to the engine as soon as its first answers are in."""
        if not pids:
            return []
        cfg, f = self.cfg, self.cfg.num_first_turn
        # Second turns grouped by parent: one request (n = its count) per first answer.
        counts = [sum(1 for t, p in self.plan if t == 2 and p == j) for j in range(f)]

        def second_turns(i: int, answers: list[Completion]) -> list[Request]:
            conv, cap = convs[i], cfg.max_tokens(tasks[i])
            return [Request(followup_messages(conv, answers[j].text, cfg.followup(tasks[i])),
                            derive_seed(cfg.seed, pids[i], 2, j), n, cap)
                    for j, n in enumerate(counts) if n]  # fmt: skip

        first, second = self.engine.generate_then(
            [Request(m, derive_seed(cfg.seed, p, 1), f, cfg.max_tokens(t))
             for p, m, t in zip(pids, convs, tasks, strict=True)],
            second_turns,
        )  # fmt: skip
        parents = [j for j, n in enumerate(counts) if n]  # the order of second_turns' requests
        rows = []
        for i in range(len(pids)):
            taken = {j: iter(c) for j, c in zip(parents, second[i], strict=True)}
            rows.append(
                [first[i][c] if t == 1 else next(taken[p]) for c, (t, p) in enumerate(self.plan)]
            )
        return rows
