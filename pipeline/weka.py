"""WEKA kv-cache-tester agent traces (one play per JSON object) to model records.

A play is a root chain (the Claude Code conversation) and one child chain per sub-agent marker.
Rules (documented in the README, "WEKA traces"):

* ids: play `P`; root chain `P`, its requests `P/i` (i = index in the play's `requests` array);
  sub-agent chain `P/<agent_id>`, its requests `P/<agent_id>/j`.
* times: start = `t` s → integer ms; end = start + `api_time`. A call without `api_time` ends where
  the next call of its chain starts minus that call's `think_time`, else at its `ttft`, else at
  its start. Sub-agent `t` values restart at 0 at the marker (kv-cache-tester's convention); a
  sub-agent whose first `t` is already >= the marker's (AgentX copies) is read as absolute.
* `think_time` (the recorded tool/user gap before a call) becomes a tool span ending at the call's
  start (`tool_class` "tool" when the call's input carries a `tool_result`, else "user"), so
  agentic conversion splits the gap into `tool_wait_ms` and `delay` as for a Dynamo trace.
* the sub-agent marker itself becomes a `subagent` tool span on the parent chain
  ([t, t + duration_ms], `tool_call_id` = agent_id).
* hashes: `hash_ids` are local to a play (`hash_id_scope: "local"`), so they are namespaced by
  play ordinal; block size = the play's `block_size` (64 in the real data).
* sub-agent joins (`subagents`):
  - "recorded" (default): like Dynamo, edges come from recorded times: the sub-agent waits for the
    last parent call that ended before it started, and the first parent call that starts after
    the sub-agent's last call ended waits for it. The real data's parent usually carries on
    before its sub-agent ends (46 of 57 markers), so most sub-agents have no join.
  - "wait": kv-cache-tester's and AIPerf's replay rule: the parent call after the marker waits
    for the sub-agent's last call, whatever the recorded times say.
"""

from __future__ import annotations

from . import schemas
from .dynamo_rows import round_half_away
from .errors import TraceError
from .model import ChainLink, Generation, Request, Source, ToolEvent, Trace

SUBAGENT_RULES = ("recorded", "wait")
_NS_SHIFT = 40  # hash ids of play k live in [k << 40, (k + 1) << 40)
_PRIVATE = 1 << 39  # labels at and above this offset are synthesized tail blocks


def is_weka_play(d: dict) -> bool:
    return isinstance(d.get("requests"), list) and "event" not in d and "schema" not in d and "id" in d


def _ms(v: float | None, src: Source, field: str) -> int:
    """Seconds (typed: non-negative, within the clock) to integer ms; a missing time is an error."""
    if v is None:
        raise TraceError(f"{src}: field `{field}` must be a non-negative number of seconds, got None")
    return round_half_away(v * 1000.0)


def read_play(d: dict, ordinal: int, src: Source, trace: Trace, subagents: str = "recorded") -> None:
    """Append one play's requests, tool spans and chain links to `trace`."""
    p = schemas.weka_play(d, str(src))
    play = p.id
    if not play:
        raise TraceError(f"{src}: field `id`: a WEKA play needs a string id")
    base = ordinal << _NS_SHIFT
    trace.plays[play] = play
    _read_chain(p.requests, play, None, play, 0, p.block_size, base, src, trace, subagents, "requests", _Counter())


class _Counter:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = -1

    def next(self) -> int:
        self.n += 1
        return self.n


def _read_chain(entries: list[schemas.WekaEntry], chain: str, parent: str | None, play: str, origin_ms: int, bs: int,
                base: int, src: Source, trace: Trace, subagents: str, where: str, private: _Counter) -> None:
    calls: list[tuple[int, schemas.WekaEntry, str]] = []  # (index, entry, field path)
    markers: list[tuple[int, schemas.WekaEntry, str]] = []
    for i, e in enumerate(entries):
        (markers if e.type == "subagent" else calls).append((i, e, f"{where}[{i}]"))
    starts = [origin_ms + _ms(e.t, src, f"{path}.t") for _, e, path in calls]
    requests: list[Request] = []
    for k, ((i, e, path), start) in enumerate(zip(calls, starts)):
        rid = f"{chain}/{i}"
        if e.api_time is not None:
            end = start + _ms(e.api_time, src, f"{path}.api_time")
        elif k + 1 < len(calls) and calls[k + 1][1].think_time is not None:
            nxt = calls[k + 1]
            end = max(start, starts[k + 1] - _ms(nxt[1].think_time, src, f"{nxt[2]}.think_time"))
            trace.notes["weka calls without api_time: end = next start - think_time"] += 1
        elif e.ttft is not None:
            if e.ttft < 0:
                raise TraceError(f"{src}: field `{path}.ttft` must be a non-negative number of seconds, got {e.ttft!r}")
            end = start + _ms(e.ttft, src, f"{path}.ttft")
            trace.notes["weka calls without api_time: end = ttft"] += 1
        else:
            end = start
            trace.notes["weka calls without api_time: zero duration"] += 1
        hids = e.hash_ids or ()
        n_in, n_out = e.n_in, e.out
        hashes = [base + h for h in hids]
        if len(hashes) * bs < n_in:
            # kv-cache-tester hashes full blocks only; a trailing partial block gets a label of its
            # own (never shared, as Dynamo's v2 private blocks) so replay can synthesize `in` tokens.
            hashes.extend(base + _PRIVATE + private.next() for _ in range(-(-n_in // bs) - len(hashes)))
            trace.notes["weka calls with a partial last block (private hash label added)"] += 1
        ttft = e.ttft
        req = Request(
            request_id=rid, chain_id=chain, parent_chain_id=parent, start_ms=start, end_ms=end,
            output_tokens=n_out, block_size=bs, input_length=n_in,
            hashes=tuple(hashes), model=e.model, input_tokens=n_in,
            ttft_ms=None if ttft is None else float(ttft) * 1000.0,
            total_time_ms=float(end - start), run_id=play,
            identity=(("play_id", play), ("agent_id", chain)) if parent else (("play_id", play),),
            generation=Generation.WEKA, source=src)
        requests.append(req)
        think = e.think_time
        if think:
            think_ms = _ms(think, src, f"{path}.think_time")
            if think_ms > 0:
                types = e.input_types or ()
                trace.tools.append(ToolEvent(
                    event_type="tool_end", chain_id=chain, parent_chain_id=parent,
                    tool_call_id=f"{rid}/think", tool_class="tool" if "tool_result" in types else "user",
                    event_time_ms=float(start), started_at_ms=max(0, start - think_ms), ended_at_ms=start,
                    duration_ms=float(think_ms), status="succeeded", event_source="weka", run_id=play,
                    generation=Generation.WEKA, source=src))
    trace.requests.extend(requests)

    for i, m, path in markers:
        agent = m.agent_id
        if not agent:
            raise TraceError(f"{src}: field `{path}.agent_id`: a sub-agent marker needs a string agent_id")
        t0 = origin_ms + _ms(m.t, src, f"{path}.t")
        sub = m.requests or []
        child = f"{chain}/{agent}"
        first_t = next((e.t for e in sub if e.type != "subagent"), None)
        absolute = first_t is not None and (m.t or 0) > 0 and first_t >= (m.t or 0)
        _read_chain(sub, child, chain, play, origin_ms if absolute else t0, bs, base, src, trace,
                    subagents, f"{path}.requests", private)
        trace.plays[child] = play
        dur = m.duration_ms
        if dur is not None and dur >= 0:
            trace.tools.append(ToolEvent(
                event_type="tool_end", chain_id=chain, parent_chain_id=parent, tool_call_id=agent,
                tool_class="subagent", event_time_ms=float(t0 + round_half_away(dur)), started_at_ms=t0,
                ended_at_ms=t0 + round_half_away(dur), duration_ms=float(dur),
                status=m.status if m.status is not None else "succeeded", event_source="weka", run_id=play,
                generation=Generation.WEKA, source=src))
        else:
            trace.notes["weka sub-agent markers without duration_ms (no subagent span)"] += 1
        if subagents == "wait":
            before = [r for (ci, _, _), r in zip(calls, requests) if ci < i]
            after = [r for (ci, _, _), r in zip(calls, requests) if ci > i]
            trace.links[child] = ChainLink(
                child, spawn_request_id=before[-1].request_id if before else None,
                join_request_id=after[0].request_id if after else None)
