"""The harness -> collector ZMQ wire format (dynamo-formats.md §3.3).

PUSH (harness, connects) -> PULL (collector, binds). Every message is exactly three frames:
UTF-8 topic, 8-byte big-endian u64 sequence (monotonic per publisher, starting at 0; receivers
ignore its value) and a MessagePack map with string keys.
"""

from __future__ import annotations

import threading

import msgpack

DEFAULT_TOPIC = "agent-tool-events"
DEFAULT_ENDPOINT = "tcp://127.0.0.1:20390"
SEQUENCE_BYTES = 8


def sequence_frame(seq: int) -> bytes:
    return seq.to_bytes(SEQUENCE_BYTES, "big")


_local = threading.local()


def encode_payload(record: dict) -> bytes:
    """MessagePack as the TS provider's `encode(record)`: str keys, ints stay ints, bin for bytes."""
    # one Packer per thread: `msgpack.packb` builds a new one per call, which costs more than the
    # packing itself; a Packer resets its buffer when packing fails, so reuse is safe
    try:
        packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(record)


def encode_message(topic: str | bytes, seq: int, record: dict) -> list[bytes]:
    """The three frames of one tool event."""
    t = topic.encode() if isinstance(topic, str) else topic
    return [t, sequence_frame(seq), encode_payload(record)]
