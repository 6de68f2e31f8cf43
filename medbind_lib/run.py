"""Run the numbered notebooks in order with papermill: ``python -m medbind_lib.run --profile P [--only 00,01]``.

Executed copies go to ``runs/<profile>/`` (never in place); the first failing notebook stops the run and
is named. Parameters not declared in a notebook's ``parameters`` cell are an error (papermill only warns).
A notebook that declares a ``variant`` parameter runs once per variant of the profile (``variants``),
into ``runs/<profile>/<NN_name>-<variant>.ipynb`` (papermill's path templating for ablations).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import ROOT
from .config import load_profile
from .runtime import write_env

NOTEBOOKS = ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    pass


def list_notebooks(only: list[str] | None = None, directory: Path | None = None) -> list[Path]:
    """Notebooks named ``NN_*.ipynb`` in order; ``only`` filters by the NN prefix."""
    nbs = sorted(p for p in Path(directory or NOTEBOOKS).glob("[0-9][0-9]_*.ipynb"))
    if only:
        known = {p.name[:2] for p in nbs}
        unknown = sorted(set(only) - known)
        if unknown:
            raise SystemExit(f"--only: no notebook numbered {unknown}; available: {sorted(known)}")
        nbs = [p for p in nbs if p.name[:2] in only]
    return nbs


def check_parameters(nb: Path, params: dict) -> None:
    """Fail on parameters the notebook does not declare (papermill would silently ignore them)."""
    import papermill as pm

    declared = set(pm.inspect_notebook(str(nb)))
    unknown = sorted(set(params) - declared)
    if unknown:
        raise NotebookFailed(f"{nb.name}: parameter(s) {unknown} not declared in its parameters cell "
                             f"(declared: {sorted(declared)})")


def executions(nb: Path, cfg) -> list[tuple[dict, str]]:
    """(parameters, executed file name) for each run of ``nb``: one, or one per variant."""
    import papermill as pm

    base = {"profile": cfg.profile}
    if "variant" not in pm.inspect_notebook(str(nb)):
        return [(base, nb.name)]
    return [({**base, "variant": v}, f"{nb.stem}-{v}.ipynb") for v in cfg.variants]


def run_notebook(nb: Path, out_dir: Path, params: dict, timeout: int, log_output: bool = False,
                 out_name: str | None = None) -> Path:
    import papermill as pm

    check_parameters(nb, params)
    out = out_dir / (out_name or nb.name)
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name="python3", cwd=str(ROOT),
                            execution_timeout=timeout, log_output=log_output, progress_bar=False)
    except pm.PapermillExecutionError as e:
        raise NotebookFailed(f"notebook {nb.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                             f"executed copy with the error: {out}") from e
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medbind_lib.run", description=__doc__)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 00,01")
    ap.add_argument("--log-output", action="store_true", help="stream notebook output to the terminal")
    args = ap.parse_args(argv)

    cfg = load_profile(args.profile)
    out_dir = Path(cfg.runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_env(cfg, out_dir / "env.json")
    only = [s.strip().zfill(2) for s in args.only.split(",")] if args.only else None
    for nb in list_notebooks(only):
        for params, name in executions(nb, cfg):
            t0 = time.time()
            print(f"[{args.profile}] {name} ...", flush=True)
            try:
                out = run_notebook(nb, out_dir, params, cfg.notebook_timeout, args.log_output, name)
            except NotebookFailed as e:
                print(f"FAILED: {e}", file=sys.stderr, flush=True)
                return 1
            print(f"[{args.profile}] {name} done in {time.time() - t0:.1f} s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
