"""``python -m medbind_lib.synth --profile smoke [--force]``: write (or reuse) the synthetic cohort."""
from __future__ import annotations

import argparse
import json

from ..config import load_profile
from . import write_cohort


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medbind_lib.synth", description=__doc__)
    ap.add_argument("--profile", default="smoke", help="params/<profile>.yaml (default: smoke)")
    ap.add_argument("--force", action="store_true", help="regenerate even if the stamp matches")
    ap.add_argument("--data-root", default=None, help="override data_root")
    args = ap.parse_args(argv)
    cfg = load_profile(args.profile, overrides={"data_root": args.data_root} if args.data_root else None)
    summary = write_cohort(cfg, force=args.force)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
