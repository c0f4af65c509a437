"""Models verified before Ray (issue 37, class 3): every model dir a run loads, given or the
built-in model's cache entry, has weights that read whole and fit its config's architecture;
anything else is one line and exit 2 before Ray starts, and a damaged cache entry is built
again. Fast cases use a tiny Llama and copies of the bundled embedder; the slow ones copies of
the bundled SmolLM2 (big files linked where they stay whole)."""

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from diversens import models, weights
from diversens.cli import main
from diversens.errors import UserError

ORIGINAL_CACHE = os.environ.get("DIVERSENS_CACHE")
PAIR = {"prompt": "Name a colour.", "chosen": "Teal.", "rejected": "Red."}
TINY_LLAMA = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 32,
              "tie_word_embeddings": True}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A whole Llama of a few thousand weights (its lm_head tied, so not saved)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny") / "llama"
    LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)).save_pretrained(out)
    (out / "tokenizer.json").write_text("{}")
    return out


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Verdicts and converted models of this test only."""
    monkeypatch.setenv("DIVERSENS_CACHE", str(tmp_path / "cache"))


def copy(src: Path, dst: Path, own=()) -> Path:
    """`src` as a new dir: files in `own` copied (to damage), the others linked."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            if f.name in own:
                shutil.copyfile(f, dst / f.name)
            else:
                (dst / f.name).symlink_to(f.resolve())
    return dst


def cut(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[:keep])


def set_config(model: Path, **changes) -> None:
    config = model / "config.json"
    body = {**json.loads(config.read_text()), **changes}
    config.unlink()  # a link to the source: write a file of its own
    config.write_text(json.dumps(body))


def refusal(name: str) -> str:
    with pytest.raises(UserError) as e:
        models.check_model(name)
    assert "\n" not in str(e.value) and len(str(e.value)) < 600
    return str(e.value)


def test_a_model_that_fits_is_built_once_then_known_by_its_verdict(tiny, tmp_path, monkeypatch):
    model = copy(tiny, tmp_path / "m", own=["config.json"])
    models.check_model(str(model))  # lm_head is tied: not missing

    def built(*args):
        raise AssertionError("built again")

    monkeypatch.setattr(weights, "meta_model", built)
    models.check_model(str(model))  # the verdict: nothing built
    os.utime(model / "config.json", ns=(1, 1))
    with pytest.raises(AssertionError, match="built again"):
        models.check_model(str(model))  # a changed file: verified again


def sharded(tiny: Path, dst: Path) -> Path:
    """`tiny` as a sharded checkpoint: its one file as shard 1 of 1, with an index."""
    model = copy(tiny, dst)
    (model / "model.safetensors").rename(model / "model-00001-of-00001.safetensors")
    names = weights.safetensors_shapes(model / "model-00001-of-00001.safetensors", "", "")
    index = {"weight_map": dict.fromkeys(names, "model-00001-of-00001.safetensors")}
    (model / weights.SAFETENSORS_INDEX).write_text(json.dumps(index))
    return model


def bin_cut_short(tiny: Path, dst: Path) -> Path:
    model = copy(tiny, dst)
    with zipfile.ZipFile(model / "pytorch_model.bin", "w") as z:
        z.writestr("archive/data.pkl", b"\0" * 4096)
    cut(model / "pytorch_model.bin", 2000)
    return model


def sharded_with(tiny: Path, dst: Path, tensor: str, shard: str) -> Path:
    """A sharded copy whose index also puts `tensor` in `shard`."""
    model = sharded(tiny, dst)
    index = json.loads((model / weights.SAFETENSORS_INDEX).read_text())
    index["weight_map"][tensor] = shard
    (model / weights.SAFETENSORS_INDEX).write_text(json.dumps(index))
    return model


def missing_shard(tiny: Path, dst: Path) -> Path:
    return sharded_with(tiny, dst, "model.norm.weight", "model-00002-of-00002.safetensors")


def index_naming_an_absent_tensor(tiny: Path, dst: Path) -> Path:
    return sharded_with(tiny, dst, "model.extra.weight", "model-00001-of-00001.safetensors")


def data_cut_short(tiny: Path, dst: Path) -> Path:
    model = copy(tiny, dst, own=["model.safetensors"])
    cut(model / "model.safetensors", (model / "model.safetensors").stat().st_size - 100)
    return model


def header_cut_short(tiny: Path, dst: Path) -> Path:
    model = copy(tiny, dst, own=["model.safetensors"])
    cut(model / "model.safetensors", 5)
    return model


@pytest.mark.parametrize("make, message", [
    (data_cut_short, "model.safetensors is damaged or cut short (incomplete metadata"),
    (header_cut_short, "model.safetensors is damaged or cut short (header too small"),
    (bin_cut_short, "pytorch_model.bin is damaged or cut short (not a whole zip"),
    (missing_shard, "shard model-00002-of-00002.safetensors, listed in "
                    "model.safetensors.index.json, is missing"),
    (index_naming_an_absent_tensor, "model.safetensors.index.json lists tensor 'model.extra.weight' in "
                                    "model-00001-of-00001.safetensors, which lacks it"),
], ids=lambda v: getattr(v, "__name__", ""))  # fmt: skip
def test_weights_that_do_not_read_whole_are_one_line_naming_the_file(tiny, tmp_path, make,
                                                                      message):  # fmt: skip
    model = make(tiny, tmp_path / "m")
    got = refusal(str(model))
    assert got.startswith(f"model path '{model}': {message}") and got.endswith("copy the model again")


def test_an_architecture_transformers_lacks_is_one_line(tiny, tmp_path):
    model = copy(tiny, tmp_path / "a")
    set_config(model, model_type="llama-9")
    assert refusal(str(model)).startswith(f"model path '{model}': config.json: model_type "
                                          "'llama-9' is not an architecture transformers 5.")
    model = copy(tiny, tmp_path / "b")
    set_config(model, architectures=["LlamaForCausalLMv2"])
    assert refusal(str(model)).startswith(f"model path '{model}': config.json: architectures "
                                          "names 'LlamaForCausalLMv2', a model class")


def test_gpt2_config_over_llama_weights_is_refused_naming_the_tensors(tiny, tmp_path):
    """Loaded, this model would train from random values and exit 0 (issue 37)."""
    model = copy(tiny, tmp_path / "m")
    (model / "config.json").unlink()
    (model / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 16, "n_layer": 1,
        "n_head": 2, "vocab_size": 32, "n_positions": 64}))  # fmt: skip
    message = refusal(str(model))
    assert message.startswith(f"model path '{model}': its weights do not fit config.json (gpt2 "
                              "as GPT2LMHeadModel): ")  # fmt: skip
    assert "of the model's tensors are not in them (e.g. transformer.h.0." in message
    assert "of theirs are not in the model (e.g. model." in message
    assert "would start from random values" in message


def test_a_config_of_other_shapes_is_refused_naming_a_tensor(tiny, tmp_path):
    model = copy(tiny, tmp_path / "m")
    set_config(model, intermediate_size=24)
    assert "tensor model.layers.0.mlp.down_proj.weight is [16, 32] in the weights, the config " \
           "makes it [16, 24] (and 2 more)" in refusal(str(model))  # fmt: skip


def fake_conversion(tiny: Path, calls: list):
    """`models._convert` writing the tiny model where the GGUF's conversion goes."""

    def convert(gguf: Path, out: Path) -> Path:
        calls.append(out)
        with models.atomic_dir(out, replace=False) as tmp:
            for f in tiny.iterdir():
                shutil.copyfile(f, tmp / f.name)
        return out

    return convert


def test_a_damaged_builtin_cache_entry_is_built_again(tiny, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(models, "_convert", fake_conversion(tiny, calls))
    models.check_model(models.DEFAULT_GENERATOR)
    entry = calls[0]
    cut(entry / "model.safetensors", 1000)  # as a full disk or a killed copy leaves it
    models.check_model(models.DEFAULT_GENERATOR)
    assert calls == [entry, entry]
    weights.verify_model(entry, "rebuilt", "")
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # the damaged one gone


def test_a_damaged_cache_entry_that_cannot_be_moved_is_named(tiny, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(models, "_convert", fake_conversion(tiny, calls))
    models.check_model(models.DEFAULT_GENERATOR)
    cut(calls[0] / "model.safetensors", 1000)
    rename = Path.rename

    def refuse_aside(self, target):
        if ".damaged-" in str(target):
            raise PermissionError(13, "Permission denied")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse_aside)
    assert refusal(models.DEFAULT_GENERATOR) == (
        f"model 'smollm2-135m-instruct': its cache entry {calls[0]} is damaged and cannot be "
        "moved aside (Permission denied); remove it"
    )


def embedder_copy(dst: Path, damage: bool) -> Path:
    src = Path(models.resolve_model(models.DEFAULT_EMBEDDER))
    model = copy(src, dst, own=["model.safetensors"] if damage else [])
    if damage:
        cut(model / "model.safetensors", 4096)
    return model


def test_commands_refuse_a_damaged_model_in_one_line_before_ray(tiny, tmp_path, capsys):
    """Through the CLI (ray.init fails any test not marked slow): a sentence-transformers dir
    cut short, and a config over other weights, each exit 2 and one line."""
    models.check_model(str(embedder_copy(tmp_path / "whole", damage=False)))  # as it loads
    rows = tmp_path / "r.jsonl"
    rows.write_text('{"response": "a red kite", "prompt_id": "p1"}\n')
    embedder = embedder_copy(tmp_path / "e", damage=True)
    assert main(["measure", str(rows), "--embedder", str(embedder), "--measures", "dsi",
                 "-o", str(tmp_path / "r.parquet")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"model path '{embedder}': model.safetensors is damaged" in err
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps(PAIR) + "\n")
    model = copy(tiny, tmp_path / "m")
    set_config(model, num_hidden_layers=2)
    assert main(["train", str(pairs), "--model", str(model), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "of the model's tensors are not in them (e.g. model.layers.1." in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "r.parquet").exists()


# The bundled SmolLM2, through the CLI: resolving it converts it on a fresh cache (slow).


@pytest.fixture
def smollm(monkeypatch) -> Path:
    """The converted model every run shares."""
    if ORIGINAL_CACHE is None:
        monkeypatch.delenv("DIVERSENS_CACHE")
    else:
        monkeypatch.setenv("DIVERSENS_CACHE", ORIGINAL_CACHE)
    return Path(models.resolve_model(models.DEFAULT_GENERATOR))


@pytest.fixture
def no_ray(monkeypatch):
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the model was verified")

    monkeypatch.setattr(ray, "init", refuse)


def gpt2_config(model: Path, src: Path) -> None:
    (model / "config.json").unlink()
    (model / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 576, "n_layer": 30,
        "n_head": 9, "vocab_size": 49152}))  # fmt: skip


def unknown_architecture(model: Path, src: Path) -> None:
    set_config(model, model_type="smollm9", architectures=["SmolLM9ForCausalLM"])


def cut_short(model: Path, src: Path) -> None:
    (model / "model.safetensors").unlink()
    with open(src / "model.safetensors", "rb") as f:
        (model / "model.safetensors").write_bytes(f.read(1 << 20))


@pytest.mark.slow
@pytest.mark.parametrize("damage, argv, message", [
    (cut_short, ["generate-pairs", "--sampling.model", "{m}"],
     "model path '{m}': model.safetensors is damaged or cut short (incomplete metadata"),
    (gpt2_config, ["train", "{pairs}", "--model", "{m}"],
     "model path '{m}': its weights do not fit config.json (gpt2 as GPT2LMHeadModel): 364 of "
     "the model's tensors are not in them (e.g. transformer.h.0.attn.c_attn.bias"),
    (unknown_architecture, ["eval", "--models", "base={m}"],
     "model path '{m}': config.json: model_type 'smollm9' is not an architecture transformers"),
], ids=["cut short", "gpt2 config over llama weights", "unknown architecture"])  # fmt: skip
def test_a_damaged_copy_of_the_bundled_model_is_one_line_before_ray(
    smollm, damage, argv, message, tmp_path, capsys, no_ray
):
    model = copy(smollm, tmp_path / "m")
    damage(model, smollm)
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps(PAIR) + "\n")
    args = [a.format(m=model, pairs=pairs) for a in argv]
    assert main([*args, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(m=model) in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_cut_short_builtin_cache_entry_is_converted_again(smollm, tmp_path, monkeypatch):
    """The entry a killed conversion or a full disk left: every later run would fail on it in
    Ray; now the first run after it converts the bundled GGUF again."""
    monkeypatch.setenv("DIVERSENS_CACHE", str(tmp_path / "cache"))
    entry = copy(smollm, tmp_path / "cache" / "models" / smollm.name)
    cut_short(entry, smollm)
    models.check_model(models.DEFAULT_GENERATOR)
    assert (entry / "model.safetensors").stat().st_size == (smollm / "model.safetensors").stat(
        ).st_size  # fmt: skip
    weights.verify_model(entry, "rebuilt", "")
