"""Command line: `node-transfer run|suite|report|readme|predict|demo|notebooks`; every run option is a config field."""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import MISSING, fields
from typing import Any

from ..core.config import ExperimentConfig
from ..core.config_groups import config_groups
from ..core.errors import BackboneError, ConfigError, DataError, Interrupted, RunDirError, SuiteRunError, TrainingError
from ..core.rundir import CONFIG


def _optional_parser(base: type):
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else base(text)

    parse.__name__ = base.__name__
    return parse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--name` option per ExperimentConfig field (booleans as --flag/--no-flag), in one argument group per
    config group (`core.config_groups`)."""
    hints = typing.get_type_hints(ExperimentConfig)
    group_of = {}
    for title, names in config_groups().items():
        group = parser.add_argument_group(title)
        group_of.update(dict.fromkeys(names, group))
    for f in fields(ExperimentConfig):
        group = group_of[f.name]
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next(a for a in args if a is not type(None)) if optional else hint
        default = f.default if f.default is not MISSING else None
        help_text = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            help_text = f"{help_text} {{{', '.join(f.metadata['choices'])}}}".strip()
        help_text = f"{help_text} (default: {default})".replace("%", "%%")  # argparse formats help with %
        flag = "--" + f.name.replace("_", "-")
        alias = "--" + f.name  # the papermill spelling is accepted too, but --help shows one spelling
        for names, shown in [([flag], help_text)] + ([([alias], argparse.SUPPRESS)] if alias != flag else []):
            if base is bool:
                group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                                    default=argparse.SUPPRESS, help=shown)
            else:
                group.add_argument(*names, dest=f.name, type=_optional_parser(base) if optional else base,
                                    default=argparse.SUPPRESS, help=shown, metavar=f.name.upper())


def config_options(namespace: argparse.Namespace) -> dict[str, Any]:
    """The config options given on the command line (those not given are left to the config's defaults)."""
    names = set(ExperimentConfig.field_names())
    return {k: v for k, v in vars(namespace).items() if k in names}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="node-transfer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one experiment; prints its run directory last")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--config", dest="config_file", default=None, metavar=f"RUN_DIR/{CONFIG}",
                     help=f"run a recorded configuration again (a run's {CONFIG} or its directory), in a new "
                     "directory (--out, or one under runs/); the options given on the command line override it")
    run.add_argument("--write-params", default=None, metavar="FILE",
                     help="write the options as papermill's parameters file (for -f FILE with book/experiment.md) "
                     "instead of running")
    add_config_arguments(run)

    suite = sub.add_parser("suite", help="run a set of experiments through papermill")
    suite.add_argument("name", help="suite name (see --list)", nargs="?")
    suite.add_argument("--profile", default="cpu", help="cpu (digits, offline, minutes), fmnist (Fashion-MNIST, "
                       "offline, hours) or gpu (the paper's scale)")
    suite.add_argument("--seeds", type=int, default=1, help="runs per configuration (with --resume: as "
                       "many as the suite has, or more to extend it)")
    suite.add_argument("--out", default=None, help="suite directory (must not exist, unless --resume)")
    suite.add_argument("--list", dest="list_suites", action="store_true",
                       help="list suites and their configurations")
    suite.add_argument("--resume", action="store_true",
                       help="continue an interrupted suite in --out: keep finished runs, resume the rest")
    suite.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                       help="override a parameter in every configuration (JSON value), e.g. --set epochs=2")
    suite.add_argument("--only", nargs="+", metavar="LABEL", default=None,
                       help="run only these configurations of the suite (see --list)")
    suite.add_argument("--only-seeds", nargs="+", type=int, metavar="SEED", default=None,
                       help="run only these seeds (0 to --seeds - 1) now; --resume adds the others later")
    suite.add_argument("--jobs", type=int, default=None, help="configurations run at once, each in its own kernel "
                       "with cores / jobs threads and its own GPU where there are GPUs (default: 1; with --executor "
                       "slurm, no limit); a continued run waits for the run it starts from")
    suite.add_argument("--keep-going", action="store_true", help="after a run fails, go on with the runs that do not "
                       "continue from it (default: start no new run); the failures are listed at the end")
    suite.add_argument("--in-process", action="store_true", help="run without papermill (no notebooks)")
    suite.add_argument("--executor", default="threads", metavar="{threads,local,slurm}",
                       help="threads: kernels started by this process (default); local: each run a submitit job on "
                       "this machine; slurm: each run a SLURM job through submitit, a continued run after its base")
    suite.add_argument("--slurm-partition", default=None, help="SLURM partition (default: the cluster's)")
    suite.add_argument("--slurm-gpus-per-job", type=int, default=1, help="GPUs per SLURM job (default: 1)")
    suite.add_argument("--slurm-cpus-per-job", type=int, default=None, help="CPUs per SLURM job (default: the "
                       "cluster's)")
    suite.add_argument("--slurm-time", type=int, default=None, metavar="MINUTES", help="time limit of each job "
                       "(default: 1440 on SLURM, 10080 with --executor local); near it SLURM requeues the job and "
                       "its run continues from its last complete epoch")
    suite.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                       help="a shell line run before each SLURM job, e.g. 'module load cuda' (repeatable)")
    suite.add_argument("--slurm-option", action="append", default=[], metavar="NAME=VALUE",
                       help="any other sbatch option, e.g. account=proj or qos=long (repeatable)")

    report = sub.add_parser("report", help="tables and figures for a suite directory, or the metrics and curves "
                            "of one run directory")
    report.add_argument("directory", help="a suite directory, or a run directory")
    report.add_argument("--out", default=None, help="where to write (default: DIRECTORY/report)")

    predict = sub.add_parser("predict", help="classify images with a finished run: per image its top classes and "
                             "probabilities")
    predict.add_argument("run_dir", help="a finished run directory (its configuration and best checkpoint)")
    predict.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files or folders of images")
    predict.add_argument("--top", type=int, default=3, help="classes shown per image (default: 3)")
    predict.add_argument("--csv", dest="csv_file", nargs="?", const="-", default=None, metavar="FILE",
                         help="also write CSV (path, class_1, probability_1, ...) to FILE; without FILE, print "
                         "CSV instead of lines")
    predict.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(default: auto)")
    predict.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")

    readme = sub.add_parser("readme", help="write the README's answer and results/README.md's progress from the "
                            "committed results (the sections between their markers)")
    readme.add_argument("--check", action="store_true", help="change nothing; exit 1 if a section is out of date")

    demo = sub.add_parser("demo", help="the paper's three models at small scale, offline on the CPU")
    demo.add_argument("--out", default=None, help="demo directory (default: runs/demo-<time>)")
    demo.add_argument("--seeds", type=int, default=1)

    notebooks = sub.add_parser("notebooks", help="convert the book's jupytext pages to .ipynb (for nbval), or "
                               "strip images from executed notebooks")
    notebooks.add_argument("--out", help="folder for the converted pages")
    notebooks.add_argument("--strip-images", dest="strip_images_from", nargs="+", metavar="NOTEBOOK",
                           help="executed notebooks to strip")
    notebooks.add_argument("--scripts", metavar="DIR", help="also write the pages' code cells as scripts (for ruff)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, then hand the arguments to the command's handler in `commands`; errors become messages and exit codes."""
    args = build_parser().parse_args(argv)
    from . import commands  # here, not at the top: parsing and --help load no torch

    arguments = {k: v for k, v in vars(args).items() if k != "command"}
    handlers = {"suite": commands.suite_command, "report": commands.report_command,
                "predict": commands.predict_command, "readme": commands.readme_command,
                "demo": commands.demo_command, "notebooks": commands.notebooks_command}
    try:
        if args.command == "run":
            return commands.run_command(config_options(args), quiet=args.quiet, config_file=args.config_file,
                                        write_params=args.write_params)
        return handlers[args.command](**arguments)
    except ConfigError as exc:
        print(f"node-transfer: error: {exc}", file=sys.stderr)
        return 2
    except (DataError, BackboneError, TrainingError, RunDirError, SuiteRunError) as exc:
        print(f"node-transfer: error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"node-transfer: {exc}", file=sys.stderr)
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
