"""Rows -> simulator requests: lengths, prompt block identities, and the hot per-request state.

Token synthesis (1.4.2, observed §0.4/§4): the prompt is each `hash_id` repeated
`trace_block_size` times, truncated to `input_length`; engine blocks are `block_size` tokens and
only full blocks are hashed, with chained (position-dependent) identities. Tokens are never
materialised: the token prefix ending at position e lies in trace block j = (e-1)//tbs at offset
off = e - j*tbs, and is fully described by (chain id of trace blocks 0..j, off). Chain ids are
interned ints, so an engine block's identity is the int `chain[j] * (tbs + 1) + off` (>= 0).
Blocks holding generated tokens match nothing but the same request's own recompute after a
preemption, so they get request-unique negative ids.
"""

from __future__ import annotations


class SimRequest:
    """One request's static description plus its mutable scheduling state (slotted, hot)."""

    __slots__ = (
        # static
        "idx", "request_id", "session_id", "prompt", "out", "chain", "source", "play_id",
        # scheduling state
        "g", "computed", "blocks", "nreg", "base", "epoch", "seq", "worker", "pkeys",
        # bookkeeping for the report
        "ready", "dispatch", "first_admit", "t_first", "t_second", "t_last", "reused_max",
        "reused_first", "status", "terminal", "chunks", "overlap_blocks", "n_admit",
    )

    def __init__(self, idx: int, request_id: str, session_id: str | None, prompt: int, out: int,
                 chain: list[int], source: str, play_id: str | None = None) -> None:
        self.idx = idx
        self.request_id = request_id
        self.session_id = session_id
        self.prompt = prompt
        self.out = out
        self.chain = chain
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
    """Interns (parent chain id, hash_id) pairs: equal token prefixes get equal ids."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: dict[tuple[int, int], int] = {}

    def chain(self, hash_ids: tuple[int, ...], n: int) -> list[int]:
        ids = self.ids
        out = []
        parent = -1
        for h in hash_ids[:n]:
            k = (parent, h)
            c = ids.get(k)
            if c is None:
                c = ids[k] = len(ids)
            out.append(c)
            parent = c
        return out


def prompt_keys(chain: list[int], prompt: int, bs: int, tbs: int) -> list[int]:
    """Identities of the prompt's full engine blocks (only full blocks are hashed)."""
    nfull = prompt // bs
    t1 = tbs + 1
    if tbs % bs == 0:
        m = tbs // bs
        offs = [bs * (k + 1) for k in range(m)]
        keys = [c * t1 + o for c in chain for o in offs]
        del keys[nfull:]
        return keys
    out = []
    for i in range(nfull):
        e = (i + 1) * bs
        j = (e - 1) // tbs
        out.append(chain[j] * t1 + (e - j * tbs))
    return out


def gen_key(req_idx: int, block: int) -> int:
    """Identity of a block holding generated tokens: unique to the request."""
    return -1 - ((req_idx << 40) | block)
