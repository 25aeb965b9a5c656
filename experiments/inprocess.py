"""A federation in one process and one thread: fedsec's ServerApp and ClientApp without Ray.

The same apps, flwr workflows (DefaultWorkflow, SecAggPlusWorkflow), client mods
(`secaggplus_mod`, the reply guard) and wire encoding (every message and reply goes through
flwr's protobuf serialisation both ways) as the Simulation Engine; only the transport differs:
`LocalGrid` calls each node's ClientApp in this thread, one message at a time, and keeps one
`Context` per node across messages as a SuperNode does. A raising ClientApp becomes an error
reply built exactly as flwr 1.42's `flwr-clientapp` builds it.

What it is for: tests and quick experiments that need a real round in seconds. What it does not
cover: Ray, processes, timeouts and concurrency (the Simulation Engine and the deployment tests
exercise those).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import NUM_PARTITIONS_KEY, PARTITION_ID_KEY, SUPERLINK_NODE_ID, ErrorCode
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=E0611
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

__all__ = ["LocalGrid", "wire"]

_FIRST_NODE_ID = 1001


def wire(message: Message) -> Message:
    """The message as the other side receives it: serialised to bytes and parsed back."""
    data = message_to_proto(message).SerializeToString()
    proto = ProtoMessage()
    proto.ParseFromString(data)
    return message_from_proto(proto)


def clientapp_error_reply(error: Exception, *, reply_to: Message) -> Message:
    """What flwr 1.42's `flwr-clientapp` sends when the ClientApp raises (run_clientapp.py)."""
    reason = str(type(error)) + ":<'" + str(error) + "'>"
    return Message(
        Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=reply_to
    )


class LocalGrid(Grid):
    """A `Grid` whose nodes are ClientApp calls in this thread (partition i = node i)."""

    def __init__(self, *, client_app: ClientApp, num_nodes: int, run_config: dict) -> None:
        if num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
        self.client_app = client_app
        self.run_id = int(uuid.uuid4().int % 2**63)
        self._run = Run.create_empty(run_id=self.run_id)
        self.contexts = {
            _FIRST_NODE_ID + index: Context(
                run_id=self.run_id,
                node_id=_FIRST_NODE_ID + index,
                node_config={PARTITION_ID_KEY: index, NUM_PARTITIONS_KEY: num_nodes},
                state=RecordDict(),
                run_config=dict(run_config),
            )
            for index in range(num_nodes)
        }
        self._replies: dict[str, Message] = {}
        self._ids = itertools.count()
        self.messages_handled = 0
        # What flwr's own in-process run sets: messages the ServerApp builds carry this run.
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = self.run_id
        TaskIdentity.node_id = SUPERLINK_NODE_ID

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message_id = f"local-{next(self._ids)}"
            message.metadata.__dict__["_message_id"] = message_id
            self._replies[message_id] = self._deliver(message)
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [
            self._replies.pop(message_id)
            for message_id in message_ids
            if message_id in self._replies
        ]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return list(self.pull_messages(self.push_messages(messages)))

    def _deliver(self, message: Message) -> Message:
        received = wire(message)
        received.metadata.__dict__["_delivered_at"] = str(time.time())
        context = self.contexts[received.metadata.dst_node_id]
        self.messages_handled += 1
        try:
            reply = self.client_app(message=received, context=context)
        except Exception as error:  # noqa: BLE001 - flwr turns any exception into an error reply
            reply = clientapp_error_reply(error, reply_to=received)
        return wire(reply)
