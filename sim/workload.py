"""Rows -> simulator requests: lengths, prompt block identities, and the hot per-request state.

Token synthesis (1.4.2, observed §0.4/§4): the prompt is each `hash_id` repeated
`trace_block_size` times, truncated to `input_length`; engine blocks are `block_size` tokens and
only full blocks are hashed, with chained (position-dependent) identities. Tokens are never
materialised: the token prefix ending at position e lies in trace block j = (e-1)//tbs at offset
off = e - j*tbs, and is fully described by (chain identity of trace blocks 0..j, off). Chain
identities are 64-bit hashes (`extend_chain`), as Dynamo's block hashes are: an exact interner
held ~20 MiB on agentic traces. An engine block's identity is `chain[j]` when it ends on a trace
block boundary, else `chain[j]` mixed with the offset (`block_keys`). Blocks holding generated
tokens match nothing but the same request's own recompute after a preemption, so they get
request-unique negative ids.

Identities are built when a request is first routed or admitted and dropped when it finishes, so
memory follows the requests in flight, not the trace. Consecutive prompts of a session share most
of their blocks (~95% on agentic traces), so `PromptKeys` reuses the previous prompt's ids for the
common prefix (found by C-level slice compares) and hashes only the new tail.
"""

from __future__ import annotations

from trace_pipe.pipeline.shared_hashes import common_prefix_flat


class SimRequest:
    """One request's static description plus its mutable scheduling state (slotted, hot)."""

    __slots__ = (
        # static
        "idx", "request_id", "session_id", "prompt", "out", "hash_ids", "source", "play_id",
        # scheduling state
        "g", "computed", "blocks", "nreg", "base", "epoch", "seq", "worker", "pkeys", "hmemo",
        "src", "src_n", "run", "dup",
        # bookkeeping for the report
        "ready", "dispatch", "first_admit", "t_first", "t_second", "t_last", "reused_max",
        "reused_first", "status", "terminal", "chunks", "overlap_blocks", "n_admit",
        "admits", "prefilled", "best_overlap_blocks", "release_seq", "terminal_seq",
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
        self.seq = -1  # admission number: running order on its engine worker (recorded service: over all)
        self.worker = -1
        self.pkeys: list[int] | None = None
        self.hmemo: tuple | None = None  # (pool generation, limit, hit blocks) of the last lookup
        # the request whose prompt identities this one's first `src_n` are (see `PromptKeys`)
        self.src: SimRequest | None = None
        self.src_n = 0
        self.run = None  # its blocks' run in the pool's free queue, once released lazily
        self.dup = False  # registered a duplicate copy of a cached hash (never released lazily)
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
        self.admits: list[tuple[float, int]] = []  # (time, prefix-hit tokens) per admission
        self.prefilled = 0  # prompt (and recomputed) tokens its prefill passes computed
        self.best_overlap_blocks = 0  # the KV router's best overlap over all workers
        # positions of its release and of its terminal's delivery in the run's event order
        # (`order` in replay.drive): Dynamo 1.6's lifecycle transcript follows it within an instant
        self.release_seq = -1
        self.terminal_seq = -1


_EXACT = (1 << 61) - 1  # ints below this hash to themselves (CPython reduces modulo 2**61 - 1)


def extend_chain(out: list[int], hash_ids) -> None:
    """Append the chain identities of `hash_ids` continuing the chain `out`: each is a 64-bit hash
    of (parent identity, hash id), as Dynamo hashes block contents (a collision is as unlikely as
    one of Dynamo's). CPython's tuple hash of ints is deterministic (PYTHONHASHSEED only salts str
    and bytes), so runs are reproducible. Ids at or above 2**61 - 1 are split into two exact
    halves first, so that ids congruent modulo 2**61 - 1 do not collide by construction."""
    p = out[-1] if out else -1
    if not hash_ids:
        return
    app = out.append
    if max(hash_ids) < _EXACT:
        for h in hash_ids:
            p = hash((p, h))
            app(p)
    else:
        for h in hash_ids:
            p = hash((p, h)) if h < _EXACT else hash((p, h >> 32, h & 0xFFFFFFFF))
            app(p)


def chain_of(hash_ids, n: int) -> list[int]:
    out: list[int] = []
    extend_chain(out, hash_ids[:n])
    return out


# Identity of a block ending `off` tokens into a trace block (off < tbs): the chain identity
# XOR a fixed odd multiple of `off`. For a fixed offset that is a bijection on identities, so
# two such blocks (or one and a chain identity) coincide only by a 64-bit accident, like any
# two hashes; it costs one int op where hashing a tuple costs ~100 ns per block.
_OFF = 0x9E3779B97F4A7C15


def _off_mix(off: int) -> int:
    return (off * _OFF) & ((1 << 63) - 1)


def block_keys(chain: list[int], lo: int, hi: int, bs: int, tbs: int) -> list[int]:
    """Identities of full engine blocks lo..hi-1 of a prompt whose trace-block chain is `chain`:
    the chain identity itself for a block ending on a trace-block boundary, else that of the
    trace block it ends in mixed with its offset (`_off_mix`)."""
    if tbs == bs:
        return chain[lo:hi]
    if tbs % bs == 0:
        m = tbs // bs
        mix = [_off_mix(bs * (t + 1)) for t in range(m - 1)] + [0]  # x ^ 0 == x: boundary blocks
        j0 = lo // m
        out = [c ^ f for c in chain[j0:-(-hi // m)] for f in mix]
        return out[lo - j0 * m:hi - j0 * m]
    out = []
    for i in range(lo, hi):
        e = (i + 1) * bs
        j = (e - 1) // tbs
        off = e - j * tbs
        out.append(chain[j] if off == tbs else chain[j] ^ _off_mix(off))
    return out


def prompt_keys(chain: list[int], prompt: int, bs: int, tbs: int) -> list[int]:
    """Identities of the prompt's full engine blocks (only full blocks are hashed)."""
    return block_keys(chain, 0, prompt // bs, bs, tbs)


class PromptKeys:
    """Builds requests' prompt block identities on demand, one per run (the router and
    every worker must share it: identities are compared across them)."""

    __slots__ = ("bs", "tbs", "last")

    def __init__(self, block_size: int, trace_block_size: int) -> None:
        self.bs = block_size
        self.tbs = trace_block_size
        # session -> (hash ids, chain, keys, request) of the last prompt built for it
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
            ph, pchain, pkeys, preq = prev
            k = common_prefix_flat(ph, hs)
            chain = pchain[:k] if k < len(pchain) else pchain
            if k < len(hs):
                chain = chain[:] if chain is pchain else chain
                extend_chain(chain, hs[k:])
            nk = min(len(pkeys), k * tbs // bs, nfull)
            if nk == nfull:
                keys = pkeys[:nk] if nk < len(pkeys) else pkeys
            else:
                keys = pkeys[:nk]
                keys += block_keys(chain, nk, nfull, bs, tbs)
            r.src = preq
            r.src_n = nk
        else:
            chain = []
            extend_chain(chain, hs)
            keys = block_keys(chain, 0, nfull, bs, tbs)
        self.last[r.session_id] = (hs, chain, keys, r)
        r.pkeys = keys
        return keys


def gen_key(req_idx: int, block: int) -> int:
    """Identity of a block holding generated tokens: unique to the request."""
    return -1 - ((req_idx << 40) | block)
