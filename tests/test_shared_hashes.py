"""SharedHashes, the hash list the Dynamo reader keeps (a shared key and an own tail), against
plain lists."""

from array import array

from hypothesis import given
from hypothesis import strategies as st

from trace_pipe.pipeline import shared_hashes
from trace_pipe.pipeline.shared_hashes import MAX_TAIL, SharedHashes, diverge, extend

_small = st.integers(0, 3)  # few values, so lists often share prefixes and differ late


def _build(steps):
    """Lists as the reader builds them: each from the last, keeping `keep` hashes (clamped)."""
    h, plain, out = None, [], []
    for keep, new in steps:
        keep = min(keep, len(plain))
        h = extend(h, keep, array("Q", new))
        plain = plain[:keep] + new
        out.append((h, plain))
    return out


_steps = st.lists(st.tuples(st.integers(0, 2 * MAX_TAIL), st.lists(_small, max_size=MAX_TAIL // 2 + 5)), min_size=1,
                  max_size=10)


@given(_steps)
def test_extend_equals_the_plain_list(steps):
    for h, plain in _build(steps):
        assert list(h) == plain and len(h) == len(plain) and list(h.array()) == plain and list(h[:]) == plain
        assert h == array("Q", plain) and h.array().typecode == "Q"
        assert len(h.tail) <= MAX_TAIL and h.keep <= len(h.key)


@given(_steps, _steps)
def test_diverge_gives_the_common_prefix_and_the_rest(s1, s2):
    lists = _build(s1) + _build(s2)  # lists of one build share keys, of two builds do not
    for ha, pa in lists:
        for hb, pb in lists:
            k = next((i for i, (x, y) in enumerate(zip(pa, pb)) if x != y), min(len(pa), len(pb)))
            for a, b in ((ha, hb), (ha, array("Q", pb)), (array("Q", pa), hb), (tuple(pa), tuple(pb))):
                got, rest = diverge(a, b)
                assert (got, list(rest)) == (k, pb[k:])


def test_a_prompt_shares_the_key_until_its_tail_is_long():
    first = extend(None, 0, array("Q", range(300)))
    nxt = extend(first, 299, array("Q", [7, 8]))  # the last (partial) block changed
    assert nxt.key is first.key and (nxt.keep, list(nxt.tail)) == (299, [7, 8])
    assert diverge(first, nxt) == (299, array("Q", [7, 8]))
    h = nxt
    for i in range(MAX_TAIL // 2 - 1):
        h = extend(h, len(h), array("Q", [1, 2]))
    assert h.key is first.key and len(h.tail) == MAX_TAIL
    h2 = extend(h, len(h), array("Q", [5]))  # past MAX_TAIL: the list becomes the next key
    assert h2.key is not first.key and h2.keep == len(h2.key) == 299 + MAX_TAIL + 1 and not h2.tail
    assert h2.array() is h2.key and list(h2)[-2:] == [2, 5]
    assert diverge(h, h2) == (len(h), array("Q", [5]))
    back = extend(h2, 10, array("Q", [9]))  # diverging inside the key keeps the key, fewer of it
    assert back.key is h2.key and back.keep == 10 and list(back) == list(range(10)) + [9]
    assert shared_hashes.flat((1, 2)) == (1, 2)
    assert SharedHashes(array("Q"), 0, array("Q")) == array("Q") and SharedHashes(array("Q"), 0, array("Q")) != first
