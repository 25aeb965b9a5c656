"""The Simulation Engine's message polling, done in one pass (experiments/simulate.py)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

from experiments.simulate import next_message_per_node, poll_nodes_in_one_pass


class FakeState:
    """What next_message_per_node reads of flwr's InMemoryLinkState."""

    def __init__(self, messages: list[tuple[str, int, str]], expired: set[str] = frozenset()):
        self.lock = threading.RLock()
        self.expired = set(expired)
        self.message_ins_store = {
            message_id: SimpleNamespace(
                id=message_id, metadata=SimpleNamespace(dst_node_id=node, delivered_at=delivered)
            )
            for message_id, node, delivered in messages
        }

    def _check_stored_messages(self, message_ids: set[str]) -> None:
        for message_id in message_ids & self.expired:
            del self.message_ins_store[message_id]


def test_each_node_gets_its_first_undelivered_message_once():
    state = FakeState(
        [
            ("a1", 1, "2026-01-01"),  # delivered already
            ("a2", 1, ""),
            ("b1", 2, ""),
            ("a3", 1, ""),
            ("x1", 9, ""),  # a node this engine does not run
            ("c1", 3, ""),  # expired
        ],
        expired={"c1"},
    )
    first = next_message_per_node(state, {1, 2, 3})
    assert sorted(message.id for message in first) == ["a2", "b1"]
    assert all(message.metadata.delivered_at for message in first)
    assert "c1" not in state.message_ins_store
    assert [message.id for message in next_message_per_node(state, {1, 2, 3})] == ["a3"]
    assert next_message_per_node(state, {1, 2, 3}) == []
    assert state.message_ins_store["x1"].metadata.delivered_at == ""


def test_flwr_still_has_what_the_one_pass_reads_and_replaces():
    assert callable(vce_api.add_messages_to_queue)
    assert callable(InMemoryLinkState._check_stored_messages)
    assert "message_ins_store" in InMemoryLinkState.__init__.__code__.co_names
    poll_nodes_in_one_pass()
    poll_nodes_in_one_pass()  # idempotent
    assert getattr(vce_api.add_messages_to_queue, "one_pass", False)
