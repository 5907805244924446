"""Foundations: errors, atomic writes, the choices and solver registry, the config and its defaults, the run
and suite directories' files, distributed ranks, memory and calibration. Imports no other layer, and (the config
side) no torch at module level."""
