"""Bad parameters, from the command line and from papermill alike, fail before any work with a clear error."""

import json

import pytest

from node_transfer.app.cli import build_parser, config_options, main
from node_transfer.core.choices import HEAD_KINDS
from node_transfer.core.config import ExperimentConfig
from node_transfer.core.errors import ConfigError

# (command-line arguments, the parameter the error must name)
BAD_CLI = [
    (["--dataset", "mnist"], "dataset"),
    (["--backbone", "resnet9000"], "backbone"),
    (["--solver", "rk45"], "solver"),
    (["--optimizer", "rmsprop"], "optimizer"),
    (["--head", "resnet"], "head"),
    (["--rtol", "0"], "rtol"),
    (["--rtol=-1e-5"], "rtol"),
    (["--atol", "-1"], "atol"),
    (["--atol", "nan"], "atol"),
    (["--epochs", "0"], "epochs"),
    (["--epochs", "-3"], "epochs"),
    (["--batch-size", "0"], "batch_size"),
    (["--lr", "0"], "lr"),
    (["--lr", "-0.1"], "lr"),
    (["--t-end", "0"], "t_end"),
    (["--solver", "rk4"], "step_size"),
    (["--solver", "euler", "--step-size", "-0.1"], "step_size"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "data_dir"),
    (["--dataset", "imagefolder", "--data-dir", "/nonexistent/images"], "data_dir"),
    (["--weights", "/nonexistent/weights.pt"], "weights"),
    (["--init-from", "/nonexistent/run"], "init_from"),
    (["--reproduce-run", "/nonexistent/run"], "reproduce_run"),
    (["--momentum", "1.5"], "momentum"),
    (["--weight-decay", "-1"], "weight_decay"),
    (["--device", "tpu"], "device"),
    (["--target-val-acc", "1.5"], "target_val_acc"),
    (["--target-val-acc", "0"], "target_val_acc"),
    (["--schedule", "linear"], "schedule"),
    (["--schedule", "step", "--lr-milestones", "a,b"], "lr_milestones"),
    (["--lr-milestones", "100,60"], "lr_milestones"),
    (["--cache-features"], "cache_features"),
    (["--image-size", "4"], "image_size"),
    (["--val-size", "0"], "val_size"),
    (["--steer", "2"], "steer"),
    (["--resume"], "resume"),
    (["--on-solver-failure", "fallback", "--fallback-solver", "dopri5"], "fallback_solver"),
    (["--on-solver-failure", "retry"], "on_solver_failure"),
    (["--max-num-steps", "0"], "max_num_steps"),
    (["--node-state", "tokens"], "node_state"),
    (["--regularization", "l1"], "regularization"),
    (["--ode-backend", "jax"], "ode_backend"),
    (["--augment-dim", "-1"], "augment_dim"),
    (["--dropout", "1.0"], "dropout"),
]

# (papermill-style values, the parameter the error must name): papermill guesses types from strings
BAD_TYPES = [
    ({"epochs": "3"}, "epochs"),
    ({"lr": "0.1"}, "lr"),
    ({"adjoint": "yes"}, "adjoint"),
    ({"adjoint": 1}, "adjoint"),
    ({"seed": 1.5}, "seed"),
    ({"batch_size": True}, "batch_size"),
    ({"dataset": 7}, "dataset"),
    ({"rtol": None}, "rtol"),
    ({"lerning_rate": 0.1}, "lerning_rate"),
]


@pytest.mark.parametrize("argv, parameter", BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_bad_cli_parameter_is_named_before_any_work(argv, parameter, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["run", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert f"invalid parameter {parameter}=" in err and "expected" in err
    assert not (tmp_path / "runs").exists()  # nothing was written


@pytest.mark.parametrize("values, parameter", BAD_TYPES, ids=[str(v) for v, _ in BAD_TYPES])
def test_wrong_papermill_types_are_rejected(values, parameter):
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict(values)
    assert info.value.name == parameter and parameter in str(info.value)


def test_cuda_requested_without_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device"):
        ExperimentConfig(device="cuda").validate()


def test_existing_out_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="resume"):
        ExperimentConfig(out=str(out)).validate()
    with pytest.raises(ConfigError, match="last.pt"):
        ExperimentConfig(out=str(out), resume=True).validate()
    assert (out / "metrics.json").read_text() == "{}"


def test_unparseable_cli_value_names_the_option(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", "--epochs", "many"])
    assert info.value.code == 2 and "--epochs" in capsys.readouterr().err


def test_config_round_trips_through_json_and_the_cli(tmp_path):
    config = ExperimentConfig(head="fc", lr=0.05, target_val_acc=0.9, adjoint=True, step_size=0.1)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config.to_dict(), "versions": {"torch": "x"}}))
    assert ExperimentConfig.from_json(path) == config
    args = build_parser().parse_args(["run", "--head", "fc", "--lr", "0.05", "--target-val-acc", "0.9",
                                      "--adjoint", "--step-size", "0.1"])
    assert ExperimentConfig.from_dict(config_options(args)) == config
    args = build_parser().parse_args(["run", "--no-adjoint", "--init-from", "none"])
    parsed = ExperimentConfig.from_dict(config_options(args))
    assert parsed.adjoint is False and parsed.init_from is None


def test_defaults_are_valid_and_ints_are_accepted_for_floats():
    config = ExperimentConfig.from_dict({"lr": 1, "rtol": 1})
    assert isinstance(config.lr, float) and config.validate() is config


@pytest.mark.parametrize("command", ["run", "suite", "report", "readme", "predict", "demo", "notebooks"])
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and len(out.splitlines()) > 3
    if command == "run":
        assert "--val-size" in out and "10% otherwise" in out  # a % in a help text is printed, not formatted


def test_help_shows_one_spelling_and_both_are_accepted(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert out.count("--data-dir DATA_DIR") == 2 and "--data_dir" not in out  # usage line + option list
    assert out.count("--freeze-backbone, --no-freeze-backbone") == 1 and "--freeze_backbone" not in out
    args = build_parser().parse_args(["run", "--data_dir", "d", "--freeze_backbone", "--no-cache_features"])
    config = ExperimentConfig.from_dict(config_options(args))
    assert config.data_dir == "d" and config.freeze_backbone and not config.cache_features


@pytest.mark.parametrize("head", sorted(HEAD_KINDS))
def test_a_new_run_directory_names_its_head(tmp_path, head):
    from node_transfer.run.experiment import new_run_dir

    config = ExperimentConfig(head=head, solver="rk4", step_size=0.25, adjoint=head == "node", dataset="digits")
    name = new_run_dir(config, tmp_path).name
    expected = {"fc": "-digits-fc-s0", "mlp": "-digits-mlp-s0", "node": "-digits-node-rk4-adjoint-s0"}[head]
    assert name.endswith(expected), name  # an mlp run once got a folder named ...-node-dopri5-s0
