"""DDP equivalence on CPU: 2 gloo processes, each with part of a fixed batch, give the same loss (mean over
ranks) and the same DDP-averaged parameter gradients as one process on the whole batch (CONVENTIONS 16),
for MEDBind's losses and MEDCSP's."""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ddp_worker  # noqa: E402

WORLD = 2
TIMEOUT_S = 50

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=ddp_worker.worker, args=(r, WORLD, port, str(out)), daemon=True)
             for r in range(WORLD)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
    finally:
        hung = [p for p in procs if p.is_alive()]
        for p in hung:  # only the processes this test started
            p.terminate()
        for p in hung:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    errors = "\n".join(f.read_text() for f in sorted(out.glob("error_rank*.txt")))
    if hung:
        pytest.fail(f"DDP workers did not finish within {TIMEOUT_S} s (killed).\n{errors}")
    codes = [p.exitcode for p in procs]
    assert codes == [0] * WORLD, f"worker exit codes {codes}\n{errors}"
    return torch.load(out / "results.pt")


@pytest.mark.parametrize("name,kwargs,how", ddp_worker.CONFIGS, ids=[c[0] for c in ddp_worker.CONFIGS])
def test_ddp_matches_full_batch(ddp_results, name, kwargs, how):
    problem = ddp_worker.make_problem()
    full_out, full_grads = ddp_worker.run_config(problem, list(range(len(problem["kinds"]))), kwargs)
    got = ddp_results[name]
    for k, v in full_out.items():
        assert got["terms"][k] == pytest.approx(float(v.detach()), abs=1e-5), f"{name}: term {k}"
    for k, g in full_grads.items():
        torch.testing.assert_close(got["grads"][k], g, atol=1e-5, rtol=1e-5, msg=f"{name}: grad {k}")
    # the parameters really are trained by this loss
    assert any(g.abs().sum() > 0 for g in full_grads.values())


@pytest.mark.parametrize("name,kwargs,how", ddp_worker.MEDCSP_CONFIGS, ids=[c[0] for c in ddp_worker.MEDCSP_CONFIGS])
def test_ddp_medcsp_matches_full_batch(ddp_results, name, kwargs, how):
    problem = ddp_worker.make_medcsp_problem()
    full_out, full_grads = ddp_worker.run_medcsp_config(problem, list(range(len(problem["sources"]))), kwargs)
    got = ddp_results[name]
    assert set(got["terms"]) == set(full_out)
    for k, v in full_out.items():
        assert got["terms"][k] == pytest.approx(float(v.detach()), abs=1e-5), f"{name}: term {k}"
    for k, g in full_grads.items():
        torch.testing.assert_close(got["grads"][k], g, atol=1e-5, rtol=1e-5, msg=f"{name}: grad {k}")
    # every term the variant has is non-trivial on this problem (anchors exist), and parameters are trained
    for k in ("la_anchors", "lp_anchors", "ld_anchors"):
        if k in full_out:
            assert float(full_out[k]) > 0, f"{name}: {k}"
    assert any(g.abs().sum() > 0 for n, g in full_grads.items() if n.startswith("proj"))
