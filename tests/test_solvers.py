"""The solver registry: its tables match the libraries, and one backend-aware check serves config and block."""

import pytest

from node_transfer.core.config import ExperimentConfig
from node_transfer.core.errors import ConfigError
from node_transfer.core.solvers import (
    FIXED_STEP_NFE,
    ODE_BACKENDS,
    check_adjoint,
    check_backend,
    check_fallback,
    check_solver,
    fixed_step_solvers,
    is_fixed_step,
    nfe_per_step,
    solver_names,
)


def test_torchdiffeq_table_matches_the_library():
    # torchdiffeq has no public list of methods: its private one is read here only, to keep the table true.
    from torchdiffeq._impl.odeint import SOLVERS
    from torchdiffeq._impl.solvers import FixedGridODESolver

    usable = {name: cls for name, cls in SOLVERS.items() if name != "scipy_solver"}  # does not backpropagate
    assert solver_names("torchdiffeq") == sorted(usable)
    fixed = sorted(name for name, cls in usable.items() if issubclass(cls, FixedGridODESolver))
    assert fixed_step_solvers("torchdiffeq") == fixed


def test_torchode_table_matches_the_backend():
    from node_transfer.numerics.torchode_backend import _METHODS

    assert solver_names("torchode") == sorted(_METHODS)
    assert "tsit5" in solver_names("torchode") and "tsit5" not in solver_names("torchdiffeq")
    assert not set(solver_names("torchode")) & {"explicit_adams", "implicit_adams", "fixed_adams"}


@pytest.mark.parametrize("backend", ODE_BACKENDS)
def test_nfe_per_step_is_known_for_the_runge_kutta_methods(backend):
    for name, nfe in FIXED_STEP_NFE.items():
        assert is_fixed_step(name, backend) and nfe_per_step(name, backend) == nfe
    assert nfe_per_step("dopri5", backend) is None and not is_fixed_step("dopri5", backend)


def test_unknown_backend_names_the_parameter():
    with pytest.raises(ConfigError) as info:
        check_backend("jax")
    assert info.value.name == "ode_backend" and "torchode" in str(info.value)
    with pytest.raises(ConfigError, match="ode_backend"):
        check_solver("dopri5", 1e-3, 1e-3, 1.0, None, "jax")


def test_fallback_must_be_a_fixed_step_method_of_the_chosen_backend():
    check_fallback("explicit_adams", "torchdiffeq")
    for backend in ODE_BACKENDS:
        check_fallback("rk4", backend)
        with pytest.raises(ConfigError, match="fallback_solver"):
            check_fallback("dopri5", backend)
    with pytest.raises(ConfigError) as info:
        check_fallback("explicit_adams", "torchode")
    assert info.value.name == "fallback_solver" and "torchode" in str(info.value) and "rk4" in str(info.value)


def test_config_refuses_a_fallback_the_backend_lacks():
    """The bug of issue 12: torchode + explicit_adams passed validation and failed only mid-training."""
    config = ExperimentConfig(ode_backend="torchode", on_solver_failure="fallback", fallback_solver="explicit_adams")
    with pytest.raises(ConfigError) as info:
        config.validate(check_paths=False)
    assert info.value.name == "fallback_solver" and "torchode" in str(info.value)
    config.replace(fallback_solver="rk4").validate(check_paths=False)
    config.replace(ode_backend="torchdiffeq").validate(check_paths=False)  # torchdiffeq has explicit_adams


def test_config_and_block_refuse_the_same_adjoint_combination():
    from node_transfer.numerics.dynamics import MLPDynamics
    from node_transfer.numerics.ode import ODEBlock

    check_adjoint(True, "kinetic", "torchdiffeq")
    with pytest.raises(ConfigError, match="regularization"):
        ExperimentConfig(ode_backend="torchode", adjoint=True, regularization="kinetic").validate(check_paths=False)
    with pytest.raises(ConfigError, match="regularization"):
        ODEBlock(MLPDynamics(4, 4), adjoint=True, regularization="kinetic", ode_backend="torchode")


def test_block_fallback_uses_the_same_check():
    from node_transfer.numerics.dynamics import MLPDynamics
    from node_transfer.numerics.ode import ODEBlock

    block = ODEBlock(MLPDynamics(4, 4), ode_backend="torchode")
    with pytest.raises(ConfigError, match="fallback_solver"):
        block.use_fallback("explicit_adams", 0.25)
    ODEBlock(MLPDynamics(4, 4)).use_fallback("explicit_adams", 0.25)


def test_new_runs_use_the_lean_backend_and_saved_runs_keep_theirs(tmp_path):
    """Every committed run records `ode_backend`; a configuration saved before the setting existed was
    solved by torchdiffeq, so it is read so (rebuild, resume, predict give the numbers it was run with)."""
    import json

    from node_transfer.core.rundir import saved_config
    from node_transfer.core.solvers import DEFAULT_BACKEND, LEGACY_BACKEND

    assert ExperimentConfig().ode_backend == DEFAULT_BACKEND == "lean" and LEGACY_BACKEND == "torchdiffeq"
    saved = ExperimentConfig(head="node").to_dict()
    del saved["ode_backend"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert ExperimentConfig.from_json(tmp_path / "config.json").ode_backend == "torchdiffeq"
    assert saved_config(tmp_path)["ode_backend"] == "torchdiffeq"
    (tmp_path / "config.json").write_text(json.dumps({**saved, "ode_backend": "torchode"}))
    assert ExperimentConfig.from_json(tmp_path / "config.json").ode_backend == "torchode"
