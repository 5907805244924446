"""Foundations: errors, atomic writes, the choices and solver registry, the config and its defaults, the run
and suite directories' files, distributed ranks, memory and calibration. Imports no higher layer (one declared
exception: the config asks `model.backbones` whether a backbone exists, inside a function), and the config side
loads no torch at module level."""
