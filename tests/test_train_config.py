"""The training config: method defaults, YAML round trip, CLI flags and clear refusals."""

import argparse

import pytest

from tunelab.errors import TuneLabError
from tunelab.train.config import TrainConfig, add_flags, all_fields, from_flags, to_flags


def test_every_field_explains_itself():
    for _, f in all_fields():
        assert len(f.metadata["help"]) > 20, f.name


def test_method_defaults_differ():
    assert TrainConfig.for_method("full").training.learning_rate < TrainConfig.for_method("lora").training.learning_rate
    with pytest.raises(TuneLabError, match="unknown method"):
        TrainConfig.for_method("rlhf")  # dpo, orpo and kto are methods since issue 13


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig.for_method("ptuning")
    cfg.set({"model": "m", "data": "d", "lora_r": 32, "packing": False, "max_records": 7, "eval_split": 0.1})
    path = tmp_path / "config.yaml"
    cfg.to_yaml(path)
    back = TrainConfig.from_yaml(path)
    assert back == cfg
    assert back.training.learning_rate == 1e-2 and back.data.max_records == 7


def test_yaml_refuses_unknown_keys_and_bad_types():
    with pytest.raises(TuneLabError, match="unknown setting 'lora_rank'"):
        TrainConfig.from_yaml("method:\n  lora_rank: 8\n")
    with pytest.raises(TuneLabError, match="lora_r must be a int"):
        TrainConfig.from_yaml("method:\n  lora_r: lots\n")
    with pytest.raises(TuneLabError, match="malformed config YAML"):
        TrainConfig.from_yaml("method: [\n")


def test_flags_override_yaml_and_reproduce_config():
    p = argparse.ArgumentParser()
    add_flags(p)
    base = TrainConfig.for_method("lora")
    base.set({"model": "x", "data": "d", "epochs": 3.0})
    cfg = from_flags(p.parse_args(["--method", "full", "--max-steps", "5", "--no-packing"]), base)
    assert cfg.method.method == "full" and cfg.training.max_steps == 5 and cfg.data.packing is False
    assert cfg.training.epochs == 3.0  # kept from the file
    assert cfg.training.learning_rate == 2e-5  # the full fine-tune default, not LoRA's
    again = from_flags(p.parse_args(to_flags(cfg)))
    assert again == cfg


def test_train_help_lists_every_field(capsys):
    from tunelab.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert all("--" + f.name.replace("_", "-") in out for _, f in all_fields())
    assert "10%" in out
