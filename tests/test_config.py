"""Typed configs from YAML and CLI options: precedence, types, unknown keys."""

import argparse
from dataclasses import dataclass, field
from typing import Any

import pytest

from diversens import config
from diversens.errors import UserError


@dataclass
class Inner:
    size: int = field(default=2, metadata={"help": "a size"})
    names: list[str] = field(default_factory=lambda: ["a"], metadata={"help": "names"})


@dataclass
class Outer:
    rate: float = field(default=0.5, metadata={"help": "a rate"})
    flag: bool = field(default=False, metadata={"help": "a flag"})
    model: str | None = field(default=None, metadata={"help": "a model"})
    inner: Inner = field(default_factory=Inner)
    tuned: Inner = field(default_factory=lambda: Inner(size=5), metadata={"help": "tuned"})
    counts: dict[str, int] = field(default_factory=dict, metadata={"help": "counts"})
    notes: dict[str, str] = field(default_factory=dict, metadata={"help": "notes"})
    passed: dict[str, Any] = field(default_factory=dict, metadata={"help": "a library's options"})

    def __post_init__(self):
        if not 0 <= self.rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {self.rate}")


def parse(argv, yaml_path=None):
    p = argparse.ArgumentParser()
    config.add_arguments(p, Outer)
    return config.load(Outer, yaml_path, config.overrides_from_args(p.parse_args(argv)))


def test_defaults_yaml_then_cli_precedence(tmp_path):
    assert parse([]) == Outer()
    y = tmp_path / "c.yaml"
    y.write_text("rate: 0.25\ninner:\n  size: 7\n  names: [x, y]\n")
    cfg = parse(["--inner.size", "9", "--flag", "true"], y)
    assert cfg == Outer(rate=0.25, flag=True, inner=Inner(size=9, names=["x", "y"]))
    assert parse(["--inner.names", "p,q"]).inner.names == ["p", "q"]
    assert parse(["--counts", "a=1,b=2"]).counts == {"a": 1, "b": 2}
    # A comma starts the next entry only where a key= follows: values may hold commas.
    assert parse(["--notes", "a=x, y,b=z=1"]).notes == {"a": "x, y", "b": "z=1"}
    with pytest.raises(UserError, match="counts.b"):
        parse(["--counts", "a=1,b=x"])


def test_passed_through_values_are_typed_from_the_cli_and_yaml(tmp_path):
    """A library's options (`dict[str, Any]`) go through as given, but the command line gives
    only strings and YAML reads 1e-5 as one: numbers and true/false are typed from either."""
    cli = parse(["--passed", "a=ipo,b=0.5,c=2,d=true,e=1e-5,f=none,g=nan"]).passed
    assert cli == {"a": "ipo", "b": 0.5, "c": 2, "d": True, "e": 1e-5, "f": "none", "g": "nan"}
    assert type(cli["c"]) is int
    y = tmp_path / "c.yaml"
    y.write_text("passed: {lr: 1e-5, names: [x, y], nested: {k: '1'}, gone: null}\n")
    assert parse([], y).passed == {"lr": 1e-5, "names": ["x", "y"], "nested": {"k": "1"},
                                   "gone": None}  # fmt: skip


def test_an_unknown_library_option_is_one_line_with_the_closest_names():
    with pytest.raises(UserError) as caught:
        config.check_names("t.opts", ["loss_type", "los_type"], ["loss_type", "beta"], "a field")
    assert str(caught.value) == "option t.opts.los_type: not a field; did you mean loss_type?"
    with pytest.raises(UserError, match=r"option t.opts.zzz: not a field$"):
        config.check_names("t.opts", ["zzz"], ["loss_type", "beta"], "a field")


def test_partial_section_refines_a_customised_default():
    assert parse(["--tuned.names", "z"]).tuned == Inner(size=5, names=["z"])
    assert parse(["--inner.names", "z"]).inner == Inner(size=2, names=["z"])


def test_unknown_key_is_named(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("inner:\n  sise: 3\n")
    with pytest.raises(UserError, match="inner.sise"):
        parse([], y)


def test_wrong_type_is_named():
    with pytest.raises(UserError, match="inner.size.*int"):
        parse(["--inner.size", "big"])
    with pytest.raises(UserError, match="flag"):
        config.from_dict(Outer, {"flag": "maybe"})


def test_post_init_check_becomes_user_error():
    with pytest.raises(UserError, match="rate must be in"):
        parse(["--rate", "2"])


def test_yaml_is_data_not_code(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        parse([], y)


def test_config_hash_stable_and_sensitive():
    assert config.config_hash(Outer()) == config.config_hash(Outer())
    assert config.config_hash(Outer()) != config.config_hash(Outer(rate=0.1))


def test_redacted_masks_secrets_and_url_credentials():
    from diversens.config import redacted

    dump = {
        "hf_token": "hf_abc",
        "api_key": "",  # empty: nothing to hide, left as is
        "storage_path": "s3://AKIA123:s3cr3t@bucket/run/checkpoints",
        "models": ["https://user:tok@host/m", "smollm2-135m-instruct"],
        "nested": {"password": "p", "seed": 3},
        "HF_TOKEN": "hf_abc",
        "max_new_tokens": 256,  # token counts and the tokenizer are no secret
        "tokens_per_candidate": 43.1,
        "tokenizer": "gpt2",
    }
    out = redacted(dump)
    assert out == {
        "hf_token": "***",
        "api_key": "",
        "storage_path": "s3://***@bucket/run/checkpoints",
        "models": ["https://***@host/m", "smollm2-135m-instruct"],
        "nested": {"password": "***", "seed": 3},
        "HF_TOKEN": "***",
        "max_new_tokens": 256,
        "tokens_per_candidate": 43.1,
        "tokenizer": "gpt2",
    }
    assert "s3cr3t" not in str(out) and dump["hf_token"] == "hf_abc"  # the input is untouched


def test_config_file_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("outer:\n  inner: {size: big}\n")
    with pytest.raises(UserError, match=r"c\.yaml: field outer\.inner\.size: expected int, got"):
        config.load(Outer, path, None, section="outer")
    path.write_text("inner: {size: big}\n")
    with pytest.raises(UserError, match=r"c\.yaml: field inner\.size: expected int, got 'big'"):
        parse([], path)
    # The same key given on the command line is the option's fault, not the file's.
    with pytest.raises(UserError, match=r"^option inner\.size: expected int, got 'huge'"):
        parse(["--inner.size", "huge"], path)


def test_train_seeds_give_one_run_per_strategy_and_seed_and_the_eval_counts_them():
    from diversens.jobs.config import PipelineConfig

    cfg = config.from_dict(PipelineConfig, {"train_strategies": ["diverse-ns", "random"],
                                            "train_seeds": [0, 2]})  # fmt: skip
    assert cfg.trained() == [("diverse-ns", "diverse-ns", 0), ("diverse-ns@s2", "diverse-ns", 2),
                             ("random", "random", 0), ("random@s2", "random", 2)]  # fmt: skip
    assert cfg.eval_runs() == 1 + 1 * (1 + 4)  # the reference, then 5 models at one eval seed
    with pytest.raises(config.ConfigError, match="train_seeds"):
        config.from_dict(PipelineConfig, {"train_seeds": [1, 1]})
