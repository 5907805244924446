"""ODE numerics: the ODE block and its dynamics, and the solver backends that integrate them (torchdiffeq,
torchode, and the lean backend: torchdiffeq's adaptive methods in a loop of our own). Built on `core` only."""
