"""Rows -> simulator requests: lengths, prompt block identities, and the hot per-request state.

Token synthesis (1.4.2, observed §0.4/§4): the prompt is each `hash_id` repeated
`trace_block_size` times, truncated to `input_length`; engine blocks are `block_size` tokens and
only full blocks are hashed, with chained (position-dependent) identities. Tokens are never
materialised: the token prefix ending at position e lies in trace block j = (e-1)//tbs at offset
off = e - j*tbs, and is fully described by (chain id of trace blocks 0..j, off). Chain ids are
interned ints, so an engine block's identity is the int `chain[j] * (tbs + 1) + off` (>= 0), or
just `chain[j]` when engine and trace blocks coincide. Blocks holding generated tokens match
nothing but the same request's own recompute after a preemption, so they get request-unique
negative ids.

Identities are built when a request is first routed or admitted and dropped when it finishes, so
memory follows the requests in flight, not the trace. Consecutive prompts of a session share most
of their blocks (~95% on agentic traces), so `PromptKeys` reuses the previous prompt's ids for the
common prefix (found by C-level slice compares) and interns only the new tail.
"""

from __future__ import annotations

from array import array

from trace_pipe.pipeline.dynamo_rows import common_prefix


class SimRequest:
    """One request's static description plus its mutable scheduling state (slotted, hot)."""

    __slots__ = (
        # static
        "idx", "request_id", "session_id", "prompt", "out", "hash_ids", "source", "play_id",
        # scheduling state
        "g", "computed", "blocks", "nreg", "base", "epoch", "seq", "worker", "pkeys", "hmemo",
        # bookkeeping for the report
        "ready", "dispatch", "first_admit", "t_first", "t_second", "t_last", "reused_max",
        "reused_first", "status", "terminal", "chunks", "overlap_blocks", "n_admit",
    )

    def __init__(self, idx: int, request_id: str, session_id: str | None, prompt: int, out: int,
                 hash_ids: tuple[int, ...] | list[int], source: str, play_id: str | None = None) -> None:
        self.idx = idx
        self.request_id = request_id
        self.session_id = session_id
        self.prompt = prompt
        self.out = out
        self.hash_ids = hash_ids  # the row's, shared (never copied)
        self.source = source
        self.play_id = play_id
        self.g = 0
        self.computed = 0
        self.blocks: list[int] = []
        self.nreg = 0
        self.base = 0
        self.epoch = 0
        self.seq = -1
        self.worker = -1
        self.pkeys: list[int] | None = None
        self.hmemo: tuple | None = None  # (pool generation, limit, hit blocks) of the last lookup
        self.ready = -1.0
        self.dispatch = -1.0
        self.first_admit = -1.0
        self.t_first = -1.0
        self.t_second = -1.0
        self.t_last = -1.0
        self.reused_max = 0
        self.reused_first = -1
        self.status = "pending"
        self.terminal = -1.0
        self.chunks: list[tuple[float, float, int]] | None = None
        self.overlap_blocks = 0
        self.n_admit = 0


class ChainInterner:
    """Interns (parent chain id, hash_id) pairs: equal token prefixes get equal ids.

    A hash id almost always follows the same parent (trace hash ids are themselves prefix ids),
    so `first` maps a hash id to the chain id of its first (parent, hash id) pair and `parent`
    remembers that pair's parent; only a hash id seen under another parent costs a tuple key."""

    __slots__ = ("first", "parent", "other")

    def __init__(self) -> None:
        self.first: dict[int, int] = {}
        self.parent = array("q")  # chain id -> parent chain id (-1 for a root)
        self.other: dict[tuple[int, int], int] = {}

    def extend(self, out: list[int], hash_ids) -> None:
        """Append the chain ids of `hash_ids` continuing the chain `out`."""
        first = self.first
        par = self.parent
        p = out[-1] if out else -1
        for h in hash_ids:
            c = first.get(h)
            if c is None:
                c = first[h] = len(par)
                par.append(p)
            elif par[c] != p:
                k = (p, h)
                c = self.other.get(k)
                if c is None:
                    c = self.other[k] = len(par)
                    par.append(p)
            out.append(c)
            p = c

    def chain(self, hash_ids, n: int) -> list[int]:
        out: list[int] = []
        self.extend(out, hash_ids[:n])
        return out


def block_keys(chain: list[int], lo: int, hi: int, bs: int, tbs: int) -> list[int]:
    """Identities of full engine blocks lo..hi-1 of a prompt whose trace-block chain is `chain`."""
    if tbs == bs:
        return chain[lo:hi]
    t1 = tbs + 1
    if tbs % bs == 0:
        m = tbs // bs
        return [chain[i // m] * t1 + bs * (i % m + 1) for i in range(lo, hi)]
    out = []
    for i in range(lo, hi):
        e = (i + 1) * bs
        j = (e - 1) // tbs
        out.append(chain[j] * t1 + (e - j * tbs))
    return out


def prompt_keys(chain: list[int], prompt: int, bs: int, tbs: int) -> list[int]:
    """Identities of the prompt's full engine blocks (only full blocks are hashed)."""
    return block_keys(chain, 0, prompt // bs, bs, tbs)


class PromptKeys:
    """Builds requests' prompt block identities on demand, one interner per run (the router and
    every worker must share it: identities are compared across them)."""

    __slots__ = ("bs", "tbs", "interner", "last")

    def __init__(self, block_size: int, trace_block_size: int) -> None:
        self.bs = block_size
        self.tbs = trace_block_size
        self.interner = ChainInterner()
        # session -> (hash ids, chain, keys) of the last prompt built for it
        self.last: dict[str | None, tuple] = {}

    def keys(self, r: SimRequest) -> list[int]:
        """`r`'s full-block identities; cached on `r.pkeys` until the request finishes."""
        if r.pkeys is not None:
            return r.pkeys
        bs, tbs = self.bs, self.tbs
        nblk = -(-r.prompt // tbs)
        hs = r.hash_ids
        if len(hs) > nblk:
            hs = hs[:nblk]
        nfull = r.prompt // bs
        prev = self.last.get(r.session_id)
        if prev is not None:
            ph, pchain, pkeys = prev
            k = common_prefix(ph, hs)
            chain = pchain[:k] if k < len(pchain) else pchain
            if k < len(hs):
                chain = chain[:] if chain is pchain else chain
                self.interner.extend(chain, hs[k:])
            nk = min(len(pkeys), k * tbs // bs, nfull)
            if nk == nfull:
                keys = pkeys[:nk] if nk < len(pkeys) else pkeys
            else:
                keys = pkeys[:nk]
                keys += block_keys(chain, nk, nfull, bs, tbs)
        else:
            chain = []
            self.interner.extend(chain, hs)
            keys = block_keys(chain, 0, nfull, bs, tbs)
        self.last[r.session_id] = (hs, chain, keys)
        r.pkeys = keys
        return keys


def gen_key(req_idx: int, block: int) -> int:
    """Identity of a block holding generated tokens: unique to the request."""
    return -1 - ((req_idx << 40) | block)
