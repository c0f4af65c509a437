"""What eval runs on the driver (the head of a cluster, which has no GPU)."""

import numpy as np
import pandas as pd

from diversens import config
from diversens.evaluation.config import EvalConfig
from diversens.jobs import evaluate


def test_dat_embedder_on_the_driver_ignores_the_pools_gpu_device(monkeypatch):
    made = []

    class FakeEmbedder:
        def __init__(self, model, device="unset", batch_size=128):
            made.append((model, device))

        def encode(self, texts):
            return np.eye(len(texts), 4, dtype=np.float32)

    monkeypatch.setattr(evaluate, "Embedder", FakeEmbedder)
    cfg = config.from_dict(
        EvalConfig,
        {"scoring": {"measure": {"device": "cuda"}, "embed_pool": {"num_gpus_per_actor": 1}}},
    )
    outputs = pd.DataFrame({"task": ["dat", "aut"],
                            "response": ["1. cat\n2. dog\n3. sky", "1. a use"]})  # fmt: skip
    embedder = evaluate.driver_embedder(cfg)
    scored = evaluate.add_task_scores(outputs, cfg, embedder)
    assert made == [(cfg.scoring.measure.embedder, None)]  # auto: the driver's own device
    assert np.isfinite(scored.dat_score[0]) and np.isnan(scored.dat_score[1])
    # The across-sample measures (Vendi) use the same embedder: the model is loaded once.
    grouped = scored.assign(model="m", seed=1, source_prompt_id=["p", "q"],
                            prompt_id=["p#0", "q#0"])  # fmt: skip
    across = evaluate.add_across_sample_measures(grouped, cfg, embedder)
    assert len(made) == 1 and across.vendi.tolist() == [1.0, 1.0]
