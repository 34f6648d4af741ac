"""`trace-pipe replay`: replay a trace offline through mock workers (Dynamo 1.4.2 compatible)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import orjson
import typer

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.io import atomic_output
from trace_pipe.sim import report
from trace_pipe.sim.config import EngineArgs, RouterConfig
from trace_pipe.sim.replay import ReplayOptions, run_replay
from trace_pipe.sim.result import SimResult
from trace_pipe.sim.router import ROUTER_MODES
from trace_pipe.sim.timing import make_timing

from .common import Progress, user_errors

FORMATS = ("mooncake", "agentic_mooncake", "dynamo", "weka")


def _json_arg(text: str | None, flag: str) -> dict | None:
    if text is None:
        return None
    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceError(f"error: {flag}: invalid JSON: {e}") from None
    if not isinstance(v, dict):
        raise TraceError(f"error: {flag}: expected a JSON object")
    return v


def load_rows(paths: list[str], fmt: str, trace_block_size: int | None) -> tuple[list, list[str], int]:
    """Rows, their `path:line` sources and the trace block size to use."""
    if fmt in ("mooncake", "agentic_mooncake"):
        from trace_pipe.pipeline.mooncake import read_rows

        if len(paths) != 1 and fmt == "mooncake":
            pass  # several files are simply concatenated
        mf = read_rows(paths)
        tbs = trace_block_size
        if mf.header is not None and mf.header.block_size:
            if tbs is not None and tbs != mf.header.block_size:
                raise TraceError(f"error: --trace-block-size {tbs} differs from the trace header's block_size "
                                 f"{mf.header.block_size}")
            tbs = mf.header.block_size
        return mf.rows, mf.sources, tbs or 512
    if fmt in ("dynamo", "weka"):
        from trace_pipe.pipeline import agentic, readers

        trace = readers.read_trace(paths)
        derived = agentic.derive(trace, rules="g2")
        tbs = derived.block_size
        if trace_block_size is not None and tbs is not None and trace_block_size != tbs:
            raise TraceError(f"error: --trace-block-size {trace_block_size} differs from the trace's block size {tbs}")
        tbs = tbs or trace_block_size or 512
        src = paths[0] if len(paths) == 1 else "trace"
        return derived.rows, [f"{src}: request {r.request_id}" for r in derived.rows], tbs
    raise TraceError(f"error: --trace-format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def run(paths: list[str], *, trace_format: str = "mooncake", num_workers: int = 1, router_mode: str = "round_robin",
        trace_block_size: int | None = None, extra_engine_args: str | None = None, router_config: str | None = None,
        arrival_speedup_ratio: float = 1.0, max_sim_time_seconds: float | None = None, seed: int = 0,
        timing: str = "poly", decode_timing: str = "physical", timing_table: str | None = None,
        sla_ttft_ms: float | None = None, sla_itl_ms: float | None = None, sla_e2e_ms: float | None = None,
        report_json: str | None = None, report_jsonl: str | None = None, out=None,
        progress: bool = True) -> tuple[dict, SimResult]:
    """The whole command as a function (tests call it); raises TraceError on bad input."""
    out = out or sys.stdout
    t0 = time.perf_counter()
    rows, sources, tbs = load_rows(paths, trace_format, trace_block_size)
    engine = EngineArgs.from_json(_json_arg(extra_engine_args, "--extra-engine-args"))
    rcfg = RouterConfig.from_json(_json_arg(router_config, "--router-config"))
    table = None
    if timing_table:
        table = orjson.loads(Path(timing_table).read_bytes())
    tm = make_timing(timing, block_size=engine.block_size, decode=decode_timing, table=table)
    opts = ReplayOptions(num_workers=num_workers, router_mode=router_mode, trace_block_size=tbs, engine=engine,
                         router=rcfg, arrival_speedup_ratio=arrival_speedup_ratio,
                         max_sim_time_ms=None if max_sim_time_seconds is None else max_sim_time_seconds * 1000.0,
                         seed=seed, timing=tm, record=False)
    bar = Progress(len(rows), "replaying") if progress else None
    res = run_replay(rows, sources, trace_format, opts, progress=bar.update if bar and bar.enabled else None)
    if bar:
        bar.close()
    rep = report.summary(res, sla_ttft_ms=sla_ttft_ms, sla_itl_ms=sla_itl_ms, sla_e2e_ms=sla_e2e_ms,
                         wall_time_ms=(time.perf_counter() - t0) * 1000.0)
    if report_json is None:
        report_json = time.strftime("trace_pipe_replay_report_%Y%m%d_%H%M%S.json")
    target = Path(report_json)
    if target.is_dir():
        target = target / time.strftime("trace_pipe_replay_report_%Y%m%d_%H%M%S.json")
    with atomic_output(target) as f:
        f.write(json.dumps(rep, indent=2, sort_keys=True).encode() + b"\n")
    if report_jsonl:
        with atomic_output(report_jsonl) as f:
            for row in report.jsonl_rows(res):
                f.write(orjson.dumps(row) + b"\n")
    print(report.table(rep), file=out)
    if res.stopped_at_ms is not None:
        n = sum(1 for r in res.requests if r.status != "completed")
        print(f"Stopped at the simulated-time limit ({res.stopped_at_ms / 1000:g} s): {n} requests not completed",
              file=out)
    rejected = sum(1 for r in res.requests if r.status == "rejected")
    if rejected:
        print(f"Rejected (prompt larger than a worker's KV cache): {rejected} requests", file=out)
    print(f"Saved full report to: {target}", file=out)
    return rep, res


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay(
        trace: list[str] = typer.Argument(..., help="Trace file(s)."),
        trace_format: str = typer.Option("mooncake", "--trace-format", help="mooncake | agentic_mooncake | dynamo | weka"),
        num_workers: int = typer.Option(1, "--num-workers"),
        router_mode: str = typer.Option("round_robin", "--router-mode", help=" | ".join(ROUTER_MODES)),
        trace_block_size: Optional[int] = typer.Option(None, "--trace-block-size",
                                                       help="Tokens per hash id (default 512; from the trace for dynamo/weka/v2)."),
        extra_engine_args: Optional[str] = typer.Option(None, "--extra-engine-args", help="MockEngineArgs JSON."),
        router_config: Optional[str] = typer.Option(None, "--router-config", help="KvRouterConfig JSON."),
        arrival_speedup_ratio: float = typer.Option(1.0, "--arrival-speedup-ratio"),
        max_sim_time_seconds: Optional[float] = typer.Option(None, "--max-sim-time-seconds"),
        report_json: Optional[str] = typer.Option(None, "--report-json"),
        report_jsonl: Optional[str] = typer.Option(None, "--report-jsonl"),
        sla_ttft_ms: Optional[float] = typer.Option(None, "--sla-ttft-ms"),
        sla_itl_ms: Optional[float] = typer.Option(None, "--sla-itl-ms"),
        sla_e2e_ms: Optional[float] = typer.Option(None, "--sla-e2e-ms"),
        seed: int = typer.Option(0, "--seed", help="Seed for router tie-breaks (kv_router) and random routing."),
        timing: str = typer.Option("poly", "--timing", help="poly (Dynamo's default) | table"),
        decode_timing: str = typer.Option("physical", "--decode-timing",
                                          help="physical (ai-dynamo 1.4.2) | logical (later Dynamo)"),
        timing_table: Optional[str] = typer.Option(None, "--timing-table", help="JSON profile for --timing table."),
        replay_mode: str = typer.Option("offline", "--replay-mode", help="offline only."),
    ) -> None:
        """Replay a trace on a virtual clock through mock vLLM workers and report Dynamo's metrics."""
        with user_errors():
            if replay_mode != "offline":
                raise TraceError("error: --replay-mode: only offline replay is supported")
            run(trace, trace_format=trace_format, num_workers=num_workers, router_mode=router_mode,
                trace_block_size=trace_block_size, extra_engine_args=extra_engine_args, router_config=router_config,
                arrival_speedup_ratio=arrival_speedup_ratio, max_sim_time_seconds=max_sim_time_seconds, seed=seed,
                timing=timing, decode_timing=decode_timing, timing_table=timing_table, sla_ttft_ms=sla_ttft_ms,
                sla_itl_ms=sla_itl_ms, sla_e2e_ms=sla_e2e_ms, report_json=report_json, report_jsonl=report_jsonl)
