"""Configuration: every bad input is refused with one line naming file, field, value, rule."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from neurosim.cli import main
from neurosim.config import (ExperimentConfig, build, expand_runs, load_chip, load_experiment,
                             parse_override)
from neurosim.errors import ConfigError

BASE = {"name": "t", "data": {"dataset": "digits"}}


def write(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def merged(**sections) -> dict:
    data = {**BASE}
    for key, value in sections.items():
        data[key] = value
    return data


BAD_EXPERIMENTS = [
    # (description, file contents, dotted field in the message, words of the rule)
    ("unknown top-level key", merged(epochz=3), "epochz", "unknown field"),
    ("unknown nested key", merged(train={"epochs": 1, "lr": 0.1}), "train.lr", "unknown field"),
    ("wrong type", merged(train={"epochs": "three"}), "train.epochs", "must be an integer"),
    ("negative std", merged(precondition={"input": {"std": -1.0}}),
     "precondition.input.std", "must be >= 0.0"),
    ("zero lr", merged(optimizer={"lr": 0.0}), "optimizer.lr", "must be > 0.0"),
    ("negative lr", merged(optimizer={"lr": -1e-3}), "optimizer.lr", "must be > 0.0"),
    ("input dims mismatch", merged(network={"dims": [100, 10]}), "network.dims[0]",
     "784 input features"),
    ("class dims mismatch", merged(network={"dims": [784, 100, 7]}), "network.dims[2]",
     "10 classes"),
    ("unknown rule", merged(rule="hebbian"), "rule", "must be one of bp, fa, dfa, sdfa, drtp"),
    ("unknown backend", merged(simulation={"backend": "cuda"}), "simulation.backend",
     "must be one of numpy, numba"),
    ("unknown device", merged(simulation={"backend": "torch", "device": "gpu"}),
     "simulation.device", "must be one of cpu, cuda"),
    ("cuda without torch", merged(simulation={"backend": "numba", "device": "cuda"}),
     "simulation.device", "needs backend torch"),
    ("unknown dataset", merged(data={"dataset": "cifar100"}), "data.dataset",
     "must be one of mnist, fashion_mnist, kmnist, usps, digits"),
    ("unknown optimizer", merged(optimizer={"name": "rmsprop"}), "optimizer.name",
     "must be one of sgd, adam"),
    ("uniform high <= low", merged(precondition={"input": {"distribution": "uniform",
                                                          "low": 1.0, "high": 0.5}}),
     "precondition.input.high", "must be >"),
    ("unknown chip", merged(chip="no_such_chip"), "chip", "must be a preset"),
    ("bad condition override", merged(conditions={"x": {"optimizer.lr": -1}}),
     "conditions.x.optimizer.lr", "must be > 0.0"),
    ("zero batch", merged(train={"batch_size": 0}), "train.batch_size", "must be >= 1"),
    ("momentum of adam", merged(optimizer={"name": "adam", "momentum": 0.9}),
     "optimizer.momentum", "only sgd uses it (name is adam; Adam's momentum is beta1)"),
    ("betas of sgd", merged(optimizer={"name": "sgd", "beta2": 0.2}), "optimizer.beta2",
     "only adam uses it (name is sgd)"),
    ("eps of the noise phase's sgd",
     merged(precondition={"optimizer": {"name": "sgd", "eps": 0.5}}),
     "precondition.optimizer.eps", "only adam uses it"),
    ("bounds of gaussian noise",
     merged(precondition={"input": {"distribution": "gaussian", "low": 5.0, "high": 6.0}}),
     "precondition.input.low",
     "only distribution uniform or binary uses it (distribution is gaussian)"),
    ("mean of uniform noise",
     merged(precondition={"input": {"distribution": "uniform", "mean": 100.0}}),
     "precondition.input.mean", "only distribution gaussian or correlated uses it"),
    ("unknown noise distribution",
     merged(precondition={"input": {"distribution": "pink"}}), "precondition.input.distribution",
     "must be one of gaussian, uniform, binary, correlated"),
    ("spike rate of gaussian noise",
     merged(precondition={"input": {"rate": 0.5}}), "precondition.input.rate",
     "only distribution binary uses it (distribution is gaussian)"),
    ("length scale of binary noise",
     merged(precondition={"input": {"distribution": "binary", "length_scale": 3.0}}),
     "precondition.input.length_scale", "only distribution correlated uses it"),
    ("spike rate of zero", merged(precondition={"input": {"distribution": "binary", "rate": 0}}),
     "precondition.input.rate", "must be > 0.0 and <= 1.0"),
    ("spike rate past one",
     merged(precondition={"input": {"distribution": "binary", "rate": 1.5}}),
     "precondition.input.rate", "must be > 0.0 and <= 1.0"),
    ("spikes below their background",
     merged(precondition={"input": {"distribution": "binary", "low": 1.0, "high": 0.0}}),
     "precondition.input.high", "must be > precondition.input.low (1.0)"),
    ("zero length scale",
     merged(precondition={"input": {"distribution": "correlated", "length_scale": 0.0}}),
     "precondition.input.length_scale", "must be > 0.0 and <= 64.0"),
    ("length scale past 64 pixels",
     merged(precondition={"input": {"distribution": "correlated", "length_scale": 100}}),
     "precondition.input.length_scale", "must be > 0.0 and <= 64.0"),
    ("spike rate NaN",
     merged(precondition={"input": {"distribution": "binary", "rate": float("nan")}}),
     "precondition.input.rate", "must be a finite number > 0.0 and <= 1.0"),
    ("infinite length scale",
     merged(precondition={"input": {"distribution": "correlated", "length_scale": float("inf")}}),
     "precondition.input.length_scale", "must be a finite number > 0.0 and <= 64.0"),
    ("train size past the dataset", merged(data={"dataset": "digits", "train_size": 5000}),
     "data.train_size", "must be in 1..1437 (digits has 1437 train images) or null"),
    ("test size past the dataset", merged(data={"dataset": "digits", "test_size": 361}),
     "data.test_size", "1..360"),
    ("train size past the dataset in a condition",
     merged(conditions={"b": {"data": {"train_size": 5000}}}), ": conditions.b.data.train_size",
     "1..1437"),
    ("batch past a condition's training set, the batch not set by the condition",
     merged(train={"batch_size": 64}, conditions={"b": {"data.train_size": 32}}),
     "(condition b): train.batch_size", "must be in 1..32"),
    ("batch past the training set", merged(data={"dataset": "digits", "train_size": 32},
                                           train={"batch_size": 64}),
     "train.batch_size", "must be in 1..32, the training examples (data.train_size)"),
    ("noise batch past the fixed noise set",
     merged(precondition={"enabled": True, "n_examples": 10, "batch_size": 64}),
     "precondition.batch_size", "must be in 1..10"),
    ("OOD dataset of another input width", merged(evaluation={"ood": ["rotate", "cifar10"]}),
     "evaluation.ood[1]", "784 input features"),
    ("beta out of range", merged(optimizer={"beta1": 1.0}), "optimizer.beta1", "must be >= 0.0 and < 1.0"),
    ("repeated seeds", merged(seeds=[0, 0]), "seeds", "must be distinct"),
    ("no seeds", merged(seeds=[]), "seeds", "at least one"),
    ("condition name out of the folder", merged(conditions={"../x": {"rule": "bp"}}),
     "conditions", "without '/'"),
    ("condition name YAML reads as a boolean", merged(conditions={True: {"rule": "bp"}}),
     "conditions", "quote names"),
    ("empty condition name", merged(conditions={"": {"rule": "bp"}}), "conditions",
     "not empty"),
    ("experiment name with a path", merged(name="a/b"), "name", "without '/'"),
    ("condition sets a seed", merged(conditions={"x": {"seed": 3}}), "conditions.x.seed",
     "cannot set"),
    ("condition override key not text", merged(conditions={"x": {1: "fa"}}), "conditions.x",
     "dotted field names"),
    # seeds are mixed mod 2**64: 2**64 was accepted and ran exactly as seed 0
    ("seed of 2**64", merged(seed=2**64), "seed = 18446744073709551616",
     "must be >= 0 and <= 18446744073709551615"),
    ("seeds past 2**64 - 1", merged(seeds=[1, 2**64 + 1]), "seeds[1]",
     "must be >= 0 and <= 18446744073709551615"),
    ("population seed of 2**64", merged(population={"seeds": [2**64]}),
     "population.seeds[0]", "must be >= 0 and <= 18446744073709551615"),
    # sizes without an upper bound passed validation, then crashed the run with an
    # OverflowError or MemoryError traceback
    ("threads past 1024", merged(simulation={"backend": "numpy", "threads": 10**11}),
     "simulation.threads = 100000000000", "must be >= 1 and <= 1024"),
    ("layer wider than 2**20", merged(network={"dims": [784, 10**11, 10]}),
     "network.dims[1] = 100000000000", "must be >= 1 and <= 1048576"),
    ("noise set past 2**26", merged(precondition={"n_examples": 10**11}),
     "precondition.n_examples = 100000000000", "must be >= 1 and <= 67108864"),
    ("lr past 1000", merged(optimizer={"lr": 1e300}), "optimizer.lr = 1e+300",
     "must be > 0.0 and <= 1000.0"),
    ("shift past the image", merged(evaluation={"ood_shifts_px": [2.0, 1000.0]}),
     "evaluation.ood_shifts_px[1] = 1000.0", "must be >= 0.0 and <= 28"),
    ("population seeds running past 2**64 - 1",
     merged(population={"size": 3, "first_seed": 2**64 - 2}), "population.first_seed",
     "first_seed + size - 1, must be <= 18446744073709551615 (2**64 - 1)"),
]


@pytest.mark.parametrize("description,data,field,rule", BAD_EXPERIMENTS,
                         ids=[case[0] for case in BAD_EXPERIMENTS])
def test_bad_experiment_is_refused_by_validate(tmp_path, capsys, description, data, field, rule):
    path = write(tmp_path, data)
    assert main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {path}")
    assert field in err and rule in err, err


@pytest.mark.parametrize("description,data,field,rule", BAD_EXPERIMENTS[:4],
                         ids=[case[0] for case in BAD_EXPERIMENTS[:4]])
def test_bad_experiment_is_refused_by_run(tmp_path, capsys, description, data, field, rule):
    path = write(tmp_path, data)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert field in err and rule in err
    assert not (tmp_path / "out").exists()  # refused before anything ran


BAD_CHIPS = [
    ("w_min >= w_max", {"forward": {"w_min": 1.0, "w_max": 1.0}}, "forward.w_max", "must be >"),
    ("range excludes zero", {"forward": {"w_min": 0.1, "w_max": 1.0}}, "forward.w_min",
     "must contain 0"),
    ("range excludes zero from above", {"forward": {"w_max": -0.5, "w_min": -1.0}},
     "forward.w_max = -0.5", "w_min < 0 < w_max"),
    ("init_fill > 1", {"forward": {"init_fill": 1.5}}, "forward.init_fill", "<= 1.0"),
    ("unknown feedback kind", {"feedback": {"kind": "magic"}}, "feedback.kind",
     "must be one of stored, regenerated, sign, ternary"),
    ("negative gain", {"feedback": {"gain": -1}}, "feedback.gain", "must be > 0.0"),
    ("regenerated with programming error", {"feedback": {"kind": "regenerated",
                                                          "programming_error": 0.1}},
     "feedback.kind", "regenerated feedback is digital"),
    ("feedback levels < 2", {"feedback": {"levels": 1}}, "feedback.levels", "must be >= 2"),
    ("device levels past any device", {"forward": {"device": {"model": "exp_step",
                                                               "levels": 10**30},
                                                    "update": {"mode": "pulsed"}}},
     "forward.device.levels", "<= 1048576"),
    ("feedback stuck > 1", {"feedback": {"stuck_at_min": 0.7, "stuck_at_max": 0.7}},
     "feedback.stuck_at_min + stuck_at_max", "add up to <= 1"),
    ("unknown device", {"forward": {"device": {"model": "memristor9000"}}},
     "forward.device.model", "must be one of"),
    ("negative step", {"forward": {"device": {"model": "constant_step", "dw_min": -0.01}}},
     "forward.device.dw_min", "must be > 0.0"),
    ("negative noise", {"forward": {"device": {"dw_min_ctoc": -0.1}}},
     "forward.device.dw_min_ctoc", "must be >= 0.0"),
    ("two cycle-to-cycle models", {"forward": {"device": {"dw_min_ctoc": 0.1,
                                                          "write_noise": 0.02}}},
     "forward.device.write_noise", "set one of them"),
    ("write noise > the range", {"forward": {"device": {"write_noise": 1.5}}},
     "forward.device.write_noise", "<= 1.0"),
    ("fraction > 1", {"forward": {"device": {"stuck_at_min": 1.5}}},
     "forward.device.stuck_at_min", "<= 1.0"),
    ("stuck fractions > 1 together", {"forward": {"device": {"stuck_at_min": 0.6,
                                                              "stuck_at_max": 0.6}}},
     "forward.device.stuck_at_min + stuck_at_max + stuck_at_initial", "add up to <= 1"),
    ("pulsed ideal device", {"forward": {"update": {"mode": "pulsed"}}},
     "forward.update.mode", "need a device model"),
    # the message named pulsed alone: in-array (stochastic) updates program devices too
    ("device model updated exactly", {"forward": {"device": {"model": "constant_step"},
                                                  "update": {"mode": "ideal"}}},
     "forward.device.model", "set update.mode: pulsed (a batch's update as pulse counts) or "
                             "stochastic (in-array pulse trains)"),
    # an ideal device has no device state: these were accepted and silently not simulated
    ("stuck ideal devices", {"forward": {"device": {"stuck_at_max": 0.2}}},
     "forward.device.stuck_at_max", "an ideal device is updated exactly"),
    ("spread of ideal devices", {"forward": {"device": {"w_max_dtod": 0.3}}},
     "forward.device.w_max_dtod", "device-to-device spread"),
    ("noisy ideal devices", {"forward": {"device": {"write_noise": 0.02}}},
     "forward.device.write_noise", "constant_step"),
    ("unknown update mode", {"forward": {"update": {"mode": "magic"}}},
     "forward.update.mode", "must be one of ideal, pulsed"),
    # fields the chosen model or mode does not use: were accepted and silently ignored
    ("linear_step's gamma on exp_step", {"forward": {"device": {"model": "exp_step",
                                                                 "gamma_up": 0.5},
                                                      "update": {"mode": "pulsed"}}},
     "forward.device.gamma_up", "only model linear_step uses it (model is exp_step)"),
    ("exp_step's nonlinearity on soft_bounds",
     {"forward": {"device": {"model": "soft_bounds", "nonlinearity_ltd": -5.0},
                  "update": {"mode": "pulsed"}}},
     "forward.device.nonlinearity_ltd", "only model exp_step uses it"),
    ("pulse-train length of a pulsed update",
     {"forward": {"device": {"model": "constant_step"}, "update": {"mode": "pulsed", "bl": 1}}},
     "forward.update.bl", "only update.mode stochastic uses it (mode is pulsed)"),
    ("pulse cap of an in-array update",
     {"forward": {"device": {"model": "constant_step"},
                  "update": {"mode": "stochastic", "max_pulses": 1}}},
     "forward.update.max_pulses", "only update.mode pulsed uses it (mode is stochastic)"),
    ("ternary zeros of a stored array", {"feedback": {"ternary_zero_fraction": 0.9}},
     "feedback.ternary_zero_fraction", "only kind ternary uses it (kind is stored)"),
    ("levels of a sign array", {"feedback": {"kind": "sign", "levels": 256}},
     "feedback.levels", "a sign array's cells are +-max|B|"),
    ("zero tile rows", {"tiles": {"rows": 0}}, "tiles.rows", "must be >= 1"),
    ("max_pulses past 2**16", {"forward": {"device": {"model": "constant_step"},
                                           "update": {"mode": "pulsed", "max_pulses": 10**20}}},
     "forward.update.max_pulses = 100000000000000000000", "must be >= 1 and <= 65536"),
    ("bl past 2**16", {"forward": {"device": {"model": "constant_step"},
                                   "update": {"mode": "stochastic", "bl": 10**20}}},
     "forward.update.bl = 100000000000000000000", "must be >= 1 and <= 65536"),
    ("adc_bits_default past the periphery's cap", {"energy": {"adc_bits_default": 100000}},
     "energy.adc_bits_default = 100000", "must be >= 1 and <= 24"),
    ("dac_bits_default past the periphery's cap", {"energy": {"dac_bits_default": 25}},
     "energy.dac_bits_default = 25", "must be >= 1 and <= 24"),
]


@pytest.mark.parametrize("description,data,field,rule", BAD_CHIPS,
                         ids=[case[0] for case in BAD_CHIPS])
def test_bad_chip_is_refused(tmp_path, capsys, description, data, field, rule):
    chip = write(tmp_path, {"name": "bad", **data}, "chip.yaml")
    assert main(["config", "validate", str(chip)]) == 2
    err = capsys.readouterr().err
    assert f"error: {chip}" in err and field in err and rule in err, err
    experiment = write(tmp_path, merged(chip=str(chip)))
    assert main(["config", "validate", str(experiment)]) == 2
    assert field in capsys.readouterr().err


@pytest.mark.parametrize("override,field,rule", [
    ("train.epochs=-1", "train.epochs", "must be >= 0"),
    ("optimizer.lr=0", "optimizer.lr", "must be > 0.0"),
    ("rule=xfa", "rule", "must be one of"),
    ("train.epochz=1", "train.epochz", "unknown field"),
    ("noequals", "noequals", "dotted.key=value"),
    ("seeds=0,1", "seeds", "must be a list of integers or null"),
    ("precondition.input.std=.nan", "precondition.input.std", "must be a finite number >= 0.0"),
    ("precondition.input.mean=-.inf", "precondition.input.mean", "must be a finite number"),
    ("precondition.input.rate=nan", "precondition.input.rate", "must be a number > 0.0 and <= 1.0"),
    ("precondition.input.length_scale=inf", "precondition.input.length_scale",
     "must be a number > 0.0 and <= 64.0"),
])
def test_bad_override_is_refused(tmp_path, capsys, override, field, rule):
    path = write(tmp_path, BASE)
    assert main(["config", "validate", str(path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert field in err and rule in err, err


def test_an_override_through_a_misspelt_condition_is_refused(tmp_path, capsys, monkeypatch):
    """``--set conditions.fa_nosie.rule=bp`` (a typo of fa_noise) created a condition
    fa_nosie, which ran as one more condition; it is refused, naming the file's conditions
    and how to add one deliberately."""
    monkeypatch.setattr("neurosim.commands.run.run_experiment",
                        lambda *args, **kwargs: pytest.fail("the experiment ran"))
    quickstart = REPO / "experiments" / "quickstart.yaml"
    for command in ("run", "config validate"):
        assert main([*command.split(), str(quickstart),
                     "--set", "conditions.fa_nosie.rule=bp"]) == 2
        (err,) = capsys.readouterr().err.strip().splitlines()
        assert err == (f"error: --set: conditions.fa_nosie.rule = 'bp': {quickstart} has no "
                       "condition fa_nosie (its conditions are bp, fa, fa_noise); to add one, "
                       "give it whole: --set 'conditions.fa_nosie={rule: ...}'"), command
    with pytest.raises(ConfigError, match="it has no conditions"):
        load_experiment(write(tmp_path, BASE), ["conditions.x.rule=bp"])


def test_set_changes_a_condition_of_the_file_or_adds_one_given_whole(tmp_path):
    """A condition the file defines takes overrides field by field; a new one is given
    whole (a YAML mapping), and then takes field overrides too."""
    path = write(tmp_path, merged(conditions={"fa": {"rule": "fa"}}))
    experiment = load_experiment(path, ["conditions.fa.train.epochs=2",
                                        "conditions.extra={rule: bp}",
                                        "conditions.extra.optimizer.lr=0.01"])
    runs = {run.condition: run.experiment for run in expand_runs(experiment, path)}
    assert sorted(runs) == ["extra", "fa"]
    assert (runs["fa"].rule, runs["fa"].train.epochs) == ("fa", 2)
    assert (runs["extra"].rule, runs["extra"].optimizer.lr) == ("bp", 0.01)


def test_set_changes_a_field_a_condition_spells_flat(tmp_path):
    """A condition that spells a field flat (``precondition.steps: 250``) beside a section
    mapping (``precondition: {enabled: true}``): ``--set conditions.noisy.precondition.steps``
    ran the file's 250 steps, the override added a second spelling the flat one overrode.
    The override now sets the flat spelling; one field has one spelling."""
    noisy = {"precondition": {"enabled": True}, "precondition.steps": 250}
    path = write(tmp_path, merged(conditions={"noisy": noisy}))
    experiment = load_experiment(path, ["conditions.noisy.precondition.steps=500",
                                        "conditions.noisy.precondition.n_examples=64"])
    assert experiment.conditions["noisy"] == {"precondition": {"enabled": True,
                                                               "n_examples": 64},
                                              "precondition.steps": 500}
    (run,) = expand_runs(experiment, path)
    assert (run.experiment.precondition.steps, run.experiment.precondition.n_examples) == \
        (500, 64)


def test_a_field_a_condition_sets_twice_is_refused(tmp_path):
    """Flat and nested spellings of one field in one condition: which one won depended on
    the order of the keys; the file is refused, naming the field and both values."""
    noisy = {"precondition": {"enabled": True, "steps": 500}, "precondition.steps": 250}
    path = write(tmp_path, merged(conditions={"noisy": noisy}))
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert str(error.value) == (f"{path}: conditions.noisy.precondition.steps = [500, 250]: "
                                "set twice in one condition (flat and nested spellings of "
                                "the same field): give it once")


def test_overrides_apply_and_validate(tmp_path):
    path = write(tmp_path, BASE)
    experiment = load_experiment(path, ["train.epochs=3", "optimizer.lr=0.01", "rule=dfa",
                                        "network.dims=[784, 50, 10]"])
    assert experiment.train.epochs == 3
    assert experiment.optimizer.lr == 0.01
    assert experiment.rule == "dfa"
    assert experiment.network.dims == (784, 50, 10)


def test_conditions_times_seeds_expand_to_validated_runs(tmp_path):
    path = write(tmp_path, merged(seeds=[4, 5], conditions={
        "a": {"rule": "bp"}, "b": {"precondition.enabled": True, "precondition.steps": 7}}))
    runs = expand_runs(load_experiment(path), path)
    assert [(r.condition, r.seed) for r in runs] == [("a", 4), ("a", 5), ("b", 4), ("b", 5)]
    assert runs[0].experiment.rule == "bp" and not runs[0].experiment.precondition.enabled
    assert runs[2].experiment.precondition.steps == 7 and runs[2].experiment.rule == "fa"
    assert runs[0].chip.name == "ideal"


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=fa") == ("a", "fa")
    with pytest.raises(ConfigError):
        parse_override("=3")


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntrain: {epochs: 3\n")
    assert main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "not valid YAML" in err


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["config", "validate", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot be read" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml"))
                         + sorted((REPO / "hw_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path, capsys):
    assert main(["config", "validate", str(path)]) == 0
    assert "valid" in capsys.readouterr().out


def test_cli_error_has_no_traceback(tmp_path):
    """Through the installed entry point: exit status 2, one line, no traceback."""
    path = write(tmp_path, merged(optimizer={"lr": -1}))
    result = subprocess.run([sys.executable, "-m", "neurosim.cli", "config", "validate",
                             str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: optimizer.lr = -1.0: must be > 0.0 and <= 1000.0"]


def test_chip_paths_are_relative_to_the_experiment_and_presets_win_for_bare_names(
        tmp_path, monkeypatch):
    """chip: c.yaml is the file beside the experiment, even when the current folder has
    one of the same name; chip: ideal is the preset, even beside a stray file 'ideal'."""
    ideal = yaml.safe_load((REPO / "hw_configs" / "ideal.yaml").read_text())
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "c.yaml").write_text(yaml.safe_dump({**ideal, "name": "beside"}))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**ideal, "name": "current"}))
    (tmp_path / "ideal").write_text("not: [a chip")
    monkeypatch.chdir(tmp_path)
    for chip, expected in (("c.yaml", "beside"), ("ideal", "ideal")):
        path = write(tmp_path / "exp", {**BASE, "chip": chip}, "e.yaml")
        (run,) = expand_runs(load_experiment(path), path)
        assert run.chip.name == expected


def test_a_file_that_is_not_text_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"name: \xff\xfe\x00binary")
    assert main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not UTF-8 text" in err, err


def test_yaml_1_1_readings_of_documented_values_are_accepted(tmp_path):
    """PyYAML reads `lr: 1e-3` as text and `fused_update: off` as false (YAML 1.1); both
    mean what they say (while `lr: abc` stays an error)."""
    path = tmp_path / "e.yaml"
    path.write_text("name: t\ndata: {dataset: digits}\noptimizer: {lr: 1e-3}\n"
                    "simulation: {fused_update: off}\n")
    experiment = load_experiment(path)
    assert experiment.optimizer.lr == 1e-3 and experiment.simulation.fused_update == "off"
    path.write_text("name: t\ndata: {dataset: digits}\noptimizer: {lr: abc}\n")
    with pytest.raises(ConfigError, match="optimizer.lr"):
        load_experiment(path)


@pytest.mark.parametrize("name, text, field, lines", [
    ("chip.yaml", "name: dup\nforward:\n  device:\n    levels: 64\n    levels: 256\n",
     "forward.device.levels", (5, 4)),
    ("exp.yaml", "name: t\ndata: {dataset: digits}\ntrain:\n  epochs: 1\ntrain:\n  epochs: 2\n",
     "train", (5, 3)),
    ("exp.yaml", "name: t\ndata: {dataset: digits}\nconditions:\n  a: {rule: bp, rule: fa}\n",
     "conditions.a.rule", (4, 4)),
])
def test_a_duplicate_key_is_refused_naming_file_field_and_line(tmp_path, capsys, name, text,
                                                                field, lines):
    """PyYAML keeps the last of two equal keys; a config file with one is refused instead."""
    path = tmp_path / name
    path.write_text(text)
    assert main(["config", "validate", str(path)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"error: {path}: {field} = ")
    assert f"duplicate key on line {lines[0]} (first given on line {lines[1]})" in err


def test_a_duplicate_key_in_a_sweep_or_an_override_is_refused(tmp_path, capsys):
    experiment = write(tmp_path, BASE)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: s\nexperiment: {experiment}\nseeds: [0]\nseeds: [1]\n")
    assert main(["config", "validate", str(sweep)]) == 2
    assert f"error: {sweep}: seeds = [1]: duplicate key on line 4" in capsys.readouterr().err
    assert main(["config", "validate", str(experiment), "--set",
                 "train={epochs: 1, epochs: 2}"]) == 2
    assert "error: --set: train.epochs = 2: duplicate key" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="duplicate key"):
        parse_override("a={b: 1, b: 1}")


def test_a_long_value_is_cut_in_the_message(tmp_path, capsys):
    """A whole mapping where a field was expected is shown cut to 80 characters, so that
    the rule stays on a readable line."""
    big = {f"key{i}": i for i in range(100)}
    path = write(tmp_path, merged(train={"epochz": big}))
    assert main(["config", "validate", str(path)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    prefix = f"error: {path}: train.epochz = "
    assert err.startswith(prefix) and "unknown field; allowed fields: epochs" in err
    shown = err[len(prefix):err.index(": unknown field")]
    assert len(shown) == 80 and shown.endswith("...") and shown.startswith("{'key0': 0")
    error = ConfigError("f.yaml", "x", big, "must be a number")
    assert error.value == big  # the value itself is kept whole
    assert str(ConfigError("f.yaml", "x", "a" * 78, "r")) == f"f.yaml: x = '{'a' * 78}': r"


def test_chip_validate_and_show_apply_set_overrides(tmp_path, capsys):
    """`config validate CHIP --set ...` validates the chip with the overrides (it used to
    validate the file as it is), and `config show CHIP --set ...` shows them applied."""
    chip = REPO / "hw_configs" / "ideal.yaml"
    assert main(["config", "validate", str(chip), "--set", "forward.w_max=-5"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err == (f"error: {chip} (with --set overrides): forward.w_max = -5.0: "
                   "must be > forward.w_min (-1.0)")
    assert main(["config", "validate", str(chip), "--set", "name=renamed"]) == 0
    assert "valid chip 'renamed'" in capsys.readouterr().out
    assert main(["config", "show", str(chip), "--set", "tiles.rows=128"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["tiles"]["rows"] == 128


@pytest.mark.parametrize("section, line", [
    ({"precondition": {"optimizer": {"lr": "abc"}}},
     "precondition.optimizer.lr = 'abc': must be a number > 0.0 and <= 1000.0"),
    ({"population": {"size": "abc"}}, "population.size = 'abc': must be an integer or null"),
    ({"seeds": [1, "x"]}, "seeds[1] = 'x': must be an integer"),
    ({"population": [1]}, "population = [1]: must be a mapping or null"),
])
def test_an_error_inside_an_optional_section_names_the_inner_field(tmp_path, capsys,
                                                                   section, line):
    """A section that may be null (precondition.optimizer, population) blames the field
    inside it that is wrong, not the whole section ('must be a mapping or null')."""
    path = write(tmp_path, merged(**section))
    assert main(["config", "validate", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {path}: {line}"


def test_fields_lists_the_fields_of_optional_sections(capsys):
    """`config fields` expands an optional section (precondition.optimizer, population)
    like a required one: its own row, then every field under its dotted path."""
    assert main(["config", "fields", "experiment"]) == 0
    paths = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    for section, names in (("precondition.optimizer", ("name", "lr", "momentum")),
                           ("population", ("seeds", "size", "first_seed", "max_chips"))):
        start = paths.index(section)
        assert [f"{section}.{name}" for name in names] == [
            path for path in paths[start + 1:start + 7] if path.split(".")[-1] in names]
    assert "train.epochs" in paths and "train" not in paths  # a required section: fields only


def test_a_sweep_seed_past_2_64_is_refused(tmp_path, capsys):
    """A sweep's seeds are the experiment's: 2**64 was accepted (and ran as seed 0)."""
    experiment = write(tmp_path, BASE)
    sweep = write(tmp_path, {"name": "s", "experiment": str(experiment), "seeds": [0, 2**64]},
                  "sweep.yaml")
    assert main(["config", "validate", str(sweep)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {sweep}: seeds[1] = 18446744073709551616: "
        "must be >= 0 and <= 18446744073709551615")
    population = write(tmp_path, {**BASE, "population": {"size": 2,
                                                        "first_seed": 2**64 - 2}})
    assert main(["config", "validate", str(population)]) == 0  # the last seed is 2**64 - 1


@pytest.mark.parametrize("experiment, sweep, line", [
    ({"conditions": {"a": {"train.epochs.x": 1}}}, None,
     "{experiment}: conditions.a.train.epochs.x = 1: train.epochs is not a mapping of fields"),
    ({"conditions": {"a": {"chip": "no_such_chip"}}}, None,
     "{experiment}: conditions.a.chip = 'no_such_chip': must be a preset"),
    ({}, {"overrides": {"train.epochs.x": 1}},
     "{sweep}: overrides.train.epochs.x = 1: train.epochs is not a mapping of fields"),
    ({}, {"conditions": {"a": {"train.epochs.x": 1}}},
     "{sweep} (cell base): conditions.a.train.epochs.x = 1: train.epochs is not a mapping"),
    ({}, {"conditions": {"a": {"chip": "no_such_chip"}}},
     "{sweep} (cell base): conditions.a.chip = 'no_such_chip': must be a preset"),
    # errors in a field a condition, a case or a grid point sets were named by the field
    # alone ('{experiment} (condition a): optimizer.lr', '{sweep} (cell ...): chip')
    ({"conditions": {"a": {"optimizer": {"lr": -1}}}}, None,
     "{experiment}: conditions.a.optimizer.lr = -1.0: must be > 0.0"),
    ({"precondition": {"enabled": True, "batch_size": 64},
      "conditions": {"a": {"precondition.n_examples": 10}}}, None,
     "{experiment} (condition a): precondition.batch_size = 64: must be in 1..10"),
    ({}, {"grid": {"chip": ["ideal", "no_such_chip"]}},
     "{sweep} (cell chip=no_such_chip): grid.chip[1] = 'no_such_chip': must be a preset"),
    ({}, {"cases": [{"optimizer.lr": 0.1}, {"optimizer.lr": -1}]},
     "{sweep} (cell optimizer.lr=-1): cases[1].optimizer.lr = -1.0: must be > 0.0"),
    ({}, {"grid": {"train.epochs.x": [1]}},
     "{sweep} (cell train.epochs.x=1): grid.train.epochs.x[0] = 1: train.epochs is not a "
     "mapping"),
    ({}, {"conditions": {"a": {"precondition.enabled": True}},
          "overrides": {"precondition.batch_size": 64, "precondition.n_examples": 10}},
     "{sweep} (cell base, condition a): overrides.precondition.batch_size = 64: must be in "
     "1..10"),
    ({"precondition": {"batch_size": 64, "n_examples": 10}},
     {"conditions": {"a": {"precondition.enabled": True}}},
     "{sweep} (cell base, condition a): precondition.batch_size = 64: must be in 1..10"),
])
def test_an_error_in_a_condition_or_a_sweep_override_names_its_file_and_path(
        tmp_path, capsys, experiment, sweep, line):
    """Such errors were blamed on --set ('error: --set: train.epochs.x = 1'), and a bad
    chip of a condition on the experiment's own chip field."""
    experiment_path = write(tmp_path, {**BASE, "train": {"epochs": 1}, **experiment})
    path = experiment_path
    if sweep is not None:
        path = write(tmp_path, {"name": "s", "experiment": str(experiment_path), **sweep},
                     "sweep.yaml")
    assert main(["config", "validate", str(path)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("error: " + line.format(experiment=experiment_path, sweep=path)), err


@pytest.mark.parametrize("data, line", [
    (merged(conditions=["a", "b"]), "conditions = ['a', 'b']: must be a mapping or null"),
    ({"data": {"dataset": "digits"}}, "name = null: is required"),
    (merged(population={"first_seed": 2}),
     "population.size = null: give the population either seeds or a size, not both"),
    (merged(train={"epochz": {"a": None, "b": [True, False]}}),
     "train.epochz = {'a': null, 'b': [true, false]}: unknown field"),
])
def test_messages_speak_yaml_not_python(tmp_path, capsys, data, line):
    """Messages said 'must be dict or null' and showed None, True, False: a YAML user
    writes a mapping, null, true and false."""
    path = write(tmp_path, data)
    assert main(["config", "validate", str(path)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"error: {path}: {line}"), err


def test_a_noise_phase_optimizer_given_in_part_is_the_experiment_s_with_those_fields(tmp_path):
    """`precondition.optimizer: {lr: ...}` under SGD with momentum is that SGD at the new lr
    (it was a default Adam: the noise phase silently changed optimizer); naming another
    optimizer takes that one's defaults (the experiment's betas do not follow into SGD);
    null keeps the experiment's; a condition's and a sweep cell's partial mapping alike."""
    sgd = {"name": "sgd", "lr": 0.01, "momentum": 0.9}
    noise = lambda **optimizer: merged(optimizer=sgd, precondition={"optimizer": optimizer})
    experiment = load_experiment(write(tmp_path, noise(lr=0.05)))
    assert (experiment.precondition.optimizer.name, experiment.precondition.optimizer.lr,
            experiment.precondition.optimizer.momentum) == ("sgd", 0.05, 0.9)
    assert load_experiment(write(tmp_path, noise(name="sgd", momentum=0.0))).precondition \
        .optimizer == experiment.optimizer.__class__(name="sgd", lr=0.01, momentum=0.0)
    adam = load_experiment(write(tmp_path, merged(
        optimizer={"name": "adam", "lr": 1e-4, "beta1": 0.8},
        precondition={"optimizer": {"name": "sgd", "lr": 0.05}})))
    assert adam.precondition.optimizer == adam.optimizer.__class__(name="sgd", lr=0.05)
    assert load_experiment(write(tmp_path, merged(optimizer=sgd))).precondition.optimizer is None
    conditions = merged(optimizer=sgd, conditions={
        "fast": {"precondition.optimizer": {"lr": 0.1}},
        "dotted": {"precondition.optimizer.lr": 0.2}})
    runs = {spec.condition: spec.experiment.precondition.optimizer
            for spec in expand_runs(load_experiment(write(tmp_path, conditions)))}
    assert {name: (o.name, o.lr, o.momentum) for name, o in runs.items()} == {
        "fast": ("sgd", 0.1, 0.9), "dotted": ("sgd", 0.2, 0.9)}
    sweep = write(tmp_path, {"name": "s", "experiment": str(write(tmp_path, merged(
        optimizer=sgd))), "grid": {"precondition.optimizer.lr": [0.3]}}, "sweep.yaml")
    from neurosim.sweep_plan import load_sweep

    optimizer = load_sweep(sweep).trials[0].spec.experiment.precondition.optimizer
    assert (optimizer.name, optimizer.lr, optimizer.momentum) == ("sgd", 0.3, 0.9)


def test_chip_set_makes_a_variant_of_a_chip_without_a_copy_of_its_file():
    """An experiment's chip_set is set over its chip file, a condition's adds to it, by
    dotted path or nested mapping; a bad value is named where it is set."""
    data = {"name": "x", "chip": "rram_agsi", "chip_set": {"forward.init_fill": 0.5},
            "conditions": {"plain": {},
                           "shifted": {"chip_set": {"forward": {"reference": "symmetry_point",
                                                                "reference_error": 0.01}}}}}
    plain, shifted = expand_runs(build(ExperimentConfig, data, "x.yaml"))
    preset = load_chip(REPO / "hw_configs" / "rram_agsi.yaml")
    assert plain.chip == dataclasses.replace(
        preset, forward=dataclasses.replace(preset.forward, init_fill=0.5))
    assert shifted.chip == dataclasses.replace(
        preset, forward=dataclasses.replace(preset.forward, init_fill=0.5,
                                            reference="symmetry_point", reference_error=0.01))
    for chip_set, message in (({"forward.reference": "zero"},
                               "conditions.shifted.chip_set.forward.reference = 'zero'"),
                              ({"forward.refrence": 1},
                               "conditions.shifted.chip_set.forward.refrence = 1: unknown")):
        bad = {**data, "conditions": {"shifted": {"chip_set": chip_set}}}
        with pytest.raises(ConfigError, match=re.escape(message)):
            expand_runs(build(ExperimentConfig, bad, "x.yaml"))
    with pytest.raises(ConfigError, match=re.escape(
            "(condition default): chip_set.forward.reference = 'symmetry_point': a reference")):
        expand_runs(build(ExperimentConfig, {"name": "x", "chip": "ecram", "chip_set": {
            "forward.reference": "symmetry_point"}}, "x.yaml"))
