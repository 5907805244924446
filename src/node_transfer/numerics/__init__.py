"""ODE numerics: the ODE block and its dynamics, and the solver backends that integrate them (torchdiffeq,
torchode, the lean fixed-grid RK). Built on `core` only."""
