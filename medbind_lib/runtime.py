"""Run-time conventions: one seed for every RNG, one progress helper, env.json for each run."""
from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata

import numpy as np

from . import ROOT, __version__
from .io import write_json_atomic


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (if imported); cudnn stays non-benchmark for repeatability."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
        torch.backends.cudnn.benchmark = False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (owners of stale temporary folders are checked with it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: derive NumPy/random seeds from torch's per-worker seed."""
    import torch

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


PROGRESS_LOG_ENV = "MEDBIND_PROGRESS_LOG"      # set by the runner: bars are mirrored as text into this file
PROGRESS_EVERY_ENV = "MEDBIND_PROGRESS_EVERY"  # seconds between mirrored lines (default 20)


def progress(iterable=None, *, enabled: bool = True, **kw):
    """The one progress-bar helper (tqdm.auto with explicit ``disable``; TQDM_DISABLE misses widgets).

    Under the runner (``MEDBIND_PROGRESS_LOG`` set) each bar is also mirrored, as plain text at most every
    ``MEDBIND_PROGRESS_EVERY`` seconds, into that file, which the runner shows in the terminal: the same
    description, counts, postfix (loss, samples/s) and ETA as the notebook's widget."""
    from tqdm.auto import tqdm

    disable = (not enabled) or os.environ.get("MEDBIND_NO_PROGRESS") == "1"
    bar = tqdm(iterable, disable=disable, dynamic_ncols=True, mininterval=1.0, **kw)
    path = os.environ.get(PROGRESS_LOG_ENV)
    if disable or not path:
        return bar
    return MirroredBar(bar, path, float(os.environ.get(PROGRESS_EVERY_ENV, "20")), kw)


class MirroredBar:
    """A tqdm bar plus a plain-text twin appended to a file (what the runner prints in the terminal)."""

    _BOTH = ("update", "set_postfix", "set_postfix_str", "set_description", "set_description_str", "reset")

    def __init__(self, bar, path: str, every: float, kw: dict):
        from tqdm import tqdm as plain

        self._bar = bar
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        twin_kw = {k: v for k, v in kw.items() if k in ("desc", "unit", "unit_scale", "postfix")}
        self._twin = plain(total=bar.total, initial=bar.n, file=self._file, mininterval=every, maxinterval=every,
                           ascii=True, ncols=120, dynamic_ncols=False, **twin_kw)

    def __getattr__(self, name):
        if name in MirroredBar._BOTH:
            def both(*a, **k):
                if name.startswith("set_"):          # the twin redraws on its own clock (mininterval), not on
                    getattr(self._twin, name)(*a, **{**k, "refresh": False})   # every set_postfix call
                else:
                    getattr(self._twin, name)(*a, **k)
                return getattr(self._bar, name)(*a, **k)
            return both
        return getattr(self._bar, name)

    def __iter__(self):
        for x in self._bar:
            yield x
            self._twin.update(1)
        self.close()

    def __len__(self):
        return len(self._bar)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self._bar.close()
        if not self._file.closed:
            self._twin.close()
            self._file.close()


LOG_MARK = "@@ "                               # marks a log line (not a bar refresh) in the progress file


def log_line(msg: str) -> None:
    """Print ``msg`` (the notebook shows it) and, under the runner, mirror it to the terminal too."""
    print(msg, flush=True)
    path = os.environ.get(PROGRESS_LOG_ENV)
    if path and os.environ.get("MEDBIND_NO_PROGRESS") != "1":
        with open(path, "a") as f:
            f.write("\n" + LOG_MARK + msg.rstrip("\n") + "\n")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions(names=("numpy", "scipy", "pandas", "pyarrow", "wfdb", "torch", "torchvision", "timm",
                     "transformers", "peft", "papermill", "nbval", "scikit-learn", "openTSNE")) -> dict:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def device_info() -> dict:
    info = {"cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["cuda_version"] = torch.version.cuda
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        info["cuda"] = False
    return info


def env_info(cfg=None) -> dict:
    """What produced a run: versions, device, seed, git commit and the full profile."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "medbind_lib": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "packages": _versions(),
        "device": device_info(),
        "seed": None if cfg is None else cfg["seed"],
        "params": None if cfg is None else dict(cfg),
    }


def write_env(cfg, path=None) -> dict:
    info = env_info(cfg)
    write_json_atomic(path or cfg.out("env.json"), info)
    return info
