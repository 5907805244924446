"""Heads: logits shape, parameter counts, and that a few steps of training reduce the loss."""

import pytest
import torch

from node_transfer.core.errors import ConfigError
from node_transfer.core.solvers import SolverSettings
from node_transfer.model.heads import FCHead, MLPHead, NODEHead, build_head, count_parameters, ode_blocks

NODE_KWARGS = dict(ode_width=32, solver="dopri5", rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kind", ["fc", "mlp", "node"])
@pytest.mark.parametrize("shape", [(5, 24), (5, 24, 3, 3)])
def test_heads_give_logits_for_vectors_and_maps(kind, shape):
    head = build_head(kind, 24, 7, **NODE_KWARGS)
    assert head(torch.randn(*shape)).shape == (5, 7)


def test_map_state_node_head():
    head = build_head("node", 16, 3, node_state="map", ode_width=8, solver="rk4", step_size=0.5)
    assert head(torch.randn(2, 16, 2, 2)).shape == (2, 3)
    with pytest.raises(ValueError, match="H, W"):
        head(torch.randn(2, 16))


def test_parameter_counts():
    fc = build_head("fc", 1280, 10)
    node = build_head("node", 1280, 10, ode_width=256)
    assert count_parameters(fc) == 1280 * 10 + 10
    # LayerNorm (2*1280) + ConcatLinear 1281->256 + ConcatLinear 257->1280, then the same FC.
    dynamics = 2 * 1280 + (1281 * 256 + 256) + (257 * 1280 + 1280)
    assert count_parameters(node) == dynamics + 1280 * 10 + 10
    assert isinstance(fc, FCHead) and isinstance(node, NODEHead) and len(ode_blocks(node)) == 1
    # the MLP control: the same layers without the time inputs, so 256 + 1280 parameters fewer (0.2%)
    mlp = build_head("mlp", 1280, 10, ode_width=256)
    assert isinstance(mlp, MLPHead) and not ode_blocks(mlp)
    assert count_parameters(node) - count_parameters(mlp) == 256 + 1280


@pytest.mark.parametrize("kind, adjoint", [("fc", False), ("mlp", False), ("node", False), ("node", True)])
def test_a_few_steps_reduce_the_loss(kind, adjoint):
    torch.manual_seed(0)
    features = torch.randn(32, 24)
    labels = torch.randint(0, 4, (32,))
    head = build_head(kind, 24, 4, adjoint=adjoint, **NODE_KWARGS)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(head(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_node_head_shares_the_fc_name_with_the_baseline():
    fc, node, mlp = build_head("fc", 8, 3), build_head("node", 8, 3, ode_width=4), build_head("mlp", 8, 3, ode_width=4)
    assert {"fc.weight", "fc.bias"} <= set(node.state_dict()) and set(fc.state_dict()) == {"fc.weight", "fc.bias"}
    assert {"fc.weight", "fc.bias"} <= set(mlp.state_dict())


def test_unknown_head_and_state_raise_config_errors():
    with pytest.raises(ConfigError, match="head"):
        build_head("resnet", 8, 3)
    with pytest.raises(ConfigError, match="ode_activation"):
        build_head("mlp", 8, 3, ode_activation="gelu")
    with pytest.raises(ConfigError, match="node_state"):
        build_head("node", 8, 3, node_state="tokens")
    with pytest.raises(ValueError, match=r"\(batch, 8\)"):
        build_head("fc", 8, 3)(torch.randn(2, 9))


def test_heads_are_built_from_the_config_and_take_its_defaults():
    from node_transfer.core.config import ExperimentConfig
    from node_transfer.model.heads import head_from_config

    config = ExperimentConfig(ode_width=8, solver="rk4", step_size=0.5, ode_backend="torchode", node_state="map")
    head = head_from_config(config, 6, 3)
    settings = head.block.settings
    assert (head.state, settings.solver, settings.step_size, head.block.backend.name) == ("map", "rk4", 0.5, "torchode")
    block, defaults = build_head("node", 6, 3).block, ExperimentConfig()
    assert block.settings == SolverSettings.from_config(defaults) and block.backend.name == defaults.ode_backend
    assert block.func.dynamics.fc1.linear.out_features == defaults.ode_width
    with pytest.raises(ConfigError, match="lerning_rate"):
        build_head("node", 6, 3, lerning_rate=0.1)  # options are the config's parameters, checked by name


def test_every_head_kind_has_one_builder_and_builds_from_the_config():
    """A head is an entry of `core.choices.HEAD_KINDS` and a builder registered in `model.heads` (two files)."""
    from node_transfer.core.choices import HEAD_KINDS
    from node_transfer.core.config import ExperimentConfig
    from node_transfer.model.heads import HEAD_BUILDERS, head_from_config

    assert set(HEAD_BUILDERS) == set(HEAD_KINDS)
    for name, kind in HEAD_KINDS.items():
        head = head_from_config(ExperimentConfig(head=name, ode_width=8), 16, 10)
        assert bool(ode_blocks(head)) == kind.solves, name
        assert head(torch.randn(2, 16)).shape == (2, 10)
