"""`trace-pipe sweep`: what-if replays over a grid of worker counts and router modes."""

from __future__ import annotations

import io
import re
import sys
import time
from typing import Optional

import typer
from typer.core import TyperCommand

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.io import atomic_output, check_outputs
from trace_pipe.pipeline.replay_input import FORMATS, load_input
from trace_pipe.sim import sweep, sweep_ray
from trace_pipe.sim.config import EngineArgs, RouterConfig, check_run_options
from trace_pipe.sim.router import ROUTER_MODES

from .common import Progress, json_object_arg, user_errors
from .replay_cmd import print_notes, resolve_rules, resolve_timing


def run(paths: list[str], *, num_workers: str = "1", router_mode: str = "round_robin", csv_out: str | None = None,
        trace_format: str = "mooncake", trace_block_size: int | None = None, extra_engine_args: str | None = None,
        router_config: str | None = None, timing: str | None = None, timing_file: str | None = None,
        decode_timing: str | None = None, timing_table: str | None = None, jobs: int | None = None, seed: int = 0,
        arrival_speedup_ratio: float = 1.0, dynamo_version: str | None = None, ray: str | None = None,
        out=None, err=None) -> list[dict]:
    """The whole command as a function (tests call it); raises TraceError on bad input. When every
    configuration fails the CSV is still written; `sweep.failure_line(results)` says so. `ray`:
    None runs the local pool; a Ray address, or "" for Ray's own default (`sweep_ray.connect`)."""
    out = out or sys.stdout
    err = err or sys.stderr
    t0 = time.perf_counter()
    rules = resolve_rules(dynamo_version, decode_timing)
    workers = sweep.parse_list(num_workers, "--num-workers", int)
    modes = sweep.parse_list(router_mode, "--router-mode")
    for m in modes:
        if m not in ROUTER_MODES:
            raise TraceError(f"error: --router-mode must be among {', '.join(ROUTER_MODES)}, got {m!r}")
    check_run_options(num_workers=workers, trace_block_size=trace_block_size,
                      arrival_speedup_ratio=arrival_speedup_ratio)
    points = sweep.grid(workers, modes)
    if ray is not None:
        sweep_ray.require()  # before reading a large trace
    engine = EngineArgs.from_json(json_object_arg(extra_engine_args, "--extra-engine-args"))
    rcfg = RouterConfig.from_json(json_object_arg(router_config, "--router-config"))
    check_outputs([("--csv", csv_out), ("--timing-file", timing_file if timing == "fit" else None)], paths)
    inp = load_input(paths, trace_format, trace_block_size, raw_dynamo=rules.raw_dynamo)
    print_notes(inp, err)
    tm = resolve_timing(timing, timing_file, inp, engine, decode_timing, timing_table, out, err, rules)
    if tm == "recorded":
        raise TraceError("error: --timing recorded replays one configuration's recorded service times: use "
                         "`trace-pipe replay`; a sweep needs an engine timing model (dynamo, fit, table)")

    spec = sweep.SweepSpec(inp.sim_format, inp.block_size, engine, rcfg, tm, seed, arrival_speedup_ratio, rules)
    prog = Progress(len(points), "sweep, 0 failed")
    failed = 0

    def done(row: dict) -> None:
        nonlocal failed
        if row.get("error"):
            failed += 1
            prog.label = f"sweep, {failed} failed"
        prog.update()

    try:
        if ray is None:
            results = sweep.run_sweep(inp.rows, inp.sources, spec, points, jobs, done)
        else:
            results = _run_on_ray(inp, spec, points, jobs, ray, done)
    finally:
        prog.close()
    if csv_out:
        with atomic_output(csv_out) as f:
            f.write(sweep.to_csv(results))
    print(sweep.table(results), file=out)
    word = "configuration" if len(results) == 1 else "configurations"
    print(f"{len(results)} {word} ({failed} failed) on {len(inp.rows)} requests in "
          f"{time.perf_counter() - t0:.1f} s wall", file=out)
    if csv_out:
        print(f"Saved table to: {csv_out}", file=out)
    return results


def _run_on_ray(inp, spec: sweep.SweepSpec, points: list[sweep.SweepPoint], jobs: int | None, address: str,
                done) -> list[dict]:
    connected = sweep_ray.connect(address)
    try:
        return sweep_ray.run_sweep_ray(inp.rows, inp.sources, spec, points, jobs, done)
    finally:
        if connected:
            sweep_ray.require().shutdown()


# What `--ray` takes as its value; anything else after a bare `--ray` is the next argument.
_RAY_ADDRESS = re.compile(r"(auto|local|ray://\S+|[^\s/\\]+:\d+)")


class _SweepCommand(TyperCommand):
    """Typer has no option with an optional value, so a bare `--ray` (at the end, or followed by
    anything that is not an address: a trace path, another option) is read as `--ray=`."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        fixed = list(args)
        for i, a in enumerate(fixed):
            if a == "--":
                break
            if a == "--ray" and not (i + 1 < len(fixed) and _RAY_ADDRESS.fullmatch(fixed[i + 1])):
                fixed[i] = "--ray="
        return super().parse_args(ctx, fixed)


def register(app: typer.Typer) -> None:
    @app.command("sweep", cls=_SweepCommand,
                 short_help="Replay a trace over a grid of worker counts x router modes; one table of latency, "
                            "throughput and cache reuse.")
    def sweep_cmd(
        trace: list[str] = typer.Argument(..., help="Trace file(s)."),
        num_workers: str = typer.Option("1", "--num-workers", help="Comma-separated worker counts, e.g. 2,4,8."),
        router_mode: str = typer.Option("round_robin", "--router-mode",
                                        help=f"Comma-separated router modes ({' | '.join(ROUTER_MODES)})."),
        csv_out: Optional[str] = typer.Option(None, "--csv", help="Also write the table here (CSV, atomically)."),
        trace_format: str = typer.Option("mooncake", "--trace-format", help=" | ".join(FORMATS)),
        trace_block_size: Optional[int] = typer.Option(None, "--trace-block-size"),
        extra_engine_args: Optional[str] = typer.Option(None, "--extra-engine-args", help="MockEngineArgs JSON."),
        router_config: Optional[str] = typer.Option(None, "--router-config", help="KvRouterConfig JSON."),
        timing: Optional[str] = typer.Option(None, "--timing", help="dynamo (default) | fit (from the trace's "
                                             "recorded times) | table (--timing-table)"),
        timing_file: Optional[str] = typer.Option(None, "--timing-file", help="With --timing fit: save the fit "
                                                  "here. Alone: load a saved fit."),
        dynamo_version: Optional[str] = typer.Option(None, "--dynamo-version", help="1.6 (default) | 1.5 | 1.4"),
        decode_timing: Optional[str] = typer.Option(None, "--decode-timing", help="Older spelling of "
                                                    "--dynamo-version: physical = 1.4, logical = 1.5."),
        timing_table: Optional[str] = typer.Option(None, "--timing-table", help="JSON profile for --timing table "
                                                   "(given alone, it implies --timing table)."),
        jobs: Optional[int] = typer.Option(None, "--jobs", help="Parallel processes (default: one per core)."),
        seed: int = typer.Option(0, "--seed", help="Seed for router tie-breaks and random routing."),
        arrival_speedup_ratio: float = typer.Option(1.0, "--arrival-speedup-ratio"),
        ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]", help="Run the grid on a Ray cluster, "
                                          "one task per configuration (needs the ray extra). ADDRESS: "
                                          "HOST:PORT of the head, auto, local or ray://...; bare --ray reads "
                                          "RAY_ADDRESS, else the cluster `ray start` began here, else starts a "
                                          "local Ray. --jobs then caps configurations in flight."),
    ) -> None:
        """Replay a trace over a grid of worker counts x router modes; one table of makespan, TTFT/E2E
        percentiles, throughput, cache reuse and rejected requests per configuration; exits 1 when every
        configuration fails."""
        try:
            with user_errors():
                notes = io.StringIO()  # printed once the run succeeded: an error is the one line
                results = run(trace, num_workers=num_workers, router_mode=router_mode, csv_out=csv_out,
                              trace_format=trace_format, trace_block_size=trace_block_size,
                              extra_engine_args=extra_engine_args, router_config=router_config, timing=timing,
                              timing_file=timing_file, decode_timing=decode_timing, timing_table=timing_table,
                              jobs=jobs, seed=seed, arrival_speedup_ratio=arrival_speedup_ratio,
                              dynamo_version=dynamo_version, ray=ray, err=notes)
                sys.stderr.write(notes.getvalue())
        except KeyboardInterrupt:
            # outstanding configurations are cancelled and nothing is written (the CSV comes last)
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        line = sweep.failure_line(results)
        if line is not None:
            print(line, file=sys.stderr)
            raise typer.Exit(1)
