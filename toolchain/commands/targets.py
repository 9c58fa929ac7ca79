"""``toolchain targets``: list the hardware target profiles (deploy/targets/*.toml) with their cited costs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "targets",
        help="list the hardware target profiles (deploy/targets/*.toml) with their cited costs",
        description="List the hardware target profiles: the built-in ones (deploy/targets/*.toml) and "
        "those in the folders of $TOOLCHAIN_TARGETS, each value with its source.",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="FILE",
        help="also validate and list this profile file",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the profiles as JSON")
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="print every value with its source (default: each distinct source once)",
    )
    parser.set_defaults(handler=cmd_targets)


def cmd_targets(args: argparse.Namespace) -> int:
    from toolchain.energy.targets import list_targets, load_target
    from toolchain.io import write_json

    targets = list_targets() + [load_target(path) for path in args.target]
    width = max(len(t.name) for t in targets)
    for target in targets:
        flag = "" if target.verified else "  [UNVERIFIED]"
        print(f"{target.name:<{width}}  {target.kind:<12}  {target.title}{flag}")
        print(f"    error band: {target.error_band or 'not stated'}")
        if not args.verbose:
            for source in dict.fromkeys(target.sources.values()):
                print(f"    source: {source}")
        else:
            for key, value, source in target.cited():
                how = target.derived.get(key)
                print(f"    {key} = {value:g}    ({source}{'; derived: ' + how if how else ''})")
            for assumption in target.assumptions:
                print(f"    assumes: {assumption}")
    if args.json is not None:
        write_json(args.json, {"targets": [t.to_dict() for t in targets]})
    return 0
