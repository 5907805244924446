"""Fake sections for tests/test_gpucheck.py: each behaves as a real section might on a bad day."""

import os
import time


def passes(context, findings):
    findings.fact("device", context.device)
    findings.check("one and one", 1 + 1 == 2, "two")
    findings.row("table", a=1, b=float("nan"))


def guards_a_part(context, findings):
    with findings.guard("first part"):
        raise ValueError("the first part broke")
    findings.check("second part", True)


def raises(context, findings):
    findings.fact("before", "the error")
    raise RuntimeError("the section broke")


def hangs(context, findings):
    findings.fact("found before hanging", 42)
    time.sleep(120)


def crashes(context, findings):
    findings.fact("found before crashing", True)
    os._exit(3)
