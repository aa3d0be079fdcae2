"""`python -m lib run --profile tiny [--styles cot cod] [--scenarios easy] [--stages ...]`
`python -m lib compare tiny gpu-small`
`python -m lib results docs/results/gpu-solve-h200/<set>`
`python -m lib check --profile full` (before anything is paid for)"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a profile's grid of notebooks and render reports")
    run.add_argument("--profile", default="tiny")
    run.add_argument("--styles", nargs="+", action="extend", help="default: base cot cod")
    run.add_argument("--scenarios", nargs="+", action="extend", help="default: every scenario in params/scenarios")
    run.add_argument(
        "--stages", nargs="+", action="extend", help="default: every stage (00_base_models ... 07_analysis)"
    )
    run.add_argument(
        "--replicates",
        nargs="+",
        action="extend",
        type=int,
        metavar="R",
        help="which trainings of each trained (style, scenario): 0 1 ...; default: all grid.replicates",
    )
    run.add_argument(
        "--set", nargs="+", action="extend", metavar="KEY=VALUE", help="parameter overrides, e.g. benchmark.k=3"
    )
    run.add_argument("--redo", action="store_true", help="re-run stages that already finished")
    run.add_argument("--hide-input", action="store_true", help="render reports without code cells")
    run.add_argument(
        "--gpus",
        nargs="+",
        action="extend",
        metavar="GPU",
        help="this machine's GPUs (0 1 2 3): a local Ray instance places the (style, scenario) runs "
        "on them, each on the GPUs it needs (engine.tensor_parallel_size); default: one run at a time",
    )
    run.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="place the runs on a Ray cluster: auto (the one this host belongs to), host:port or "
        "ray://host:port; checkout, environment and WORKBOOK_HOME at the same path on every node",
    )
    run.add_argument(
        "--jobs",
        metavar="N",
        help="(style, scenario) runs side by side on this machine's CPUs, each kept to its own share of the cores; "
        "default auto: 2 for a CPU profile (tiny) on 2 or more cores, else 1",
    )
    run.add_argument("--outcomes", help=argparse.SUPPRESS)  # where a placed run reports to its parent
    ren = sub.add_parser("render", help="render executed notebooks that lack HTML and rewrite the index")
    ren.add_argument("--profile", default="tiny")
    ren.add_argument("--hide-input", action="store_true")
    cmp = sub.add_parser("compare", help="two profiles (or report folders) side by side in one HTML page")
    cmp.add_argument("a")
    cmp.add_argument("b")
    res = sub.add_parser(
        "results",
        help="render a committed result set (<run>/metrics.json and figures) through "
        "the analysis: answer.md beside it, the page under reports/results/",
    )
    res.add_argument("set_dir")
    res.add_argument("--profile", default="gpu-solve", help="the profile the set's runs were made with")
    chk = sub.add_parser(
        "check",
        help="preflight: params, device, disk, the Gemini key and model, the Hub's repositories and "
        "tokenizers, checked without training, generating or submitting anything",
    )
    chk.add_argument("--profile", default="tiny")
    chk.add_argument("--styles", nargs="+", action="extend")
    chk.add_argument("--scenarios", nargs="+", action="extend")
    chk.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.command == "run":
        from .runner import main_run

        return main_run(args)
    if args.command == "render":
        from .runner import render_missing

        return _one_line_errors(lambda: render_missing(args.profile, args.hide_input))
    if args.command == "compare":
        from .reports import compare

        return _one_line_errors(lambda: print(compare(args.a, args.b)))
    if args.command == "check":
        from . import params, preflight

        try:
            return preflight.main(args.profile, args.styles, args.scenarios, params.parse_sets(args.set))
        except params.ParamsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "results":
        from .results import render

        return _one_line_errors(lambda: print(render(args.set_dir, args.profile)["answer_md"]))
    return 2


def _one_line_errors(verb) -> int:
    """Run a verb: a bad argument (an unknown profile, a folder without an analysis) exits 2 and
    an OS error (a read-only home, a full disk) 1, each as one line naming what and where."""
    try:
        verb()
    except (ValueError, LookupError, FileNotFoundError) as exc:  # ParamsError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
