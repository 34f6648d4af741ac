"""Compact hash ids (§6.5) by a sort (`hash_ids`) against the plain definition: a dict that gives
each hash the next integer the first time it is looked up, walking the rows in output order."""

from array import array

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st

from trace_pipe.pipeline import hash_ids, ids_text
from trace_pipe.pipeline.shared_hashes import common_prefix_flat, extend


def _plain(lists):
    seen: dict[int, int] = {}
    return [[seen.setdefault(h, len(seen)) for h in hashes] for hashes in lists]


def test_dynamo_mapper_cases():
    assert hash_ids.plan([(None, [101, 202, 303]), (None, [101, 202, 404])]).lists() == [[0, 1, 2], [0, 1, 3]]


def test_a_row_numbers_only_its_tail():
    p = hash_ids.plan([("a", [5, 6, 7]), ("b", [9, 5]), ("a", [5, 6, 8, 9])])
    assert (p.keep, p.prev) == ([0, 0, 2], [-1, -1, 0])
    assert [p.tail(i).tolist() for i in range(3)] == [[0, 1, 2], [3, 0], [4, 3]]
    assert p.lists() == [[0, 1, 2], [3, 0], [0, 1, 4, 3]]


_u64 = st.one_of(st.integers(0, 6), st.sampled_from([2**63, 2**64 - 1, 2**64 - 2]))


@given(st.lists(st.tuples(st.sampled_from("abc"), st.lists(_u64, max_size=12), st.booleans()), max_size=25))
def test_plan_equals_first_appearance(rows):
    """Flat lists and the reader's SharedHashes, mixed, sharing prefixes or not; the streamed
    writer's text of each row (`ids_text.ids_text`) is the JSON of its list."""
    shared: dict = {}
    given_rows = []
    for chain, hashes, as_shared in rows:
        h = array("Q", hashes)
        prev = shared.get(chain)
        k = common_prefix_flat(list(prev), hashes) if prev is not None else 0
        shared[chain] = extend(prev, k, h[k:])
        given_rows.append((chain, shared[chain] if as_shared else h))
    plan = hash_ids.plan(given_rows)
    lists = plan.lists()
    assert lists == _plain([hashes for _, hashes, _ in rows])
    last: dict = {}
    for i, ((chain, _), want) in enumerate(zip(given_rows, lists)):
        text = ids_text.ids_text(last.get(chain), plan.keep[i], plan.tail(i))
        last[chain] = (text, len(want))
        assert text == orjson.dumps(want)


@given(st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 40), max_size=300))
def test_first_appearance_is_the_dict_numbering(values):
    assert hash_ids.first_appearance(array("Q", values)).tolist() == _plain([values])[0]


def test_first_appearance_with_few_and_with_many_repeats():
    """Both ways of placing the repeated values: a few among many (binary search), or most."""
    rng = np.random.default_rng(7)
    few = rng.integers(0, 2**64 - 1, 20_000, dtype=np.uint64, endpoint=True)
    few[rng.integers(0, 20_000, 50)] = few[rng.integers(0, 20_000, 50)]
    many = rng.integers(0, 3_000, 20_000, dtype=np.uint64)
    for a in (few, many):
        got = hash_ids.first_appearance(array("Q", a.tobytes()))
        assert got.dtype == np.int64 and got.tolist() == _plain([a.tolist()])[0]
    assert hash_ids.first_appearance(array("Q")).tolist() == []


def test_values_whose_mixed_top_bits_collide_stay_apart():
    """The first sort groups by the top bits of the mixed value: distinct values may share them."""
    m = int(hash_ids._MIX)
    v = 8 * 123456789  # its mix ends in three 0 bits: mix + 1 shares every other bit
    twin = (((v * m) % 2**64 + 1) * pow(m, -1, 2**64)) % 2**64  # mixes to v's mix + 1: same top bits
    values = [v, 5, twin, v, 7, twin, 5]
    assert hash_ids.first_appearance(array("Q", values)).tolist() == [0, 1, 2, 0, 3, 2, 1]
    assert hash_ids.first_appearance(array("Q", [v, twin])).tolist() == [0, 1]


@given(st.lists(st.integers(0, 3), max_size=20), st.lists(st.integers(0, 3), max_size=20))
def test_common_prefix(a, b):
    want = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    assert common_prefix_flat(a, b) == want
