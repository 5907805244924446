"""The solver-backed ODE block: accuracy, NFE accounting, adjoint gradients and errors."""

import math

import pytest
import torch

from node_transfer.core.errors import ConfigError, ODESolveError
from node_transfer.core.solvers import FIXED_STEP_NFE, check_solver, fixed_step_solvers, solver_names
from node_transfer.numerics.dynamics import ConvDynamics, MLPDynamics
from node_transfer.numerics.ode import ODEBlock

from known_dynamics import Explodes, LinearDynamics


@pytest.fixture
def linear_problem():
    torch.manual_seed(0)
    matrix = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=torch.float64)  # damped rotation
    h0 = torch.randn(5, 2, dtype=torch.float64)
    return matrix, h0


@pytest.mark.parametrize("solver", ["dopri5", "bosh3", "adaptive_heun", "dopri8"])
def test_linear_ode_matches_closed_form(linear_problem, solver):
    matrix, h0 = linear_problem
    exact = h0 @ torch.linalg.matrix_exp(matrix * 2.0).T
    errors = []
    for tol in (1e-5, 1e-8):
        block = ODEBlock(LinearDynamics(matrix), solver=solver, rtol=tol, atol=tol, t_end=2.0, max_num_steps=100_000)
        errors.append((block(h0) - exact).abs().max().item())
        # Tolerances bound the *local* error per step; the global error after many steps is a
        # problem- and method-dependent multiple of it (bosh3 at 1e-8: ~4e-6). 1e3 x tol bounds all four.
        assert errors[-1] < 1e3 * tol
    assert errors[1] < errors[0] / 10


def test_rk4_converges_at_fourth_order(linear_problem):
    matrix, h0 = linear_problem
    exact = h0 @ torch.linalg.matrix_exp(matrix).T
    errors = []
    for step in (0.2, 0.1):
        block = ODEBlock(LinearDynamics(matrix), solver="rk4", step_size=step)
        errors.append((block(h0) - exact).abs().max().item())
    # Halving the step of a 4th-order method divides the error by about 2^4 = 16.
    assert 10 < errors[0] / errors[1] < 24


@pytest.mark.parametrize("solver", sorted(FIXED_STEP_NFE))
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_fixed_step_nfe_is_exact(linear_problem, solver, steps):
    matrix, h0 = linear_problem
    block = ODEBlock(LinearDynamics(matrix), solver=solver, step_size=1.0 / steps)
    block(h0)
    assert block.nfe_forward == FIXED_STEP_NFE[solver] * steps


def test_adaptive_nfe_grows_as_tolerance_tightens():
    torch.manual_seed(0)
    dynamics = MLPDynamics(16, 32)
    h0 = torch.randn(8, 16)
    nfe = []
    for tol in (1e-2, 1e-4, 1e-6, 1e-8):
        block = ODEBlock(dynamics, solver="dopri5", rtol=tol, atol=tol)
        with torch.no_grad():
            block(h0)
        nfe.append(block.nfe_forward)
    assert nfe == sorted(nfe) and nfe[-1] > nfe[0]
    # dopri5 costs 2 evaluations to choose its first step, then 6 per attempted step (FSAL).
    assert all((n - 2) % 6 == 0 for n in nfe)


def test_adjoint_gradients_match_direct_backprop():
    torch.manual_seed(0)
    dynamics = MLPDynamics(6, 16).double()
    h0 = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    grads = {}
    for adjoint in (False, True):
        block = ODEBlock(dynamics, solver="dopri5", rtol=1e-10, atol=1e-10, adjoint=adjoint)
        dynamics.zero_grad()
        h0.grad = None
        block(h0).pow(2).sum().backward()
        grads[adjoint] = [h0.grad.clone()] + [p.grad.clone() for p in dynamics.parameters()]
        if adjoint:
            assert block.nfe_backward > 0  # the adjoint solves backwards in time
        else:
            assert block.nfe_backward == 0  # direct backprop differentiates the stored forward graph
    # Both are numerical gradients of the same exact flow: with tolerances at 1e-10 in float64 their
    # difference is solver error, O(1e-8) at most here; 1e-6 leaves room without hiding a real bug.
    for direct, adj in zip(grads[False], grads[True]):
        torch.testing.assert_close(adj, direct, rtol=1e-6, atol=1e-6)


def test_seminorm_adjoint_needs_fewer_backward_evaluations():
    torch.manual_seed(0)
    dynamics = MLPDynamics(64, 64)
    h0 = torch.randn(32, 64)
    nfe = {}
    for seminorm in (False, True):
        block = ODEBlock(dynamics, solver="dopri5", rtol=1e-6, atol=1e-6, adjoint=True, seminorm=seminorm)
        block(h0).pow(2).sum().backward()
        nfe[seminorm] = block.nfe_backward
    assert nfe[True] < nfe[False]


def test_conv_dynamics_keeps_the_map_shape():
    block = ODEBlock(ConvDynamics(8, 4), solver="rk4", step_size=0.5)
    out = block(torch.randn(2, 8, 3, 3))
    assert out.shape == (2, 8, 3, 3) and block.nfe_forward == 8


@pytest.mark.parametrize("dynamics", [MLPDynamics(10, 8, zero_init=True), ConvDynamics(8, 4, zero_init=True)])
def test_zero_init_starts_at_identity(dynamics):
    shape = (3, 10) if isinstance(dynamics, MLPDynamics) else (3, 8, 2, 2)
    h0 = torch.randn(*shape)
    torch.testing.assert_close(ODEBlock(dynamics)(h0), h0)


@pytest.mark.parametrize("backend", ["lean", "torchdiffeq"])
def test_step_bound_raises_with_solver_tolerance_and_nfe(backend):
    """torchdiffeq's bare assert is translated by its backend; the lean loop raises the same error itself."""
    block = ODEBlock(Explodes(), solver="dopri5", rtol=1e-7, atol=1e-7, t_end=2.0, max_num_steps=20,
                     ode_backend=backend)
    with pytest.raises(ODESolveError) as info:
        block(torch.ones(2, 3))
    message = str(info.value)
    assert "dopri5" in message and "1e-07" in message and "function evaluations" in message
    assert "max_num_steps=20" in message and info.value.nfe > 0


@pytest.mark.parametrize("backend", ["lean", "torchdiffeq"])
def test_fixed_step_blow_up_is_reported_as_non_finite(backend):
    block = ODEBlock(Explodes(), solver="euler", step_size=0.5, t_end=10.0, ode_backend=backend)
    with pytest.raises(ODESolveError, match="non-finite"):
        block(torch.full((2, 3), 10.0))


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        (dict(solver="rk45"), "solver"),
        (dict(solver="scipy_solver"), "solver"),
        (dict(rtol=0.0), "rtol"),
        (dict(rtol=-1e-3), "rtol"),
        (dict(atol=-1e-5), "atol"),
        (dict(atol=math.nan), "atol"),
        (dict(t_end=0.0), "t_end"),
        (dict(t_end=-1.0), "t_end"),
        (dict(solver="rk4"), "step_size"),
        (dict(solver="euler", step_size=2.0), "step_size"),
        (dict(max_num_steps=0), "max_num_steps"),
        (dict(steer=1.5), "steer"),
        (dict(regularization="l2"), "regularization"),
    ],
)
def test_bad_solver_options_name_the_parameter(kwargs, parameter):
    with pytest.raises(ValueError) as info:
        ODEBlock(MLPDynamics(4, 4), **kwargs)
    assert isinstance(info.value, ConfigError) and info.value.name == parameter
    assert parameter in str(info.value)


def test_unknown_solver_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        check_solver("rk45", 1e-3, 1e-3, 1.0, None)
    assert "dopri5" in str(info.value) and "rk4" in str(info.value)
    assert set(fixed_step_solvers()) < set(solver_names())


def test_wrong_feature_shape_is_a_value_error():
    block = ODEBlock(MLPDynamics(12, 8))
    with pytest.raises(ValueError, match=r"\(batch, 12\)"):
        block(torch.randn(3, 11))
    with pytest.raises(ValueError, match="height, width"):
        ODEBlock(ConvDynamics(8, 4))(torch.randn(3, 8))


def test_augment_dim_appends_zero_channels():
    torch.manual_seed(0)
    block = ODEBlock(MLPDynamics(6, 8, zero_init=True), augment_dim=2)
    h0 = torch.randn(4, 4)
    out = block(h0)
    assert out.shape == (4, 6)
    torch.testing.assert_close(out[:, 4:], torch.zeros(4, 2))  # identity dynamics keep the zeros


def test_steer_draws_end_times_in_range_and_uses_t_end_in_eval():
    block = ODEBlock(MLPDynamics(4, 4), t_end=1.0, steer=0.3)
    block.train()
    draws = [block._end_time() for _ in range(200)]
    assert 0.7 <= min(draws) < 0.8 and 1.2 < max(draws) <= 1.3
    block.eval()
    assert {block._end_time() for _ in range(5)} == {1.0}


def test_regularization_terms_are_non_negative_and_grow_with_dynamics():
    torch.manual_seed(0)
    values = []
    for scale in (0.1, 1.0, 10.0):
        dynamics = MLPDynamics(8, 16)
        with torch.no_grad():
            dynamics.fc2.linear.weight.mul_(scale)
        block = ODEBlock(dynamics, solver="rk4", step_size=0.25, regularization="both").train()
        torch.manual_seed(1)
        block(torch.randn(16, 8))
        values.append((block.regularization["kinetic"].item(), block.regularization["jacobian"].item()))
    assert all(k >= 0 and j >= 0 for k, j in values)
    assert values[0][0] < values[1][0] < values[2][0]
    assert values[0][1] < values[1][1] < values[2][1]
    block.eval()
    block(torch.randn(2, 8))
    assert block.regularization == {}  # evaluation integrates h alone


def test_saved_tensors_grow_with_steps_for_backprop_and_not_for_the_adjoint():
    from node_transfer.core.memory import SavedTensors

    state = torch.randn(64, 16)
    saved = {}
    for adjoint in (False, True):
        for steps in (2, 8):
            torch.manual_seed(0)
            block = ODEBlock(MLPDynamics(16, 32), solver="rk4", step_size=1 / steps, adjoint=adjoint)
            with SavedTensors() as recorder:
                loss = block(state).pow(2).sum()
            loss.backward()
            saved[adjoint, steps] = recorder.megabytes
    assert saved[False, 8] > 3 * saved[False, 2] > 0  # every RK4 stage's activations are kept
    assert saved[True, 8] == saved[True, 2]  # the adjoint keeps none of the solve's intermediate states


def test_linear_dynamics_checks_its_matrix_and_state():
    from node_transfer.numerics.dynamics import LinearDynamics

    with pytest.raises(ValueError, match="square"):
        LinearDynamics(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        ODEBlock(LinearDynamics(torch.eye(2)), solver="rk4", step_size=0.5)(torch.zeros(3, 4))
