"""experiments/fleet_messages.py turns a message into the Fleet HTTP bodies that carry it.

The proxy's body limit (deploy/nginx/fleet-proxy.conf) rests on two facts measured here:
a reply's largest request body is one object's push, and flwr cuts arrays into chunks of at
most 5 MiB, so a FedAvg reply never sends a larger body whatever the model.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common.constant import FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE
from flwr.supercore.task_identity import TaskIdentity

from experiments.fleet_messages import fleet_sizes

HEADROOM = 1024  # a PushObjectRequest's fields around the object's bytes


@pytest.fixture
def instruction(monkeypatch) -> Message:
    """A train message from the SuperLink, with the id the grid gives it when pushed."""
    for name, value in (("_task_id", 1), ("_run_id", 7), ("_node_id", 0)):
        monkeypatch.setattr(TaskIdentity, name, value, raising=False)
    message = Message(
        RecordDict({"model": ArrayRecord([np.zeros(1000, np.float32)])}),
        dst_node_id=5,
        message_type="train",
    )
    message.metadata.__dict__["_message_id"] = message.object_id
    return message


def test_a_reply_is_pushed_object_by_object_and_arrays_in_chunks(instruction):
    # 3 chunks of distinct bytes (equal chunks are one object, sent once)
    big = np.random.default_rng(0).random(3 * FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE // 4, np.float32)
    reply = Message(
        RecordDict({"model": ArrayRecord([big]), "metrics": ConfigRecord({"n": 1})}),
        reply_to=instruction,
    )
    sizes = fleet_sizes(reply)
    assert sizes.direction == "reply" and sizes.message_type == "train"
    assert sizes.objects >= 3 + 3  # chunks, the array, its record, the content, the message
    chunk = FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE
    assert chunk <= sizes.largest_request_bytes <= chunk + HEADROOM
    assert sizes.total_bytes > big.nbytes


def test_an_instruction_arrives_in_responses_not_in_the_nodes_requests(instruction):
    sizes = fleet_sizes(instruction)
    assert sizes.direction == "instruction"
    assert sizes.largest_object_bytes >= 4000  # the model's 1000 floats
    assert sizes.largest_request_bytes < 4000  # only pull-messages' envelope is counted
