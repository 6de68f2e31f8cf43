"""DDP equivalence on CPU: 2 gloo processes, each with part of a fixed batch, give the same loss (mean over
ranks) and the same DDP-averaged parameter gradients as one process on the whole batch (CONVENTIONS 16),
for MEDBind's losses and MEDCSP's; the same across two torchrun "nodes" (c10d rendezvous on localhost, node
ranks assigned by the rendezvous), and MEDBind's pre-training CLI on two nodes equals one process at step 0."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
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
    _check_medbind(ddp_results, name, kwargs)


@pytest.mark.parametrize("name,kwargs,how", ddp_worker.MEDCSP_CONFIGS, ids=[c[0] for c in ddp_worker.MEDCSP_CONFIGS])
def test_ddp_medcsp_matches_full_batch(ddp_results, name, kwargs, how):
    _check_medcsp(ddp_results, name, kwargs)


def _check_medbind(results, name, kwargs):
    problem = ddp_worker.make_problem()
    full_out, full_grads = ddp_worker.run_config(problem, list(range(len(problem["kinds"]))), kwargs)
    got = results[name]
    for k, v in full_out.items():
        assert got["terms"][k] == pytest.approx(float(v.detach()), abs=1e-5), f"{name}: term {k}"
    for k, g in full_grads.items():
        torch.testing.assert_close(got["grads"][k], g, atol=1e-5, rtol=1e-5, msg=f"{name}: grad {k}")
    # the parameters really are trained by this loss
    assert any(g.abs().sum() > 0 for g in full_grads.values())


def _check_medcsp(results, name, kwargs):
    problem = ddp_worker.make_medcsp_problem()
    full_out, full_grads = ddp_worker.run_medcsp_config(problem, list(range(len(problem["sources"]))), kwargs)
    got = results[name]
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


# ------------------------------------------------------------------------------------------------ two nodes
NODES_TIMEOUT_S = 240


def _run_nodes(module: str, args: list, out: Path, nodes: int = 2) -> list[dict]:
    """Start ``nodes`` torchrun agents at once (``distributed.torchrun_command``: c10d rendezvous on a free
    localhost port, one process per node, the SAME command on every node), wait, return each worker's env."""
    from medbind_lib import distributed as D

    cmd = D.torchrun_command(module, args, nproc=1, nnodes=nodes, rdzv_endpoint=f"127.0.0.1:{_free_port()}",
                             rdzv_id=f"test-{uuid.uuid4().hex[:8]}", local_addr="127.0.0.1")
    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    logs = [open(out / f"node{i}.log", "w") for i in range(nodes)]
    procs = [subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
             for f in logs]
    deadline = time.monotonic() + NODES_TIMEOUT_S
    try:
        for p in procs:
            p.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        hung = [p for p in procs if p.poll() is None]
        for p in hung:  # only the agents this test started (each leads its own session) and their workers
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        for f in logs:
            f.close()
    text = "\n".join(f"--- node {i}\n" + (out / f"node{i}.log").read_text()[-3000:] for i in range(nodes))
    text += "".join(f.read_text() for f in sorted(out.glob("error_rank*.txt")))
    assert not hung, f"torchrun nodes did not finish within {NODES_TIMEOUT_S} s (killed)\n{text}"
    assert [p.returncode for p in procs] == [0] * nodes, text
    return [json.loads(f.read_text()) for f in sorted(out.glob("env_rank*.json"))]


@pytest.fixture(scope="module")
def two_node_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("nodes")
    envs = _run_nodes("ddp_worker", [str(out)], out)
    return torch.load(out / "results.pt"), envs


def test_two_torchrun_nodes_rendezvous(two_node_results):
    """c10d numbered the two nodes itself; each worker is LOCAL_RANK 0 of its node, global rank = node rank;
    ``init_distributed`` built the group from that environment alone."""
    _, envs = two_node_results
    assert len(envs) == 2
    assert sorted(int(e["RANK"]) for e in envs) == [0, 1] and sorted(int(e["GROUP_RANK"]) for e in envs) == [0, 1]
    for e in envs:
        assert e["LOCAL_RANK"] == "0" and e["LOCAL_WORLD_SIZE"] == "1" and e["WORLD_SIZE"] == "2"
        assert e["init"] == [int(e["RANK"]), 2, 0, True] and e["group"] == [int(e["RANK"]), 2]
    assert envs[0]["TORCHELASTIC_RUN_ID"] == envs[1]["TORCHELASTIC_RUN_ID"]


@pytest.mark.parametrize("name,kwargs,how", ddp_worker.CONFIGS, ids=[c[0] for c in ddp_worker.CONFIGS])
def test_two_nodes_match_full_batch(two_node_results, name, kwargs, how):
    _check_medbind(two_node_results[0], name, kwargs)


@pytest.mark.parametrize("name,kwargs,how", ddp_worker.MEDCSP_CONFIGS, ids=[c[0] for c in ddp_worker.MEDCSP_CONFIGS])
def test_two_nodes_medcsp_match_full_batch(two_node_results, name, kwargs, how):
    _check_medcsp(two_node_results[0], name, kwargs)


def test_pretrain_cli_on_two_nodes_matches_one_process(tmp_path):
    """MEDBind's pre-training CLI as two torchrun nodes (one gloo process each): it trains, and its validation loss
    at step 0 (gathered over the nodes) equals one process's (the tolerance of test_train's 2-process run)."""
    from test_data import ensure_smoke_artifacts

    from medbind_lib.config import load_profile
    from medbind_lib.medbind import pretrain as T

    sets = {"progress": False, "batch_size": 16, "epochs": 1, "max_steps": 2, "warmup_steps": 1, "lr": 1e-3}
    cfg = load_profile("smoke", overrides=sets)
    ensure_smoke_artifacts(cfg)
    one = T.train(cfg, "medbind_bd", out_dir=tmp_path / "one", resume=False)
    (tmp_path / "two").mkdir()
    _run_nodes("medbind_lib.medbind.pretrain", ["--profile", "smoke", "--variant", "medbind_bd", "--out-dir",
               str(tmp_path / "two"), "--no-resume", "--set", *[f"{k}={json.dumps(v)}" for k, v in sets.items()]],
               tmp_path / "two")
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["world_size"] == 2 and two["steps"] == one["steps"] == 2
    assert two["untrained_valid"]["val_loss"] == pytest.approx(one["untrained_valid"]["val_loss"], rel=1e-4)
    assert (tmp_path / "two" / "last.pt").exists()


def test_torchrun_command_multi_node():
    """One machine keeps ``--standalone``; several: the same c10d command on every machine (the default
    rendezvous id is a digest of the command, alike on each machine); an endpoint is required."""
    from medbind_lib import distributed as D

    args = ["--profile", "paper", "--variant", "medbind_bd"]
    head = [sys.executable, "-m", "torch.distributed.run"]
    assert D.torchrun_command("m", args, 2) == head + ["--standalone", "--nproc_per_node=2", "-m", "m", *args]
    cmd = D.torchrun_command("m", args, 8, {"epochs": 1}, nnodes=2, rdzv_endpoint="node0:29400", rdzv_id="job7")
    assert cmd == head + ["--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=node0:29400", "--rdzv_id=job7",
                          "--nproc_per_node=8", "-m", "m", *args, "--set", "epochs=1"]
    a, b = (D.torchrun_command("m", args, 8, nnodes="2:4", rdzv_endpoint="h:1") for _ in range(2))
    assert a == b and "--nnodes=2:4" in a
    ids = [x for x in a if x.startswith("--rdzv_id=")]
    assert len(ids) == 1 and ids[0].startswith("--rdzv_id=medbind-")
    assert ids[0] not in D.torchrun_command("m", args + ["--x"], 8, nnodes="2:4", rdzv_endpoint="h:1")
    static = D.torchrun_command("m", [], 1, nnodes=2, rdzv_endpoint="h:1", rdzv_id="j", rdzv_backend="static",
                                node_rank=1, local_addr="10.0.0.2")
    assert static[3:10] == ["--nnodes=2", "--rdzv_backend=static", "--rdzv_endpoint=h:1", "--rdzv_id=j",
                            "--node_rank=1", "--local_addr=10.0.0.2", "--nproc_per_node=1"]
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        D.torchrun_command("m", args, 8, nnodes=2)
