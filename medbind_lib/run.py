"""Run the numbered notebooks in order with papermill: ``python -m medbind_lib.run --profile P [--only 00,01]``.

Before any notebook starts, a synthetic profile's cohort is written (or reused) and the pre-flight check
(``medbind_lib.check``) lists every missing dataset file of the profile at once; each notebook's inputs from
earlier notebooks are checked before its kernel starts (``medbind_lib.prereq``).
Executed copies go to ``runs/<profile>/`` (never in place); the first failing notebook stops the run and is
named with the failing cell and the executed copy holding the error, whatever the failure (an exception, a
cell timeout, a dead kernel). Parameters not declared in a notebook's ``parameters`` cell are an error
(papermill only warns). A notebook that declares a ``variant`` parameter runs once per variant of the
profile key the pipeline names for it (``medbind_lib.pipeline``: 02 ``variants`` + seed replicates, 09
``medcsp_variants``), into ``runs/<profile>/<NN_name>-<variant>.ipynb`` (papermill's path templating).
``--producers`` selects the notebooks whose outputs later notebooks read (``pipeline.producers()``).
``--set KEY=VALUE`` overrides profile keys in every notebook (passed as the ``overrides`` parameter).
At the end the runner prints a time table and writes it to ``runs/<profile>/timings.csv``.

``notebook_lanes`` > 1 (the default profile: 2) runs that many notebooks at once, each in its own process
(``--job``) with ``cores // lanes`` threads, in dependency order (``pipeline``: ``needs`` plus ``after``), the
runs with the longest chain of dependents first. Why: a CPU training step gains only 1.3-1.45x from a
second thread (measured on the 2-core machine: one MEDBind_BD epoch 38.0 s on one thread, 28.8 s on two), so
two one-thread notebooks side by side do more work than one two-thread notebook (1.11x on training,
``benchmarks/bench_lanes.py``), and the light notebooks no longer leave a core idle. Never more threads than
cores: two 2-thread processes on 2 cores slow each other badly (OpenMP threads waiting on each other).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import ROOT, pipeline
from .config import load_profile, parse_overrides, profiles_help
from .errors import ConfigError, DataError
from .kernel_log import EXTENSION_ARGS
from .layout import RunLayout
from .models.text import CACHE_DIR_ENV
from .runtime import LOG_MARK, PROGRESS_LOG_ENV, write_env

NOTEBOOKS = ROOT / "notebooks"
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class NotebookFailed(RuntimeError):
    pass


def parse_only(only: str | None) -> list[str] | None:
    """``"0,1, 03"`` -> ``["00", "01", "03"]``; None = every notebook; an empty selection is an error."""
    if only is None:
        return None
    picked = [s.strip().zfill(2) for s in only.split(",") if s.strip()]
    if not picked:
        raise SystemExit("--only: empty selection; give notebook numbers such as --only 00,01 (omit --only to "
                         "run every notebook)")
    return picked


def select(only: str | None, producers: bool = False) -> list[str] | None:
    """The ``--only`` / ``--producers`` selection (they exclude each other); None = every notebook."""
    if producers and only is not None:
        raise SystemExit("--producers and --only exclude each other")
    return pipeline.producers() if producers else parse_only(only)


def list_notebooks(only: list[str] | None = None, directory: Path | None = None) -> list[Path]:
    """Notebooks named ``NN_*.ipynb`` in order; ``only`` filters by the NN prefix."""
    nbs = sorted(p for p in Path(directory or NOTEBOOKS).glob("[0-9][0-9]_*.ipynb"))
    if only is not None:
        known = {p.name[:2] for p in nbs}
        unknown = sorted(set(only) - known)
        if unknown or not only:
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


def executions(nb: Path, cfg, overrides: dict | None = None) -> list[tuple[dict, str]]:
    """(parameters, executed file name) for each run of ``nb``: one, or one per variant run the pipeline
    declares for a notebook with a ``variant`` parameter."""
    import papermill as pm

    base = {"profile": cfg.profile, **({"overrides": dict(overrides)} if overrides else {})}
    if "variant" not in pm.inspect_notebook(str(nb)):
        return [(base, nb.name)]
    runs = pipeline.variant_runs(nb.name[:2], cfg)
    if runs is None:
        raise NotebookFailed(f"{nb.name} declares a `variant` parameter but the pipeline (medbind_lib.pipeline) "
                             f"names no profile key for its variants")
    return [({**base, "variant": v}, f"{nb.stem}-{v}.ipynb") for v in runs]


def failed_cell(out: Path) -> tuple[int | None, str]:
    """(1-based cell number in the executed copy, first source line) of the last cell papermill started."""
    import nbformat

    try:
        nb = nbformat.read(out, as_version=4)
    except Exception:                                   # noqa: BLE001 - the copy may not exist or be partial
        return None, ""
    started = [(i, c) for i, c in enumerate(nb.cells, 1)
               if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return None, ""
    i, c = started[-1]
    return i, c.source.strip().splitlines()[0] if c.source.strip() else ""


class ProgressTail(threading.Thread):
    """Show a running notebook's progress in the terminal: every ``every`` s, the newest line of each of its
    progress bars (``runtime.progress`` mirrors them into ``path``) when it changed, and its log lines."""

    def __init__(self, path: Path, every: float = 5.0, out=None, tag: str = ""):
        super().__init__(daemon=True)
        self.path, self.every, self.out, self.tag = Path(path), every, out or sys.stdout, tag
        self._stop_event, self._pos, self._last = threading.Event(), 0, {}

    def run(self):
        while not self._stop_event.wait(self.every):
            self.flush()

    def stop(self):
        self._stop_event.set()
        self.join(timeout=10)
        self.flush()

    def flush(self):
        try:
            with open(self.path, "r", errors="replace") as f:
                f.seek(self._pos)
                text = f.read()
                self._pos = f.tell()
        except FileNotFoundError:
            return
        latest: dict[str, str] = {}                          # the newest status of each bar in this chunk
        for seg in (_ANSI.sub("", s).strip() for s in re.split(r"[\r\n]", text)):
            if seg.startswith(LOG_MARK.strip()):
                print(f"    {self.tag}{seg[len(LOG_MARK):].strip()}", file=self.out, flush=True)
            elif seg:
                latest[seg.split(":", 1)[0]] = seg
        for name, seg in latest.items():
            if self._last.get(name) != seg:
                self._last[name] = seg
                print(f"    {self.tag}{seg}", file=self.out, flush=True)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_notebook(nb: Path, out_dir: Path, params: dict, timeout: int | None, log_output: bool = False,
                 out_name: str | None = None, tag: str = "") -> Path:
    """Execute ``nb`` into ``out_dir``; any failure becomes NotebookFailed naming notebook, cell and copy.

    The notebook's progress bars and training log lines are shown in the terminal as it runs (a tail of
    ``runs/<profile>/progress/<name>.log``), one line per bar every ~20 s at most."""
    import papermill as pm

    check_parameters(nb, params)
    runs = RunLayout(out_dir)
    out, prog = runs.executed(out_name or nb.name), runs.progress_log(out_name or nb.name)
    prog.parent.mkdir(parents=True, exist_ok=True)
    prog.write_text("")
    os.environ[PROGRESS_LOG_ENV] = str(prog)                # the kernel inherits the runner's environment
    tail = ProgressTail(prog, tag=tag)
    tail.start()
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name="python3", cwd=str(ROOT),
                            execution_timeout=timeout, log_output=log_output, progress_bar=False,
                            extra_arguments=EXTENSION_ARGS)    # errors only, no shutdown-interrupt noise
    except pm.PapermillExecutionError as e:
        raise NotebookFailed(f"notebook {nb.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                             f"executed copy with the error: {out}") from e
    except Exception as e:                              # noqa: BLE001 - timeouts, dead kernels, ...
        cell, first = failed_cell(out)
        where = f"cell {cell} of the executed copy ({first!r})" if cell else "a cell"
        hint = (f"\nthe per-cell hang guard notebook_timeout = {timeout} s was reached; raise it (or set it to "
                f"null) with --set notebook_timeout=null" if "Timeout" in type(e).__name__ else "")
        raise NotebookFailed(f"notebook {nb.name} stopped in {where}: {type(e).__name__}: {e}{hint}\n"
                             f"executed copy with the error: {out}") from e
    finally:
        os.environ.pop(PROGRESS_LOG_ENV, None)
        tail.stop()
    return out


# ------------------------------------------------------------------------------------------ parallel lanes
@dataclass
class Job:
    """One notebook execution: the notebook, its parameters and its executed copy's name."""
    nb: Path
    params: dict
    name: str
    deps: set = field(default_factory=set)

    @property
    def number(self) -> str:
        return self.nb.name[:2]


def plan_jobs(notebooks: list[Path], cfg, overrides: dict | None) -> list[Job]:
    """Every execution in notebook order, each with the executions it waits for (``pipeline.waits_for``: needs +
    after, among the selected notebooks; the files of unselected ones are checked by ``prereq.require``)."""
    jobs = [Job(nb, params, name) for nb in notebooks for params, name in executions(nb, cfg, overrides)]
    for j in jobs:
        wait = pipeline.waits_for(j.number)
        j.deps = {k.name for k in jobs if k.number in wait}
    return jobs


def chain_lengths(jobs: list[Job]) -> dict[str, int]:
    """Number of runs on the longest chain that starts at each job (itself included): launched first, the
    runs that others wait for keep both lanes busy to the end."""
    after = {j.name: [k.name for k in jobs if j.name in k.deps] for j in jobs}
    memo: dict[str, int] = {}

    def length(name: str) -> int:
        if name not in memo:
            memo[name] = 1 + max((length(k) for k in after[name]), default=0)
        return memo[name]
    return {j.name: length(j.name) for j in jobs}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                              # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def _launch(job: Job, out_dir: Path, timeout, log_output: bool, env: dict) -> subprocess.Popen:
    spec = {"nb": str(job.nb), "out_dir": str(out_dir), "params": job.params, "timeout": timeout,
            "log_output": log_output, "name": job.name, "tag": f"[{Path(job.name).stem}] "}
    return subprocess.Popen([sys.executable, "-m", "medbind_lib.run", "--job", json.dumps(spec)], env=env,
                            cwd=str(ROOT))


def run_job(spec: dict) -> int:
    """Child side of a lane: execute one notebook (``--job``); the parent has checked its inputs."""
    try:
        run_notebook(Path(spec["nb"]), Path(spec["out_dir"]), spec["params"], spec["timeout"], spec["log_output"],
                     spec["name"], tag=spec.get("tag", ""))
    except NotebookFailed as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


def run_in_order(jobs: list[Job], cfg, out_dir: Path, log_output: bool, profile: str, rows: list[dict]) -> int:
    """Run ``jobs`` one after another in this process (every core to each); stop at the first failure."""
    from . import prereq

    for j in jobs:
        t0 = time.time()
        print(f"[{profile}] {j.name} ...", flush=True)
        try:
            prereq.require(cfg, j.number)
            out = run_notebook(j.nb, out_dir, j.params, cfg.notebook_timeout, log_output, j.name)
        except (NotebookFailed, prereq.MissingArtifacts) as e:
            rows.append({"notebook": j.name, "seconds": round(time.time() - t0, 1), "status": "FAILED"})
            print(_timings(rows, profile, out_dir), flush=True)
            print(f"FAILED: {e}", file=sys.stderr, flush=True)
            return 1
        rows.append({"notebook": j.name, "seconds": round(time.time() - t0, 1), "status": "ok"})
        _timings(rows, profile, out_dir)            # on disk after each notebook (an interrupted run too)
        print(f"[{profile}] {j.name} done in {time.time() - t0:.1f} s -> {out}", flush=True)
    return 0


def run_lanes(jobs: list[Job], cfg, out_dir: Path, lanes: int, log_output: bool, profile: str,
              rows: list[dict]) -> int:
    """Run ``jobs`` ``lanes`` at a time (module docstring); after a failure nothing new starts, the running
    notebooks finish, and the first failure is the one reported."""
    from . import prereq

    threads = max(1, _cores() // lanes)
    env = {**os.environ, **{k: str(threads) for k in THREAD_ENV}}
    rank = chain_lengths(jobs)
    pending = sorted(jobs, key=lambda j: -rank[j.name])      # stable: notebook order among equals
    running: dict[str, tuple[subprocess.Popen, float, Job]] = {}
    done: set[str] = set()
    failure = None
    print(f"[{profile}] {len(jobs)} notebook runs, {lanes} at once, {threads} thread(s) each", flush=True)
    try:
        while pending or running:
            for j in [j for j in pending if failure is None and j.deps <= done][:max(0, lanes - len(running))]:
                pending.remove(j)
                try:
                    prereq.require(cfg, j.number)
                except prereq.MissingArtifacts as e:
                    rows.append({"notebook": j.name, "seconds": 0.0, "status": "FAILED"})
                    failure = str(e)
                    break
                print(f"[{profile}] {j.name} ...", flush=True)
                running[j.name] = (_launch(j, out_dir, cfg.notebook_timeout, log_output, env), time.time(), j)
            if failure is not None:
                pending.clear()
            if not running:
                if pending:                              # pragma: no cover - deps form a cycle
                    raise RuntimeError(f"no runnable notebook among {[j.name for j in pending]}")
                break
            time.sleep(0.5)
            for name, (proc, t0, j) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                ok = proc.returncode == 0
                rows.append({"notebook": name, "seconds": round(time.time() - t0, 1),
                             "status": "ok" if ok else "FAILED"})
                _timings(rows, profile, out_dir)
                if ok:
                    done.add(name)
                    print(f"[{profile}] {name} done in {time.time() - t0:.1f} s -> {RunLayout(out_dir).executed(name)}",
                          flush=True)
                elif failure is None:
                    failure = f"{name} failed (exit {proc.returncode}); its error is printed above"
    finally:
        for proc, _, _ in running.values():           # interrupted: no orphan kernels
            proc.terminate()
    if failure is not None:
        print(_timings(rows, profile, out_dir), flush=True)
        print(f"FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    return 0


def preflight(cfg) -> None:
    """Write (or reuse) a synthetic profile's cohort, then fail in seconds on any missing dataset file."""
    from . import check

    if cfg.synthetic:
        from .synth import write_cohort

        summary = write_cohort(cfg)
        print(f"[{cfg.profile}] synthetic cohort " + ("reused" if summary.get("reused")
                                                      else f"written in {summary['seconds']:.0f} s"), flush=True)
    problems = check.missing(cfg)
    if problems:
        raise ConfigError(check.report(cfg, problems))


def _timings(rows: list[dict], profile: str, out_dir: Path) -> str:
    import pandas as pd

    from .io import write_csv_atomic

    df = pd.DataFrame(rows, columns=["notebook", "seconds", "status"])
    write_csv_atomic(df, RunLayout(out_dir).timings)
    total = df["seconds"].sum()
    lines = [f"[{profile}] time per notebook (runs/{profile}/timings.csv):"]
    lines += [f"  {r.notebook:<48} {r.seconds:8.1f} s  {r.status}" for r in df.itertuples()]
    lines.append(f"  {'total':<48} {total:8.1f} s  ({total / 60:.1f} min)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medbind_lib.run", description=__doc__, epilog=profiles_help(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke", help="params/<profile>.yaml (default: smoke)")
    ap.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 00,01")
    ap.add_argument("--producers", action="store_true",
                    help="only the notebooks whose outputs later notebooks read (medbind_lib.pipeline: "
                         f"{','.join(pipeline.producers())})")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML",
                    help="profile overrides for every notebook, e.g. --set epochs=1 'variants=[medbind_bd]'")
    ap.add_argument("--log-output", action="store_true", help="stream notebook output to the terminal")
    ap.add_argument("--job", default=None, help=argparse.SUPPRESS)       # one notebook, in a lane's process
    args = ap.parse_args(argv)
    if args.job:
        return run_job(json.loads(args.job))

    try:
        overrides = parse_overrides(args.set)
        cfg = load_profile(args.profile, overrides=overrides or None)
        notebooks = list_notebooks(select(args.only, args.producers))
        preflight(cfg)
        layout = RunLayout(cfg)
        out_dir = layout.root
        if cfg.text_feature_cache:                    # frozen-text features shared by every notebook's kernel
            os.environ[CACHE_DIR_ENV] = str(layout.text_features)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_env(cfg, layout.env)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    rows, t_all = [], time.time()
    jobs, lanes = plan_jobs(notebooks, cfg, overrides), int(cfg.notebook_lanes)
    rc = (run_lanes(jobs, cfg, out_dir, lanes, args.log_output, args.profile, rows) if lanes > 1
          else run_in_order(jobs, cfg, out_dir, args.log_output, args.profile, rows))
    if rc:
        return rc
    print(_timings(rows, args.profile, out_dir), flush=True)
    print(f"[{args.profile}] all done in {(time.time() - t_all) / 60:.1f} min (wall clock); "
          f"tables: {layout.tables}, figures: {layout.figures}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
