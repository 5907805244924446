"""A prepared check of the CUDA path on one GPU (`python -m node_transfer.gpucheck run --out DIR`): the
driver runs each section in a process of its own; `carry` writes what a bare GPU machine lacks."""
