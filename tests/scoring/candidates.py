"""Candidates rows and texts shared by the scoring tests."""

import pandas as pd

from diversens.scoring.config import QualityConfig

CFG = QualityConfig(scorer="none")
DAT_OK = "\n".join(f"{i}. {w}" for i, w in enumerate(
    "volcano spoon democracy jellyfish saxophone glacier receipt moth telescope porridge".split(), 1
))  # fmt: skip
STORY = (
    "Mara found an old stamp. She wrote a letter to a friend. "
    "She decided to send it at dawn. Weeks passed. A reply came."
)


def candidates(responses, task="cwt", finish=None, **measures):
    row = {
        "prompt_id": "p",
        "task": task,
        "messages": [{"role": "user", "content": "Write a story with stamp, letter, send."}],
        "meta": '{"words": ["stamp", "letter", "send"]}',
        "responses": responses,
        "finish_reason": finish or ["stop"] * len(responses),
        **measures,
    }
    return pd.DataFrame([row])
