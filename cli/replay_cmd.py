"""`trace-pipe replay`: replay a trace offline through mock workers (as ai-dynamo 1.6.1 does, or 1.5.1 /
1.4.2 with `--dynamo-version`), and,
when the input carries recorded times, compare the simulation with the recorded run and draw both
in one Perfetto trace."""

from __future__ import annotations

import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional

import orjson
import typer

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.io import atomic_output, check_outputs, output_group
from trace_pipe.pipeline.limits import MILLISECONDS
from trace_pipe.pipeline.replay_input import FORMATS, ReplayInput, load_input
from trace_pipe.sim import fit, report
from trace_pipe.sim.config import Disaggregation, EngineArgs, RouterConfig, check_run_options
from trace_pipe.sim.replay import ReplayOptions, run_replay
from trace_pipe.sim.result import SimResult
from trace_pipe.sim.router import ROUTER_MODES
from trace_pipe.sim.timing import FixedTiming, make_timing
from trace_pipe.sim.versions import VERSIONS, DynamoRules
from trace_pipe.sim.versions import rules as version_rules

from . import prediction_dir
from .common import Progress, json_object_arg, user_errors

TIMINGS = ("dynamo", "fit", "recorded", "table")
OUTPUT_FORMATS = ("table", "json")
ONSET_HELP = ("Error onset threshold (ms): the first request, in recorded start order, whose simulated start or end "
              "is more than this far off the recorded one is reported with the simulated queue depth when it was "
              "released (requests released but not yet admitted, on every worker and in the router queue, itself "
              "included).")


def load_rows(paths: list[str], fmt: str, trace_block_size: int | None) -> tuple[list, list[str], int]:
    """Rows, their sources and the trace block size (kept for callers of the engine alone)."""
    inp = load_input(paths, fmt, trace_block_size)
    return inp.rows, inp.sources, inp.block_size


def _recorded_needed(inp: ReplayInput, what: str) -> None:
    if inp.recorded is None:
        raise TraceError(f"error: {what} needs recorded times: use --trace-format dynamo, weka or distserve "
                         f"(Mooncake rows carry arrival times only)")


def check_options(max_sim_time_seconds: float | None, onset_ms: float) -> None:
    """Numeric options, as Dynamo's replay takes them: a limit of 0 s is legal (nothing runs)."""
    check_run_options(max_sim_time_seconds=max_sim_time_seconds)
    if not (math.isfinite(onset_ms) and onset_ms >= 0):
        raise TraceError(f"error: --onset-ms must be a finite number >= 0, got {onset_ms:g}")


def print_notes(inp: ReplayInput, err) -> None:
    """What the reader skipped or adjusted, as `convert` reports it (nothing dropped silently)."""
    if inp.trace is not None:
        # imported here: a Mooncake replay needs none of the converter (nor numpy, which it imports)
        from trace_pipe.pipeline import convert

        for line in convert.report_lines(inp.trace, inp.derived):
            print(line, file=err)


def resolve_rules(dynamo_version: str | None, decode_timing: str | None) -> DynamoRules:
    """`--dynamo-version` (default the newest). `--decode-timing`, from before there was a version
    switch, names the version it meant: physical is 1.4.2, logical 1.5.1."""
    if decode_timing is not None and decode_timing not in ("physical", "logical"):
        raise TraceError(f"error: --decode-timing must be physical or logical, got {decode_timing!r}")
    if dynamo_version is None and decode_timing is not None:
        return VERSIONS["1.4" if decode_timing == "physical" else "1.5"]
    rules = version_rules(dynamo_version)
    if decode_timing is not None and decode_timing != rules.decode_input:
        raise TraceError(f"error: --decode-timing {decode_timing} contradicts --dynamo-version {rules.version} "
                         f"(whose decode timing is {rules.decode_input}); drop --decode-timing")
    return rules


def resolve_timing(name: str | None, timing_file: str | None, inp: ReplayInput, engine: EngineArgs,
                   decode_timing: str | None, timing_table: str | None, out, err=None,
                   rules: DynamoRules = VERSIONS["1.4"]) -> object:
    """The timing model for the engine, or "recorded" (served by sim.recorded instead). --timing
    fit [--timing-file F: save]; --timing-file F alone: load; --timing-table F alone: --timing
    table; default Dynamo's polynomial with the decode input of `rules`. `decode_timing` given with
    a model it does not apply to is ignored with a note on `err`."""
    if name is not None and name not in (*TIMINGS, "poly"):  # "file" is the internal name of a loaded fit
        raise TraceError(f"error: --timing must be one of {', '.join(TIMINGS)}, got {name!r}")
    if name is None:
        if timing_file and timing_table:
            raise TraceError("error: --timing-file and --timing-table: choose one timing model (--timing fit or "
                             "--timing table)")
        name = "table" if timing_table else "file" if timing_file else "dynamo"
    if name == "poly":
        name = "dynamo"
    if engine.timing_model != "polynomial" and name != "dynamo":
        raise TraceError(f"error: --timing {name} and the engine's timing_model {engine.timing_model}: choose one")
    if timing_table and name != "table":
        raise TraceError(f"error: --timing-table goes with --timing table, not --timing {name}: add --timing table "
                         f"(or drop --timing)")
    if decode_timing is not None and name in ("fit", "recorded", "table", "file") and err is not None:
        what = "a saved fit (--timing-file)" if name == "file" else f"--timing {name}"
        print(f"note: --decode-timing {decode_timing} is ignored with {what}: it applies to the dynamo timing only",
              file=err)
    if name == "recorded":
        if timing_file:
            raise TraceError("error: --timing-file goes with --timing fit (save) or alone (load), not --timing recorded")
        _recorded_needed(inp, "--timing recorded")
        return "recorded"
    if name == "fit":
        _recorded_needed(inp, "--timing fit")
        model = fit.fit_timing(inp.trace)
        for line in model.describe():
            print(line, file=out)
        if timing_file:
            fit.save_timing_file(model, timing_file)
            print(f"Saved fitted timing to: {timing_file}", file=out)
        return model
    if name == "file":
        model = fit.load_timing_file(timing_file)
        for line in model.describe():
            print(line, file=out)
        return model
    if timing_file:
        raise TraceError(f"error: --timing-file goes with --timing fit (save) or alone (load), not --timing {name}")
    table = None
    if name == "table":
        if not timing_table:
            raise TraceError("error: --timing table needs --timing-table FILE")
        try:
            table = orjson.loads(Path(timing_table).read_bytes())
        except OSError as e:
            raise TraceError(f"error: --timing-table {timing_table}: cannot read: {e.strerror}") from None
        except orjson.JSONDecodeError as e:
            raise TraceError(f"error: --timing-table {timing_table}: invalid JSON: {e}") from None
    elif name != "dynamo":
        raise TraceError(f"error: --timing must be one of {', '.join(TIMINGS)}, got {name!r}")
    elif engine.timing_model == "fixed":
        return FixedTiming(engine.fixed_prefill_ms, engine.fixed_decode_ms)
    return make_timing("table" if name == "table" else "poly", block_size=engine.block_size, decode=rules.decode_input,
                       table=table)


def disaggregation(num_workers: int, num_prefill_workers: int | None, num_decode_workers: int | None,
                   prefill_engine_args: str | None, decode_engine_args: str | None,
                   extra_engine_args: str | None) -> Disaggregation | None:
    """The pools of a disaggregated replay, when any of its four options is given (the other
    count defaults to 1; without pool engine args both pools take --extra-engine-args)."""
    if all(x is None for x in (num_prefill_workers, num_decode_workers, prefill_engine_args, decode_engine_args)):
        return None
    if num_workers != 1:
        raise TraceError("error: --num-workers is for aggregated replay; a disaggregated one takes "
                         "--num-prefill-workers and --num-decode-workers")
    extra = json_object_arg(extra_engine_args, "--extra-engine-args")
    if extra in ({}, {"engine": {}}):
        extra = None  # a run file's empty engine section (cli/run_config.py merge) sets nothing
    return Disaggregation.from_json(
        1 if num_prefill_workers is None else num_prefill_workers, 1 if num_decode_workers is None else num_decode_workers,
        json_object_arg(prefill_engine_args, "--prefill-engine-args"),
        json_object_arg(decode_engine_args, "--decode-engine-args"), extra)


def run(paths: list[str], *, trace_format: str = "mooncake", num_workers: int = 1, router_mode: str = "round_robin",
        trace_block_size: int | None = None, extra_engine_args: str | None = None, router_config: str | None = None,
        arrival_speedup_ratio: float = 1.0, max_sim_time_seconds: float | None = None, seed: int = 0,
        timing: str | None = None, timing_file: str | None = None, decode_timing: str | None = None,
        timing_table: str | None = None, sla_ttft_ms: float | None = None, sla_itl_ms: float | None = None,
        sla_e2e_ms: float | None = None, report_json: str | None = None, report_jsonl: str | None = None,
        perfetto: str | None = None, compare_json: str | None = None, onset_ms: float = 100.0,
        merge_decode_passes: bool = False, dynamo_version: str | None = None, execution_model: str = "mock",
        output_dir: str | None = None, overwrite: bool = False, capture_per_request: bool = False,
        output_format: str = "table", out=None, err=None, progress: bool = True,
        num_prefill_workers: int | None = None, num_decode_workers: int | None = None,
        prefill_engine_args: str | None = None, decode_engine_args: str | None = None) -> tuple[dict, SimResult]:
    """The whole command as a function (tests call it); raises TraceError on bad input.
    `output_dir` ... `output_format` are `aisimulate predict`'s outputs (cli/prediction_dir.py);
    `execution_model` is the target model agentic reports name (a run file's engine.model)."""
    out = out or sys.stdout
    err = err or sys.stderr
    t0 = time.perf_counter()
    check_options(max_sim_time_seconds, onset_ms)
    check_run_options(num_workers=num_workers, trace_block_size=trace_block_size,
                      arrival_speedup_ratio=arrival_speedup_ratio)
    if output_format not in OUTPUT_FORMATS:
        raise TraceError(f"error: --format must be table or json, got {output_format!r}")
    if capture_per_request and not output_dir:
        raise TraceError("error: --capture-per-request writes requests.jsonl in --output-dir: give --output-dir "
                         "(or --per-request-jsonl FILE)")
    # with --format json stdout is the summary alone; what else a run says goes to stderr
    info = err if output_format == "json" else out
    rules = resolve_rules(dynamo_version, decode_timing)
    if output_dir:
        prediction_dir.check(output_dir, overwrite)
    check_outputs([("--report-json", None if report_json is None or Path(report_json).is_dir() else report_json),
                   ("--per-request-jsonl", report_jsonl), ("--compare-json", compare_json), ("--perfetto", perfetto),
                   ("--timing-file", timing_file if timing == "fit" else None),
                   ("--output-dir", str(Path(output_dir) / prediction_dir.REPORT) if output_dir else None),
                   ("--output-dir", str(Path(output_dir) / prediction_dir.REQUESTS) if capture_per_request else None)],
                  paths)
    inp = load_input(paths, trace_format, trace_block_size, raw_dynamo=rules.raw_dynamo)
    print_notes(inp, err)
    if merge_decode_passes and not perfetto:
        print("note: --merge-decode-passes has no effect without --perfetto", file=err)
    disagg = disaggregation(num_workers, num_prefill_workers, num_decode_workers, prefill_engine_args,
                            decode_engine_args, extra_engine_args)
    engine = disagg.decode if disagg is not None else EngineArgs.from_json(
        json_object_arg(extra_engine_args, "--extra-engine-args"))
    rcfg = RouterConfig.from_json(json_object_arg(router_config, "--router-config"))
    if compare_json:
        _recorded_needed(inp, "--compare-json")
    tm = resolve_timing(timing, timing_file, inp, engine, decode_timing, timing_table, info, err, rules)
    if disagg is not None and tm == "recorded":
        raise TraceError("error: --timing recorded replays aggregated workers only (recorded service has no "
                         "prefill/decode split)")
    opts = ReplayOptions(num_workers=num_workers, router_mode=router_mode, trace_block_size=inp.block_size,
                         engine=engine, router=rcfg, arrival_speedup_ratio=arrival_speedup_ratio,
                         max_sim_time_ms=None if max_sim_time_seconds is None else max_sim_time_seconds * 1000.0,
                         seed=seed, timing=None if tm == "recorded" else tm, record=perfetto is not None,
                         rules=rules, graph_source=inp.graph_source, disagg=disagg)
    bar = Progress(len(inp.rows), "replaying") if progress else None
    cb = bar.update if bar and bar.enabled else None
    if tm == "recorded":
        from trace_pipe.sim.compare import recorded_e2e_ms
        from trace_pipe.sim.recorded import Service, run_recorded

        service = [Service(recorded_e2e_ms(r), r.ttft_ms) for r in inp.recorded]
        res = run_recorded(inp.rows, inp.sources, inp.sim_format, opts, service, progress=cb)
    else:
        res = run_replay(inp.rows, inp.sources, inp.sim_format, opts, progress=cb)
    if bar:
        bar.close()
    rep = report.summary(res, sla_ttft_ms=sla_ttft_ms, sla_itl_ms=sla_itl_ms, sla_e2e_ms=sla_e2e_ms,
                         wall_time_ms=(time.perf_counter() - t0) * 1000.0, rules=rules,
                         execution_model=execution_model)
    cmp = None
    if inp.recorded is not None:
        from trace_pipe.sim.compare import compare

        cmp = compare(inp.recorded, res, onset_ms=onset_ms)
        rep.setdefault("trace_pipe", {})["comparison"] = cmp["summary"] | {"error_onset": cmp["error_onset"]}
    if report_json is None and not output_dir:
        report_json = time.strftime("trace_pipe_replay_report_%Y%m%d_%H%M%S.json")
    target = None if report_json is None else Path(report_json)
    if target is not None and target.is_dir():
        target = target / time.strftime("trace_pipe_replay_report_%Y%m%d_%H%M%S.json")
    saved = []
    with output_group():  # all or none of the outputs
        if target is not None:
            with atomic_output(target) as f:
                f.write(json.dumps(rep, indent=2, sort_keys=True).encode() + b"\n")
            saved.append(target)
        if output_dir:
            full = report.full_report(res, rep, rules=rules, per_request=capture_per_request)
            saved.append(prediction_dir.write(output_dir, full, full["per_request"] if capture_per_request else None))
        if report_jsonl:
            with atomic_output(report_jsonl) as f:
                for row in report.jsonl_rows(res, rules=rules):
                    f.write(orjson.dumps(row) + b"\n")
        if compare_json:
            with atomic_output(compare_json) as f:
                f.write(orjson.dumps(cmp, option=orjson.OPT_INDENT_2) + b"\n")
        if perfetto:
            _write_perfetto(perfetto, inp, res, cmp, tm, opts, merge_decode_passes, info)
    if output_dir and overwrite and not capture_per_request:
        prediction_dir.drop_stale_requests(output_dir)
    if output_format == "table":
        print(report.table(rep), file=out)
    if cmp is not None:
        from trace_pipe.sim.compare import table

        print(table(cmp), file=info)
    if res.stopped_at_ms is not None:
        n = sum(1 for r in res.requests if r.status != "completed")
        print(f"Stopped at the simulated-time limit ({res.stopped_at_ms / 1000:g} s): {n} requests not completed",
              file=info)
    rejected = sum(1 for r in res.requests if r.status == "rejected")
    if rejected:
        print(f"Rejected (prompt larger than a worker's KV cache): {rejected} requests", file=info)
    for path in saved:
        print(f"Saved full report to: {path}", file=info)
    if compare_json:
        print(f"Saved comparison to: {compare_json}", file=info)
    if output_format == "json":
        print(json.dumps(rep, sort_keys=True, separators=(",", ":")), file=out)
    return rep, res


def _write_perfetto(path: str, inp: ReplayInput, res: SimResult, cmp: dict | None, tm, opts: ReplayOptions,
                    merge_passes: bool, out) -> None:
    from trace_pipe import proto
    from trace_pipe.proto.simulated import simulated_timeline
    from trace_pipe.sim.compare import annotations
    from trace_pipe.sim.export import simulated_run

    timing = "recorded" if tm == "recorded" else type(tm).__name__
    lay = opts.disagg
    desc = (f"{opts.num_workers} workers, router {opts.router_mode}, timing {timing}, "
            f"max_num_seqs {opts.engine.max_num_seqs}, num_gpu_blocks {opts.engine.num_gpu_blocks}" if lay is None else
            f"{lay.num_prefill_workers} prefill + {lay.num_decode_workers} decode workers, router {opts.router_mode}, "
            f"timing {timing}, max_num_seqs {lay.prefill.max_num_seqs}/{lay.decode.max_num_seqs}, num_gpu_blocks "
            f"{lay.prefill.num_gpu_blocks}/{lay.decode.num_gpu_blocks} (prefill/decode)")
    run = simulated_run(res, inp.edges, desc)
    timelines = []
    recorded = None
    origin_ns = 0
    if inp.recorded is not None:
        recorded = proto.recorded_timeline(inp.trace, inp.edges)
        timelines.append(recorded)
        origin_ns = min(r.start_ms for r in inp.recorded) * 1_000_000
    # a Perfetto trace counts int64 nanoseconds: a run stretched past them (a tiny arrival
    # speed-up over a long trace) is refused by name instead of failing inside the encoder
    end_ms = max((r.end_ms for r in res.requests if r.end_ms is not None), default=0.0)
    MILLISECONDS.check(origin_ns / 1e6 + end_ms, f"error: --perfetto {path}: the simulated run's end")
    timelines.append(simulated_timeline(run, origin_ns=origin_ns, recorded=recorded,
                                        annotations=annotations(cmp) if cmp is not None else None,
                                        merge_passes=merge_passes))
    stats = proto.write_timelines(timelines, path, attributes=(("trace_pipe.replay", desc),))
    print(f"Wrote {stats.summary()} to {path}", file=out)


def register(app: typer.Typer) -> None:
    @app.command("replay", short_help="Replay a trace through mock vLLM workers; compare with and draw beside "
                                       "the recorded run.")
    def replay(
        ctx: typer.Context,
        trace: Optional[list[str]] = typer.Argument(None, help="Trace file(s) (with --config: instead of the "
                                                    "file's traffic.source.paths)."),
        config: Optional[str] = typer.Option(
            None, "--config", "-c", help="A run file of `aisimulate predict --stack dynamo` (YAML: traffic, engine, "
            "router, planner, evaluation); flags given here win over it."),
        sets: Optional[list[str]] = typer.Option(
            None, "--set", metavar="PATH=YAML_VALUE", help="Override a run-file key (repeatable; a key the schema "
            "has, the value in YAML)."),
        output_dir: Optional[str] = typer.Option(
            None, "--output-dir", help="Write prediction.json (the whole report) there, as aisimulate predict."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace prediction.json / requests.jsonl in a "
                                       "non-empty --output-dir."),
        output_format: str = typer.Option("table", "--format", help="Standard output: table | json (the summary "
                                          "as one JSON object)."),
        capture_per_request: bool = typer.Option(False, "--capture-per-request", help="Also write "
                                                 "requests.jsonl (one row per request) in --output-dir."),
        trace_format: str = typer.Option("mooncake", "--trace-format", help=" | ".join(FORMATS)),
        num_workers: int = typer.Option(1, "--num-workers"),
        num_prefill_workers: Optional[int] = typer.Option(
            None, "--num-prefill-workers", help="Disaggregated replay: prefill workers (default 1 when "
            "--num-decode-workers or a pool's engine args are given)."),
        num_decode_workers: Optional[int] = typer.Option(
            None, "--num-decode-workers", help="Disaggregated replay: decode workers (default 1)."),
        prefill_engine_args: Optional[str] = typer.Option(
            None, "--prefill-engine-args", help="Disaggregated replay: the prefill pool's MockEngineArgs JSON "
            "(worker_type prefill; kv_transfer_bandwidth / kv_transfer_bytes_per_token time the KV handoff)."),
        decode_engine_args: Optional[str] = typer.Option(
            None, "--decode-engine-args", help="Disaggregated replay: the decode pool's MockEngineArgs JSON "
            "(worker_type decode; same block_size as the prefill pool's)."),
        router_mode: str = typer.Option("round_robin", "--router-mode", help=" | ".join(ROUTER_MODES)),
        trace_block_size: Optional[int] = typer.Option(None, "--trace-block-size",
                                                       help="Tokens per hash id (default 512; from the trace for dynamo/weka/v2)."),
        extra_engine_args: Optional[str] = typer.Option(None, "--extra-engine-args", help="MockEngineArgs JSON."),
        router_config: Optional[str] = typer.Option(None, "--router-config", help="KvRouterConfig JSON."),
        arrival_speedup_ratio: float = typer.Option(1.0, "--arrival-speedup-ratio"),
        max_sim_time_seconds: Optional[float] = typer.Option(None, "--max-sim-time-seconds"),
        report_json: Optional[str] = typer.Option(None, "--report-json"),
        report_jsonl: Optional[str] = typer.Option(
            None, "--per-request-jsonl", "--report-jsonl", help="Per-request rows as JSON lines (--report-jsonl: "
            "the older name)."),
        sla_ttft_ms: Optional[float] = typer.Option(None, "--sla-ttft-ms"),
        sla_itl_ms: Optional[float] = typer.Option(None, "--sla-itl-ms"),
        sla_e2e_ms: Optional[float] = typer.Option(None, "--sla-e2e-ms"),
        seed: int = typer.Option(0, "--seed", help="Seed for router tie-breaks (kv_router) and random routing."),
        timing: Optional[str] = typer.Option(
            None, "--timing", help="dynamo (default: Dynamo's polynomial) | fit (fitted on the input's recorded "
            "requests) | recorded (each request takes its recorded service time) | table (--timing-table)."),
        timing_file: Optional[str] = typer.Option(
            None, "--timing-file", help="With --timing fit: save the fitted coefficients here (JSON). Alone: load "
            "a saved fit."),
        dynamo_version: Optional[str] = typer.Option(
            None, "--dynamo-version", help="The Dynamo replay to reproduce: 1.6 (default; ai-dynamo 1.6.1) | 1.5 "
            "(1.5.1) | 1.4 (1.4.2)."),
        decode_timing: Optional[str] = typer.Option(
            None, "--decode-timing", help="Older spelling of --dynamo-version: physical = 1.4, logical = 1.5."),
        timing_table: Optional[str] = typer.Option(None, "--timing-table", help="JSON profile for --timing table "
                                                   "(given alone, it implies --timing table)."),
        perfetto: Optional[str] = typer.Option(
            None, "--perfetto", help="Write one .pftrace[.gz] with a `Simulated` root beside `Recorded` (when the "
            "input carries recorded times)."),
        compare_json: Optional[str] = typer.Option(
            None, "--compare-json", help="Write the per-request recorded vs simulated comparison (JSON)."),
        merge_decode_passes: bool = typer.Option(
            False, "--merge-decode-passes", help="Draw each run of identical decode passes as one `decode passes` "
            "slice instead of a slice per pass (a long replay's trace writes several times faster)."),
        onset_ms: float = typer.Option(100.0, "--onset-ms", help=ONSET_HELP),
        execution_model: str = typer.Option(
            "mock", "--execution-model", help="The target model an agentic report names (Dynamo's "
            "execution_model; a run file's engine.model)."),
        replay_mode: str = typer.Option("offline", "--replay-mode", help="offline only."),
    ) -> None:
        """Replay a trace on a virtual clock through mock vLLM workers and report Dynamo's metrics; with recorded
        times, also compare with the recorded run (terminal table, --compare-json) and draw both (--perfetto)."""
        args = dict(trace_format=trace_format, num_workers=num_workers, router_mode=router_mode,
                    trace_block_size=trace_block_size, extra_engine_args=extra_engine_args,
                    router_config=router_config, arrival_speedup_ratio=arrival_speedup_ratio,
                    max_sim_time_seconds=max_sim_time_seconds, sla_ttft_ms=sla_ttft_ms, sla_itl_ms=sla_itl_ms,
                    sla_e2e_ms=sla_e2e_ms, execution_model=execution_model, num_prefill_workers=num_prefill_workers,
                    num_decode_workers=num_decode_workers, prefill_engine_args=prefill_engine_args,
                    decode_engine_args=decode_engine_args)
        try:
            with user_errors():
                if replay_mode != "offline":
                    raise TraceError("error: --replay-mode: only offline replay is supported")
                if config is not None:
                    from .run_config import merge, read

                    # the flags typed on this command line (not their defaults) win over the file
                    given = {k: v for k, v in args.items()
                             if getattr(ctx.get_parameter_source(k), "name", None) == "COMMANDLINE"}
                    if trace:
                        given["paths"] = trace
                    args = merge(read(config, sets or [], check_paths=not trace).args, given)
                elif sets:
                    raise TraceError("error: --set overrides a run file: give --config")
                elif not trace:
                    raise TraceError("error: give trace file(s) or --config RUN.yaml")
                else:
                    args["paths"] = trace
                notes = io.StringIO()  # printed once the run succeeded: an error is the one line
                run(args.pop("paths"), **args, seed=seed, timing=timing, timing_file=timing_file,
                    decode_timing=decode_timing, timing_table=timing_table, report_json=report_json,
                    report_jsonl=report_jsonl, perfetto=perfetto, compare_json=compare_json, onset_ms=onset_ms,
                    merge_decode_passes=merge_decode_passes, dynamo_version=dynamo_version, output_dir=output_dir,
                    overwrite=overwrite, capture_per_request=capture_per_request, output_format=output_format,
                    err=notes)
                sys.stderr.write(notes.getvalue())
        except KeyboardInterrupt:
            # as aisimulate predict: 130, no traceback; outputs are written all or none
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
