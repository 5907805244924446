"""What each suite declares: the paper's protocol, matched controls, sweeps on the same data and budget."""


import pytest

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
    from node_transfer.suites.registry import step_milestones

    assert step_milestones(160) == "60,100,140"
    assert step_milestones(8) == "3,5,7"
    assert step_milestones(3) == "1,2,3"
