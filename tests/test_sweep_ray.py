"""`trace-pipe sweep --ray`: the grid on a real Ray (a local `ray.init` and a two-node cluster on
this machine), byte-identical to the local pool; faults (a worker that dies, a configuration that
fails, Ctrl-C). Every Ray process binds 127.0.0.1 only, which a test checks socket by socket."""

from __future__ import annotations

import functools
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from trace_pipe.cli import sweep_cmd
from trace_pipe.cli.main import _register, app
from trace_pipe.sim import sweep, sweep_ray

from replay_cases import two_group_trace

_register()

# Ray 2.60 binds the machine's interface address unless told this is a single-machine cluster;
# with this, the GCS, every raylet and every worker listen on 127.0.0.1 (checked below). Usage
# statistics would go to Ray's developers: off.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

NO_RAY = "ray is not installed (pip install -e '.[ray]'; .ci/run installs it)"
GRID = dict(num_workers="1,2", router_mode="round_robin,kv_router", trace_block_size=16,
            extra_engine_args='{"block_size": 16}')


def _trace(tmp_path: Path) -> str:
    return two_group_trace(tmp_path)


def _local(trace: str, csv: Path, **kw) -> list[dict]:
    return sweep_cmd.run([trace], csv_out=str(csv), jobs=2, out=io.StringIO(), **{**GRID, **kw})


def _tcp_of_ray_processes() -> list[tuple[str, str, str]]:
    """(state, local ip, remote ip) of every TCP socket a Ray process holds (processes whose
    command line names ray: GCS, raylets, agents, workers, and this test's driver)."""
    def ip(hexaddr: str) -> str:
        h = hexaddr.split(":")[0]
        if len(h) == 8:
            return ".".join(str(b) for b in reversed(bytes.fromhex(h)))
        b = bytes.fromhex(h)
        if not any(b):
            return "0.0.0.0"  # unspecified (a listening socket's remote end)
        words = b"".join(b[i:i + 4][::-1] for i in range(0, 16, 4))
        if words[:12] == b"\0" * 10 + b"\xff\xff":
            return ".".join(map(str, words[12:]))  # IPv4-mapped
        return words.hex()

    socks = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                p = line.split()
                socks[p[9]] = ("LISTEN" if p[3] == "0A" else p[3], ip(p[1]), ip(p[2]))
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"ray" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue  # gone, or not ours to read
        out += [socks[ln[8:-1]] for ln in links if ln.startswith("socket:[") and ln[8:-1] in socks]
    return out


def _check_loopback_only(ray) -> None:
    ctx = ray.get_runtime_context()
    assert ctx.gcs_address.split(":")[0] == "127.0.0.1"
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert nodes and all(n["NodeManagerAddress"] == "127.0.0.1" for n in nodes)
    if os.path.exists("/proc/net/tcp"):
        tcp = _tcp_of_ray_processes()
        assert any(s == "LISTEN" for s, _, _ in tcp)  # the check saw Ray's servers
        for state, local, remote in tcp:
            assert local == "127.0.0.1", (state, local, remote)
            assert remote in ("127.0.0.1", "0.0.0.0"), (state, local, remote)


def test_ray_missing_is_one_line_error(tmp_path):
    """Without the extra: one line saying how to install it, exit 2, no output file."""
    code = ("import sys; sys.modules['ray'] = None\n"  # as if not installed: `import ray` fails
            "from trace_pipe.cli.main import main; main()")
    csv = tmp_path / "s.csv"
    res = subprocess.run([sys.executable, "-c", code, "sweep", _trace(tmp_path), "--ray", "--csv", str(csv)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr == "error: --ray needs Ray, an optional extra: pip install 'trace-pipe[ray]'\n"
    assert not csv.exists()


def test_local_ray_init_matches_local_pool(tmp_path):
    ray = pytest.importorskip("ray", reason=NO_RAY)
    assert not ray.is_initialized()
    trace = _trace(tmp_path)
    local = _local(trace, tmp_path / "local.csv")
    assert sweep_ray.connect(None)  # a new local Ray: what bare --ray starts when no cluster runs
    try:
        _check_loopback_only(ray)
        out = io.StringIO()
        res = sweep_cmd.run([trace], csv_out=str(tmp_path / "ray.csv"), ray="", out=out, **GRID)
        assert ray.is_initialized()  # run() used this connection and left it open
    finally:
        ray.shutdown()
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert res == local and [r["error"] for r in res] == [""] * 4
    assert out.getvalue().startswith(sweep.table(local) + "\n4 configurations (0 failed) on 8 requests in ")


def test_unreachable_head_is_one_line_error(tmp_path):
    """Ray would retry a dead address for minutes: nothing listens on port 1, so a one-line error now."""
    pytest.importorskip("ray", reason=NO_RAY)
    csv = tmp_path / "s.csv"
    res = CliRunner().invoke(app, ["sweep", _trace(tmp_path), "--ray", "127.0.0.1:1", "--csv", str(csv)])
    assert res.exit_code == 2
    assert res.output == "error: --ray: no Ray head answers at 127.0.0.1:1: Connection refused\n"
    assert not csv.exists()


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of one CPU each on this machine, this process connected as the driver."""
    ray = pytest.importorskip("ray", reason=NO_RAY)
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    try:
        c.wait_for_nodes()
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def test_two_node_cluster_matches_local_pool(tmp_path, cluster):
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    _check_loopback_only(ray)
    trace = _trace(tmp_path)
    local = _local(trace, tmp_path / "local.csv")
    # bare --ray in front of the trace: the trace stays a trace, the connection is this driver's
    res = CliRunner().invoke(app, ["sweep", "--ray", trace, "--num-workers", "1,2", "--router-mode",
                                   "round_robin,kv_router", "--trace-block-size", "16", "--extra-engine-args",
                                   '{"block_size": 16}', "--csv", str(tmp_path / "ray.csv")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert res.output.startswith(sweep.table(local) + "\n4 configurations (0 failed)")
    # --jobs caps the configurations in flight; the rows do not change
    one = sweep_cmd.run([trace], csv_out=str(tmp_path / "one.csv"), ray=cluster.address, jobs=1,
                        out=io.StringIO(), **GRID)
    assert one == local


def _flaky(marker: str, kill: tuple[int, str], times: int, rows, sources, spec, p):
    """Kills its own worker process (SIGKILL, as the OOM killer would) the first `times` times
    it runs configuration `kill`; counts its attempts in `marker`."""
    if (p.num_workers, p.router_mode) == kill:
        with open(marker, "a") as f:
            f.write("x")
        if os.path.getsize(marker) <= times:
            os.kill(os.getpid(), signal.SIGKILL)
    return sweep.run_point(rows, sources, spec, p)


def _where(rows, sources, spec, p):
    cached = sweep_ray._DATA is not None and sweep_ray._DATA[1][0] is rows  # kept alive: ids stay unique
    return {**sweep.run_point(rows, sources, spec, p), "pid": os.getpid(), "rows_id": id(rows), "cached": cached}


def test_trace_fetched_once_per_worker(tmp_path, cluster):
    """A worker process that runs several configurations unpickles the trace once: the same
    list object serves them all (the extra keys stay out of the CSV)."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    inp, spec, points = _spec_points(_trace(tmp_path))
    res = sweep_ray.run_sweep_ray(inp.rows, inp.sources, spec, points, jobs=1, point_fn=_where)
    by_pid: dict = {}
    for r in res:
        by_pid.setdefault(r["pid"], set()).add(r["rows_id"])
    assert len(by_pid) < len(points)  # some worker ran more than one configuration
    assert all(len(ids) == 1 for ids in by_pid.values()) and all(r["cached"] for r in res)
    assert sweep.to_csv(res) == sweep.to_csv(sweep.run_sweep(inp.rows, inp.sources, spec, points, jobs=1))


def _slow_after_first(rows, sources, spec, p):
    if p.num_workers != 1 or p.router_mode != "round_robin":
        time.sleep(60)
    return sweep.run_point(rows, sources, spec, p)


def test_interrupt_cancels_outstanding_tasks(tmp_path, cluster):
    """Ctrl-C arriving as the first configuration finishes: the running and queued tasks are
    cancelled at once (each would sleep a minute), and the interrupt propagates."""
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    inp, spec, points = _spec_points(_trace(tmp_path))

    def interrupt(row: dict) -> None:
        raise KeyboardInterrupt

    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sweep_ray.run_sweep_ray(inp.rows, inp.sources, spec, points, on_done=interrupt, point_fn=_slow_after_first)
    while ray.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() - t < 20, ray.available_resources()
        time.sleep(0.1)


def _spec_points(trace: str):
    from trace_pipe.pipeline.replay_input import load_input
    from trace_pipe.sim.config import EngineArgs, RouterConfig

    inp = load_input([trace], "mooncake", 16)
    spec = sweep.SweepSpec(inp.sim_format, inp.block_size, EngineArgs.from_json({"block_size": 16}),
                           RouterConfig.from_json(None), None)
    return inp, spec, sweep.grid([1, 2], ["round_robin", "kv_router"])


def test_worker_that_dies_is_retried(tmp_path, cluster):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    trace = _trace(tmp_path)
    inp, spec, points = _spec_points(trace)
    local = sweep.run_sweep(inp.rows, inp.sources, spec, points, jobs=1)
    marker = tmp_path / "attempts"
    done: list[dict] = []
    fn = functools.partial(_flaky, str(marker), (2, "round_robin"), 1)
    res = sweep_ray.run_sweep_ray(inp.rows, inp.sources, spec, points, on_done=done.append, point_fn=fn)
    assert marker.read_text() == "xx"  # killed once, run again
    assert res == local and sorted(map(str, done)) == sorted(map(str, local))
    assert sweep.to_csv(res) == sweep.to_csv(local)
    # a worker that always dies: Ray gives up after the bounded retries; the row says so, the
    # rest of the grid is unaffected
    marker.unlink()
    fn = functools.partial(_flaky, str(marker), (1, "kv_router"), 99)
    res = sweep_ray.run_sweep_ray(inp.rows, inp.sources, spec, points, max_retries=1, point_fn=fn)
    assert marker.read_text() == "xx"
    assert res[1]["error"].startswith("error: Ray gave up on this configuration after 1 retries: The worker "
                                      "died unexpectedly while executing this task.")
    assert "\n" not in res[1]["error"]
    assert [r for i, r in enumerate(res) if i != 1] == [r for i, r in enumerate(local) if i != 1]


def test_bad_engine_args_become_error_rows(tmp_path, cluster):
    """A KV pool too small for the prompts: every configuration fails with the local pool's error
    row, and the command exits 1 with the same one-line summary."""
    trace = _trace(tmp_path)
    bad = {**GRID, "extra_engine_args": '{"block_size": 16, "num_gpu_blocks": 4}'}
    local = sweep_cmd.run([trace], csv_out=str(tmp_path / "local.csv"), jobs=2, out=io.StringIO(), **bad)
    res = CliRunner().invoke(app, ["sweep", trace, "--num-workers", "1,2", "--router-mode", "round_robin,kv_router",
                                   "--trace-block-size", "16", "--extra-engine-args", bad["extra_engine_args"],
                                   "--csv", str(tmp_path / "ray.csv"), "--ray", cluster.address])
    assert res.exit_code == 1
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    err = f"{trace}:1: request '0' needs 67 tokens of KV but a worker holds 64 (num_gpu_blocks x block_size)"
    assert [r["error"] for r in local] == [err + "; Dynamo's replay would reach a dead end"] * 4
    assert res.output.endswith(f"error: all 4 configurations failed; first (workers=1 router=round_robin): "
                               f"{err}; Dynamo's replay would reach a dead end\n")


def test_ctrl_c_cancels_tasks_and_writes_nothing(tmp_path, cluster):
    """SIGINT while both CPUs run configurations: exit 130, no CSV, and the cluster's CPUs are
    free again (the tasks were cancelled, not left running)."""
    import ray

    rows = [{"timestamp": i * 5.0, "input_length": 512, "output_length": 64, "hash_ids": [i % 50, 50 + i, 10**6 + i]}
            for i in range(20000)]
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    csv = tmp_path / "s.csv"
    cli = [sys.executable, "-c", "from trace_pipe.cli.main import main; main()"]
    # 16 configurations: the grid must outlast the poll below (Ray reports busy CPUs with a lag,
    # and four configurations of this trace could finish before it saw both taken)
    proc = subprocess.Popen([*cli, "sweep", str(big), "--num-workers", "1,2,3,4,5,6,7,8", "--router-mode",
                             "round_robin,kv_router", "--trace-block-size", "512",
                             "--ray", cluster.address, "--csv", str(csv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a test run started in the background inherits SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while ray.available_resources().get("CPU", 0) > 0:  # both nodes busy with this sweep
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.endswith("interrupted\n") and "Traceback" not in err
    assert out == "" and not csv.exists()
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.2)
