"""The compact hash-id mapper (§6.5) and its prefix-reuse shortcut against the plain definition."""

from array import array

from hypothesis import given
from hypothesis import strategies as st

from trace_pipe.pipeline.agentic import HashMapper


def test_dynamo_mapper_cases():
    m = HashMapper()
    assert m.map([101, 202, 303]) == [0, 1, 2]
    assert m.map([101, 202, 404]) == [0, 1, 3]


@given(st.lists(st.tuples(st.sampled_from("abc"), st.lists(st.integers(0, 6), max_size=12)), max_size=25))
def test_prefix_reuse_equals_first_appearance(rows):
    m = HashMapper()
    plain: dict[int, int] = {}
    for chain, hashes in rows:
        want = [plain.setdefault(h, len(plain)) for h in hashes]
        assert m.map(array("Q", hashes), chain) == want


@given(st.lists(st.integers(0, 3), max_size=20), st.lists(st.integers(0, 3), max_size=20))
def test_common_prefix(a, b):
    from trace_pipe.pipeline.shared_hashes import common_prefix_flat

    want = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    assert common_prefix_flat(a, b) == want
