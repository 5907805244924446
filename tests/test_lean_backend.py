"""The lean backend (the package's own loop over torchdiffeq's adaptive methods) against torchdiffeq and closed forms:
the same solutions, the same NFE and the same gradients, by backpropagation and by the adjoint, and its errors."""

import math

import pytest
import torch
from torch import nn

from node_transfer.core.errors import ODESolveError
from node_transfer.core.solvers import fixed_step_solvers, solver_names
from node_transfer.model.heads import build_head
from node_transfer.numerics.dynamics import ConvDynamics, MLPDynamics
from node_transfer.numerics.lean_rk import _dense_weights, tableau
from node_transfer.numerics.ode import ODEBlock

from known_dynamics import Explodes, LinearDynamics, tightest_forward_solves

ADAPTIVE = ["dopri5", "bosh3", "adaptive_heun", "fehlberg2", "dopri8"]
MATRIX = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=torch.float64)  # damped rotation


def lean(dynamics, **options):
    return ODEBlock(dynamics, ode_backend="lean", **options)


def torchdiffeq(dynamics, **options):
    return ODEBlock(dynamics, ode_backend="torchdiffeq", **options)


@pytest.fixture
def h0():
    torch.manual_seed(0)
    return torch.randn(5, 2, dtype=torch.float64)


def test_the_methods_are_torchdiffeqs():
    assert solver_names("lean") == solver_names("torchdiffeq")
    assert fixed_step_solvers("lean") == fixed_step_solvers("torchdiffeq")


@pytest.mark.parametrize("x", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_dense_output_weights_are_torchdiffeqs_interpolant(method, x):
    """The weights on the stages reproduce torchdiffeq's `_interp_fit` + `_interp_evaluate` on random stages."""
    from torchdiffeq._impl.interp import _interp_evaluate, _interp_fit

    table = tableau(method)
    torch.manual_seed(0)
    y0, stages, h = torch.randn(3, dtype=torch.float64), torch.randn(len(table.solution), 3, dtype=torch.float64), 0.7
    y1 = y0 + h * (torch.tensor(table.solution, dtype=torch.float64) @ stages)
    y_mid = y0 + h * (torch.tensor(table.midpoint, dtype=torch.float64) @ stages)
    coefficients = _interp_fit(y0, y1, y_mid, stages[0], stages[-1], torch.tensor(h, dtype=torch.float64))
    t0, t1, t = (torch.tensor(v, dtype=torch.float64) for v in (0.0, 1.0, x))
    want = _interp_evaluate(coefficients, t0, t1, t)
    got = y0 + h * (torch.tensor(_dense_weights(table, x), dtype=torch.float64) @ stages)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- solutions and NFE
@pytest.mark.parametrize("tol", [1e-5, 1e-8])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_linear_ode_gives_torchdiffeqs_solution_and_nfe(h0, method, tol):
    exact = h0 @ torch.linalg.matrix_exp(MATRIX * 2.0).T
    options = dict(solver=method, rtol=tol, atol=tol, t_end=2.0, max_num_steps=10**5)
    ours, theirs = lean(LinearDynamics(MATRIX), **options), torchdiffeq(LinearDynamics(MATRIX), **options)
    out, ref = ours(h0), theirs(h0)
    assert ours.nfe_forward == theirs.nfe_forward  # the same steps, accepted and rejected
    # The same algorithm in another order of floating-point operations: equal far below the tolerance. Except
    # dopri8 at 1e-8, whose first error estimate here is rounding noise (1e-16, a ratio of 5e-9): its next step
    # sizes follow that noise in both libraries, so their solutions differ by interpolation error (4e-7 measured,
    # each 5e-6 from the closed form: the 4th-order dense output inside dopri8's long steps).
    close = 1e-3 * tol if (method, tol) != ("dopri8", 1e-8) else 1e2 * tol
    torch.testing.assert_close(out, ref, rtol=close, atol=close)
    assert (out - exact).abs().max() < 1e3 * tol  # as test_ode's bound for torchdiffeq itself


def test_nonlinear_ode_matches_its_closed_form():
    """dh/dt = h^2 from h(0) = 0.5: h(t) = 0.5 / (1 - 0.5 t), finite until t = 2."""
    h0 = torch.full((3, 4), 0.5, dtype=torch.float64)
    for tol in (1e-6, 1e-9):
        ours, theirs = lean(Explodes(), rtol=tol, atol=tol, t_end=1.5), torchdiffeq(Explodes(), rtol=tol, atol=tol,
                                                                                    t_end=1.5)
        torch.testing.assert_close(ours(h0), torch.full_like(h0, 0.5 / (1 - 0.75)), rtol=1e3 * tol, atol=0)
        theirs(h0)
        assert ours.nfe_forward == theirs.nfe_forward > 2


@pytest.mark.parametrize("state", ["vector", "map"])
def test_the_head_takes_torchdiffeqs_steps(state):
    """The study's head (float32, dopri5 at 1e-5) and a feature-map head: same NFE, same output to rounding."""
    torch.manual_seed(0)
    if state == "vector":
        dynamics, h0 = MLPDynamics(1280, 64), torch.randn(32, 1280)
    else:
        dynamics, h0 = ConvDynamics(8, 4), torch.randn(3, 8, 4, 4)
    ours, theirs = lean(dynamics, rtol=1e-5, atol=1e-5), torchdiffeq(dynamics, rtol=1e-5, atol=1e-5)
    out, ref = ours(h0), theirs(h0)
    assert ours.nfe_forward == theirs.nfe_forward > 2
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)  # float32: rounding, far below the tolerance


def test_end_times_between_steps_are_read_from_the_dense_output(h0):
    """STEER's end times fall inside a step: the solution there is the interpolant, as torchdiffeq's."""
    for t_end in (0.37, 1.0, 1.9):
        exact = h0 @ torch.linalg.matrix_exp(MATRIX * t_end).T
        ours, theirs = lean(LinearDynamics(MATRIX), t_end=t_end), torchdiffeq(LinearDynamics(MATRIX), t_end=t_end)
        out, ref = ours(h0), theirs(h0)
        assert ours.nfe_forward == theirs.nfe_forward
        torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
        assert (out - exact).abs().max() < 1e-3


@pytest.mark.parametrize("solver", ["rk4", "euler", "explicit_adams"])
def test_fixed_step_methods_are_torchdiffeqs_own(h0, solver):
    ours = lean(LinearDynamics(MATRIX), solver=solver, step_size=0.25)
    theirs = torchdiffeq(LinearDynamics(MATRIX), solver=solver, step_size=0.25)
    assert torch.equal(ours(h0), theirs(h0)) and ours.nfe_forward == theirs.nfe_forward


# ---------------------------------------------------------------------------- gradients
def exact_gradients(h0, weights, t_end=2.0):
    """Gradients of sum(weights * h(T)) with respect to h(0) and A, through the closed form expm(A T) h(0)."""
    matrix = MATRIX.clone().requires_grad_(True)
    start = h0.clone().requires_grad_(True)
    (start @ torch.linalg.matrix_exp(matrix * t_end).T * weights).sum().backward()
    return [start.grad, matrix.grad]


@pytest.mark.parametrize("adjoint, seminorm", [(False, False), (True, False), (True, True)])
def test_gradients_match_the_closed_form_and_torchdiffeq(h0, adjoint, seminorm):
    torch.manual_seed(1)
    weights = torch.randn(5, 2, dtype=torch.float64)
    exact = exact_gradients(h0, weights)
    grads, nfe = {}, {}
    for name, make in (("lean", lean), ("torchdiffeq", torchdiffeq)):
        dynamics, state = LinearDynamics(MATRIX), h0.clone().requires_grad_(True)
        block = make(dynamics, rtol=1e-9, atol=1e-9, t_end=2.0, adjoint=adjoint, seminorm=seminorm)
        (block(state) * weights).sum().backward()
        grads[name], nfe[name] = [state.grad, dynamics.matrix.grad], (block.nfe_forward, block.nfe_backward)
    # The adjoint's backward solve takes torchdiffeq's steps too (its norm over y, adj_y and each parameter's
    # adjoint, or without the parameters under the seminorm).
    assert nfe["lean"] == nfe["torchdiffeq"] and (nfe["lean"][1] > 0) == adjoint
    for got, want, ref in zip(grads["lean"], exact, grads["torchdiffeq"]):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-7)  # solver error at 1e-9 over [0, 2]
        torch.testing.assert_close(got, ref, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("adjoint", [False, True])
def test_head_gradients_match_torchdiffeq(adjoint):
    """The study's head in float32 at 1e-5: parameter gradients as torchdiffeq's (measured: 2e-6 relative by
    backprop, where torchdiffeq also backpropagates into its first step size, and 1e-5 by the adjoint)."""
    torch.manual_seed(0)
    dynamics, fc = MLPDynamics(1280, 64), nn.Linear(1280, 10)
    h0, labels = torch.randn(32, 1280, requires_grad=True), torch.randint(0, 10, (32,))
    grads, nfe = {}, {}
    for make in (lean, torchdiffeq):
        dynamics.zero_grad()
        h0.grad = None
        block = make(dynamics, rtol=1e-5, atol=1e-5, adjoint=adjoint)
        nn.functional.cross_entropy(fc(block(h0)), labels).backward()
        grads[make], nfe[make] = [h0.grad.clone()] + [p.grad.clone() for p in dynamics.parameters()], \
            (block.nfe_forward, block.nfe_backward)
    assert nfe[lean] == nfe[torchdiffeq]
    for got, want in zip(grads[lean], grads[torchdiffeq]):
        assert (got - want).norm() <= 1e-4 * want.norm() + 1e-9


def test_regularised_solves_match_torchdiffeq():
    """The (h, kinetic, jacobian) state, by backprop and by the adjoint: terms, NFE and gradients as torchdiffeq's."""
    for adjoint in (False, True):
        torch.manual_seed(0)
        dynamics, x = MLPDynamics(8, 16).double(), torch.randn(16, 8, dtype=torch.float64)
        values = {}
        for make in (lean, torchdiffeq):
            dynamics.zero_grad()
            block = make(dynamics, rtol=1e-7, atol=1e-7, regularization="both", adjoint=adjoint).train()
            torch.manual_seed(1)  # the same Hutchinson noise for both
            out = block(x)
            (out.pow(2).mean() + sum(block.regularization.values())).backward()
            values[make] = [out, *block.regularization.values(), *(p.grad for p in dynamics.parameters())]
            values[make, "nfe"] = (block.nfe_forward, block.nfe_backward)
        assert values[lean, "nfe"] == values[torchdiffeq, "nfe"]
        for got, want in zip(values[lean], values[torchdiffeq]):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-8)


def test_the_head_trains():
    torch.manual_seed(0)
    head = build_head("node", 16, 3, ode_width=8, ode_backend="lean")
    features, labels = torch.randn(24, 16), torch.randint(0, 3, (24,))
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(head(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0] and "lean" not in repr(head)  # the default backend is not repeated


# ---------------------------------------------------------------------------- failures
def test_the_step_bound_raises_with_solver_tolerance_and_nfe():
    block = lean(Explodes(), rtol=1e-7, atol=1e-7, t_end=2.0, max_num_steps=20)
    with pytest.raises(ODESolveError) as info:
        block(torch.ones(2, 3))
    assert "max_num_steps=20" in str(info.value) and info.value.solver == "dopri5" and info.value.nfe == 2 + 6 * 20
    reference = torchdiffeq(Explodes(), rtol=1e-7, atol=1e-7, t_end=2.0, max_num_steps=20)
    with pytest.raises(ODESolveError) as theirs:
        reference(torch.ones(2, 3))
    assert theirs.value.nfe == info.value.nfe and theirs.value.reason == info.value.reason


def test_a_blow_up_underflows_the_step_size_as_in_torchdiffeq():
    reasons = []
    for make in (lean, torchdiffeq):
        with pytest.raises(ODESolveError) as info:
            make(Explodes(), rtol=1e-3, atol=1e-3, t_end=2.0, max_num_steps=10**6)(torch.ones(2, 3))
        reasons.append(info.value.reason)
    assert reasons[0] == reasons[1] and reasons[0] in ("step size underflow", "non-finite state")


def test_a_non_finite_start_fails_as_in_torchdiffeq():
    """An infinite h(0) makes the first step NaN, which torchdiffeq reports as an underflow before it checks the
    state; so does the lean loop. A NaN that appears later is caught at the end time in any case."""
    reasons = []
    for make in (lean, torchdiffeq):
        with pytest.raises(ODESolveError) as info:
            make(MLPDynamics(3, 4, norm=False))(torch.tensor([[math.inf, 0.0, 1.0]]))
        reasons.append(info.value.reason)
    assert reasons[0] == reasons[1] == "step size underflow"


def test_a_failed_backward_solve_of_the_adjoint_raises_naming_it():
    """With the smallest step bound the forward solve passes, some backward solves exceed it (they also control
    the parameters' adjoints); the error names the backward solve."""
    failures = []
    for block, out in tightest_forward_solves(lean):
        try:
            with block.translate_errors():
                out.pow(2).sum().backward()
        except ODESolveError as exc:
            failures.append(exc)
            assert "backward" in str(exc) and exc.nfe > block.nfe_forward
    assert failures, "no backward solve exceeded its step bound: the check cannot be seen failing"


def test_fallback_to_torchdiffeqs_fixed_grid():
    block = lean(MLPDynamics(4, 4))
    block.use_fallback("explicit_adams", 0.25)
    assert block.fallback_used and block.settings.solver == "explicit_adams" and block.backend.name == "lean"
    assert block(torch.randn(2, 4)).shape == (2, 4)
