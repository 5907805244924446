"""Helpers shared by the benchmark scripts in bench/.

This is a package folder, not a `bench/*.py` file, so `make bench` (which runs every `bench/*.py`) never runs
it. A script run as `python bench/NAME.py` has `bench/` on `sys.path`, so it imports `_lib` directly.

Timing rules every script follows: `time.perf_counter`, a device synchronisation around each timed call on
CUDA, warm-up calls excluded, configurations measured alternately (A B A B ..., the order reversed every other
round so that a slow drift of the machine hits every configuration alike), the median of the repetitions, and
ratios taken between numbers of the same run. `torch.set_num_threads` is left at its default unless
--threads is given.
"""

from .output import describe_device, machine, rounded, save
from .setup import CACHE, RESULTS, ROOT, parser, resolve_device
from .timing import cpu_timed, interleaved, log, median, spread, sync, timed
from .workloads import (
    autocast,
    bare_step,
    cached_features,
    cached_trainer,
    count_flops,
    digits,
    fixed_batches,
    fresh_copy,
    head_config,
    load_backbone,
    matmul_gflops,
    maybe_compile,
    to_device,
)

__all__ = ["CACHE", "RESULTS", "ROOT", "autocast", "bare_step", "cached_features", "cached_trainer", "count_flops",
           "cpu_timed", "describe_device", "digits", "fixed_batches", "fresh_copy", "head_config", "interleaved",
           "load_backbone", "log", "machine", "matmul_gflops", "maybe_compile", "median", "parser", "resolve_device",
           "rounded", "save", "spread", "sync", "timed", "to_device"]
