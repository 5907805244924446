"""What each suite declares: the paper's protocol, matched controls, sweeps on the same data and budget."""


import pytest
import torch

from node_transfer.core.errors import ConfigError
from node_transfer.suites.registry import get_suite


def test_paper_suite_follows_the_paper_protocol():
    suite = {run.label: run for run in get_suite("paper", "gpu")}
    baseline, rk, adjoint = suite["baseline"], suite["rk"], suite["adjoint"]
    assert (baseline.params["head"], baseline.params["optimizer"], baseline.params["epochs"]) == ("fc", "adam", 200)
    assert rk.init_from == "baseline" and rk.params["solver"] == "dopri5" and rk.params["rtol"] == 1e-5
    assert rk.params["optimizer"] == "adam" and rk.params["epochs"] == 100
    assert adjoint.params["adjoint"] and adjoint.params["optimizer"] == "sgd" and adjoint.params["epochs"] == 160
    # torchdiffeq's odenet_mnist reading: tol 1e-3, SGD 0.1 with momentum, lr decays at 60/100/140 of 160
    assert (adjoint.params["rtol"], adjoint.params["atol"], adjoint.params["lr"]) == (1e-3, 1e-3, 0.1)
    assert adjoint.params["lr_milestones"] == "60,100,140" and adjoint.params["momentum"] == 0.9
    assert (suite["adjoint-libtol"].params["rtol"], suite["adjoint-libtol"].params["atol"]) == (1e-7, 1e-9)
    # the NODE arms and their controls stop at the baseline's own validation accuracy, not the paper's
    assert all(run.target_from == "baseline" for label, run in suite.items() if label != "baseline")
    assert "target_val_acc" not in rk.params
    assert baseline.params["backbone"] == "efficientnet_b0" and baseline.params["dataset"] == "cifar10"
    with pytest.raises(ConfigError, match="profile"):
        get_suite("paper", "tpu")


@pytest.mark.parametrize("profile", ["cpu", "gpu", "fmnist"])
def test_every_node_arm_has_its_controls_with_the_same_recipe(profile):
    suite = {run.label: run.params for run in get_suite("paper", profile)}
    recipe = ("optimizer", "lr", "momentum", "schedule", "lr_milestones", "epochs")
    for node, control in (("rk", "fc-adam"), ("rk", "mlp"), ("rk", "euler"), ("adjoint", "fc-sgd"),
                          ("adjoint", "node-sgd-backprop")):
        assert {k: suite[node].get(k) for k in recipe} == {k: suite[control].get(k) for k in recipe}, control
    assert suite["fc-adam"]["head"] == "fc" and suite["mlp"]["head"] == "mlp"
    assert (suite["euler"]["solver"], suite["euler"]["step_size"]) == ("euler", 1.0)
    assert suite["node-sgd-backprop"]["adjoint"] is False and suite["node-adam-adjoint"]["adjoint"] is True
    assert suite["node-adam-adjoint"]["optimizer"] == "adam"
    heads = {run.label: run.params for run in get_suite("heads", profile)}
    assert list(heads)[:5] == ["fc", "mlp", "euler", "node", "node-adjoint"]
    converged = heads.pop("fc-converged")  # the linear probe trained until its val loss stops falling
    assert converged["patience"] > 0 and converged["epochs"] > heads["fc"]["epochs"]
    assert {k: v for k, v in converged.items() if k not in ("epochs", "patience")} == {
        k: v for k, v in heads["fc"].items() if k != "epochs"}
    assert len({(p["lr"], p["epochs"], p["optimizer"], p["batch_size"]) for p in heads.values()}) == 1
    paired = {(p.get("train_subset"), p.get("ode_width")) for label, p in heads.items() if not label.endswith("-all")}
    assert len(paired) == 1  # the NODE heads and the controls they are compared with see the same data
    if profile == "fmnist":
        assert paired == {(20000, 64)} and "train_subset" not in heads["fc-all"]


@pytest.mark.parametrize("profile", ["cpu", "gpu", "fmnist"])
def test_overfit_suite_pairs_each_node_arm_with_matched_controls_over_long_windows(profile):
    suite = {run.label: run for run in get_suite("overfit", profile)}
    params = {label: run.params for label, run in suite.items()}
    recipe = ("optimizer", "lr", "momentum", "schedule", "lr_milestones", "epochs")
    for node, control in (("rk", "fc-adam"), ("rk", "mlp"), ("rk", "euler"), ("adjoint", "fc-sgd"),
                          ("rk-imagenet", "baseline")):
        assert {k: params[node].get(k) for k in recipe} == {k: params[control].get(k) for k in recipe}, control
    data = ("dataset", "train_subset", "val_size", "image_size", "augment", "batch_size", "backbone")
    assert len({tuple(p.get(k) for k in data) for p in params.values()}) == 1  # one data set, no augmentation
    assert all(p["augment"] is False and p.get("schedule", "none") != "cosine" for p in params.values())
    continued = [run for label, run in suite.items() if label not in ("baseline", "rk-imagenet")]
    assert all(run.init_from == "baseline" and run.target_from is None for run in continued)
    assert suite["rk-imagenet"].init_from is None and params["rk-imagenet"]["head"] == "node"
    if profile == "fmnist":  # the paper's shape: 5,000 training images, windows of 20 epochs or more
        assert params["baseline"]["train_subset"] == 5000 and params["baseline"]["epochs"] >= 60
        assert all(run.params["epochs"] >= 40 for run in continued)


@pytest.mark.parametrize("name", ["tolerance", "solvers", "beyond"])
def test_head_sweeps_compare_configurations_on_the_same_data_and_budget(name):
    sweep = [run.params for run in get_suite(name, "fmnist")]
    shared = ("train_subset", "batch_size", "epochs", "lr", "freeze_backbone", "cache_features")
    assert len({tuple(p.get(k) for k in shared) for p in sweep}) == 1  # only the head or its solver differs
    # Fashion-MNIST's sweeps are cut to 10,000 images x 10 epochs; digits keep every training image
    assert (sweep[0]["train_subset"], sweep[0]["epochs"], sweep[0]["batch_size"]) == (10000, 10, 256)
    assert "train_subset" not in get_suite(name, "cpu")[0].params


def test_step_milestones_scale_the_odenet_mnist_schedule():
    from node_transfer.suites.profiles import step_milestones

    assert step_milestones(160) == "60,100,140"
    assert step_milestones(8) == "3,5,7"
    assert step_milestones(3) == "1,2,3"


PRIMARY_OVERFIT_ARMS = ("baseline", "rk", "adjoint", "fc-adam", "fc-sgd")


@pytest.mark.parametrize("profile", ["cpu", "gpu", "fmnist"])
def test_overfit_lite2_is_the_overfit_suite_with_only_the_backbone_changed(profile):
    lite0, lite2 = get_suite("overfit", profile), get_suite("overfit-lite2", profile)
    assert [run.label for run in lite2] == [run.label for run in lite0]
    for old, new in zip(lite0, lite2):
        assert new.params["backbone"] == "tf_efficientnet_lite2" and new.params["weights"] == "imagenet"
        assert {k: v for k, v in new.params.items() if k != "backbone"} == {
            k: v for k, v in old.params.items() if k != "backbone"}
        assert (new.init_from, new.target_from, new.group) == (old.init_from, old.target_from, old.group)
    if profile == "fmnist":  # Fashion-MNIST's 28 px images at the overfit suite's 32 px, 5,000 training images
        assert {(run.params["image_size"], run.params["train_subset"]) for run in lite2} == {(32, 5000)}


def test_overfit_lite2_plans_its_primary_arms_from_its_own_baseline(tmp_path):
    from node_transfer.suites.runner import plan

    planned = plan("overfit-lite2", "fmnist", 1, tmp_path / "x", labels=PRIMARY_OVERFIT_ARMS)
    assert [run.label for run, _, _ in planned] == list(PRIMARY_OVERFIT_ARMS)
    configs = {run.label: config for run, _, config in planned}
    assert {config.backbone for config in configs.values()} == {"tf_efficientnet_lite2"}
    assert all(configs[label].init_from == str(tmp_path / "x" / "baseline-s0") for label in PRIMARY_OVERFIT_ARMS[1:])
    assert configs["baseline"].init_from is None and configs["adjoint"].adjoint and configs["rk"].solver == "dopri5"


@pytest.mark.parametrize("profile", ["cpu", "gpu", "fmnist"])
def test_maps_suite_matches_the_conv_node_with_its_controls_on_the_same_cached_images(profile):
    suite = {run.label: run.params for run in get_suite("maps", profile)}
    assert list(suite) == ["node-map", "euler-map", "node", "euler", "mlp", "fc"]
    shared = ("dataset", "image_size", "train_subset", "val_size", "batch_size", "backbone", "weights", "epochs",
              "optimizer", "lr", "ode_width", "freeze_backbone", "cache_features", "augment")
    assert len({tuple(p.get(k) for k in shared) for p in suite.values()}) == 1  # only the head differs
    assert suite["node"]["image_size"] == 96 and suite["node"]["freeze_backbone"] and suite["node"]["cache_features"]
    assert {label for label, p in suite.items() if p.get("node_state") == "map"} == {"node-map", "euler-map"}
    solver = ("solver", "rtol", "atol", "step_size", "adjoint")
    assert {k: suite["node-map"].get(k) for k in solver} == {k: suite["node"].get(k) for k in solver}
    assert (suite["node-map"]["solver"], suite["node-map"]["rtol"]) == ("dopri5", 1e-5)
    assert (suite["euler-map"]["solver"], suite["euler-map"]["step_size"]) == ("euler", 1.0)
    assert {k: v for k, v in suite["euler-map"].items() if k not in solver} == {
        k: v for k, v in suite["node-map"].items() if k not in solver}
    if profile == "fmnist":
        assert (suite["node"]["train_subset"], suite["node"]["batch_size"], suite["node"]["epochs"]) == (5000, 256, 30)


def test_maps_suite_puts_the_convolutional_block_on_a_3x3_map():
    from node_transfer.core.config import ExperimentConfig
    from node_transfer.model.backbones import create_backbone, feature_shape
    from node_transfer.model.heads import count_parameters, head_from_config
    from node_transfer.numerics.dynamics import ConvDynamics, MLPDynamics

    suite = {run.label: run.params for run in get_suite("maps", "fmnist")}
    backbone, _ = create_backbone(suite["node-map"]["backbone"], "none")
    assert feature_shape(backbone, suite["node-map"]["image_size"]) == (1280, 3, 3)  # 1x1 at the other suites' 32 px
    heads = {label: head_from_config(ExperimentConfig.from_dict(suite[label]), 1280, 10)
             for label in ("node-map", "euler-map", "node")}
    assert isinstance(heads["node-map"].block.dynamics, ConvDynamics) and heads["node-map"].state == "map"
    assert isinstance(heads["euler-map"].block.dynamics, ConvDynamics)
    assert isinstance(heads["node"].block.dynamics, MLPDynamics) and heads["node"].state == "vector"
    assert count_parameters(heads["node-map"]) == count_parameters(heads["euler-map"])  # the same convolutions
    maps = torch.randn(2, 1280, 3, 3)
    assert heads["node-map"](maps).shape == heads["euler-map"](maps).shape == (2, 10)


def test_maps_suite_plans_each_arm_alone(tmp_path):
    from node_transfer.suites.runner import plan

    for label in ("node-map", "euler-map", "node"):
        (run, seed, config), = plan("maps", "fmnist", 1, tmp_path / "x", labels=(label,))
        assert (run.label, seed, config.image_size, config.out) == (label, 0, 96, str(tmp_path / "x" / f"{label}-s0"))
        assert config.node_state == ("map" if label.endswith("-map") else "vector") and config.init_from is None


def test_suite_list_names_the_new_suites():
    import subprocess
    import sys

    listed = subprocess.run([sys.executable, "-m", "node_transfer", "suite", "--list", "--profile", "fmnist"],
                            capture_output=True, text=True, check=True).stdout
    assert "\noverfit-lite2: " in listed and "\nmaps: " in listed and "    node-map " in listed


@pytest.mark.parametrize("profile", ["cpu", "gpu", "fmnist"])
def test_the_learning_rate_suite_pairs_each_node_arm_with_its_control_at_one_rate(profile):
    from node_transfer.suites.registry import LARGE_STEP_RATES
    from node_transfer.suites.spec import rate_label

    paper = {run.label: run for run in get_suite("paper", profile)}
    suite = {run.label: run for run in get_suite("learning-rates", profile)}
    assert suite["baseline"].params == paper["baseline"].params
    for optimizer, (node, control) in {"adam": ("rk", "fc-adam"), "sgd": ("adjoint", "fc-sgd")}.items():
        for lr in LARGE_STEP_RATES[optimizer]:
            a, b = suite[rate_label(node, lr)], suite[rate_label(control, lr)]
            assert a.params["lr"] == b.params["lr"] == lr and a.init_from == b.init_from == "baseline"
            assert a.target_from is None and b.target_from is None  # whole budget: curves of one length
            differs = {k for k in a.params.keys() | b.params.keys() if a.params.get(k) != b.params.get(k)}
            assert differs == set(paper[node].params) ^ set(paper[control].params) | {"head", "on_solver_failure"} \
                - {"lr"}, differs  # only the ODE (and what solving it needs) separates a pair
    assert rate_label("rk", 3e-3) == "rk-lr3e-3" and rate_label("fc-sgd", 0.1) == "fc-sgd-lr1e-1"


def test_the_small_overfitting_suite_changes_only_the_training_images():
    overfit = {run.label: run for run in get_suite("overfit", "fmnist")}
    small = get_suite("overfit-small", "fmnist")
    assert [run.label for run in small] == ["baseline", "rk", "adjoint", "fc-adam", "fc-sgd", "rk-imagenet"]
    for run in small:
        assert run.params == {**overfit[run.label].params, "train_subset": 1000}
        assert run.init_from == overfit[run.label].init_from
