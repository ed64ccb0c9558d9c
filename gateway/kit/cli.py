"""``safehome eval inactivity``: the command line of :mod:`gateway.kit.evaluation`.

Kept apart so that building the CLI's parser imports no numpy (the evaluation is imported
when the command runs)."""

from __future__ import annotations

import argparse
import json
from typing import Any

PARAM_SETS = ("dev", "heldout")


def cmd_eval_inactivity(args: argparse.Namespace) -> int:
    from gateway.kit.evaluation import (  # noqa: PLC0415 (numpy only when it runs)
        evaluate_inactivity,
        render_inactivity_report,
    )

    ev = evaluate_inactivity(
        homes=args.homes, days=args.days, seed=args.seed, params=args.params,
        care_level=args.care_level,
    )  # fmt: skip
    print(render_inactivity_report(ev))
    if args.json:
        print(json.dumps(ev.to_json(), ensure_ascii=False))
    return 0


def add_eval_parser(sub: Any) -> None:
    """``safehome eval inactivity`` (``sub``: the ``eval`` sub-parsers)."""
    p = sub.add_parser("inactivity", help="home inactivity on generated households (kit)")
    p.add_argument("--homes", type=int, default=80)
    p.add_argument("--days", type=int, default=42)
    p.add_argument("--seed", type=int, default=10_000, help="first seed (held out: >= 10000)")
    p.add_argument("--params", choices=PARAM_SETS, default="heldout")
    p.add_argument("--care-level", type=int, default=2, choices=range(1, 6))
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.set_defaults(func=cmd_eval_inactivity)
