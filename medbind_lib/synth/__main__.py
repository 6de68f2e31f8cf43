"""``python -m medbind_lib.synth --profile smoke [--force]``: write (or reuse) the synthetic cohort.

Refuses (exit 2, nothing touched) a profile with ``synthetic: false`` and any existing root it did not
write; ``--if-synthetic`` turns the first refusal into a no-op (``make reproduce`` on the paper profile).
"""
from __future__ import annotations

import argparse
import json
import sys

from ..config import load_profile, parse_overrides, profiles_help
from ..errors import ConfigError
from . import write_cohort


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medbind_lib.synth", description=__doc__,
                                 epilog=profiles_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke", help="params/<profile>.yaml (default: smoke)")
    ap.add_argument("--force", action="store_true", help="regenerate even if the stamp matches")
    ap.add_argument("--data-root", default=None, help="override data_root")
    ap.add_argument("--if-synthetic", action="store_true",
                    help="do nothing (exit 0) when the profile reads real data (synthetic: false)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="profile overrides")
    args = ap.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        if args.data_root:
            overrides["data_root"] = args.data_root
        cfg = load_profile(args.profile, overrides=overrides or None)
        if args.if_synthetic and not cfg.synthetic:
            print(f"profile {cfg.profile!r} reads real data (synthetic: false): no synthetic cohort is written")
            return 0
        summary = write_cohort(cfg, force=args.force)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
