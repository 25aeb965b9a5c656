"""The Fleet API's largest request body and requests per message, from a real round.

    python -m experiments.fleet_messages [--sites 3] [--out experiments/results/fleet_messages.json]

Why: the Fleet proxy (deploy/nginx/fleet-proxy.conf) caps each request body
(`client_max_body_size`) and each client's request rate (`limit_req`). Both limits must let
every real message through and nothing much larger, so they are sized from the messages of
one real round, not guessed.

How: one round of fedsec's own ServerApp and ClientApp with the default model, under FedAvg
and under SecAgg+, in process (experiments.inprocess: the same apps, workflows, mods and
protobuf encoding as a deployment). Every message and reply is turned into the HTTP bodies a
SuperNode's Fleet client (flwr 1.42, supernode/fleet_http_connection.py) sends and receives
for it: the instruction arrives by `pull-messages`, then one `pull-object` per object of its
tree and a `confirm-message-received`; the reply leaves by `push-messages` (the message
without content plus its object tree) and one `push-object` per object. The largest request
body of any of these is what `client_max_body_size` must admit. flwr cuts arrays into
chunks of at most FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE (5 MiB), so no push-object body exceeds
that plus a few hundred bytes whatever the model: the chunk size is the ceiling for a larger
model, the measurement the figure for this one.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "fleet_messages.json"
MODES = ("fedavg", "secagg")
ROUNDS = 1
ROUND_OVERRIDES = {"num-rounds": ROUNDS, "local-steps": 2, "site-html": "off", "seed": 0}
CONTROL_REQUESTS_PER_MESSAGE = 3
"""pull-messages, confirm-message-received and push-messages: the requests besides objects."""


@dataclass
class MessageSizes:
    """One message's Fleet traffic, as a SuperNode's HTTP client would carry it."""

    message_type: str
    direction: str  # "instruction" (SuperLink -> node) or "reply" (node -> SuperLink)
    objects: int
    largest_object_bytes: int
    largest_request_bytes: int
    total_bytes: int


@dataclass
class ModeSizes:
    """Every message of one mode's round, and the figures the proxy limits come from."""

    mode: str
    messages: list[MessageSizes] = field(default_factory=list)

    def summary(self, *, n_sites: int) -> dict[str, Any]:
        """Largest request body, largest message, and requests per exchange and per round."""
        replies = [m for m in self.messages if m.direction == "reply"]
        instructions = [m for m in self.messages if m.direction == "instruction"]
        return {
            "largest_request_body_bytes": max(m.largest_request_bytes for m in self.messages),
            "largest_reply_total_bytes": max(m.total_bytes for m in replies),
            "largest_instruction_total_bytes": max(m.total_bytes for m in instructions),
            "most_objects_per_message": max(m.objects for m in self.messages),
            "most_requests_per_exchange": _most_requests_per_exchange(self.messages),
            "requests_per_site_per_round": round(
                sum(_requests(m) for m in self.messages) / n_sites / ROUNDS
            ),
            "messages": len(self.messages),
        }


def _most_requests_per_exchange(messages: list[MessageSizes]) -> int:
    """Requests for one instruction and its reply: every object pulled, then every object pushed."""
    pulled = max((m.objects for m in messages if m.direction == "instruction"), default=0)
    pushed = max((m.objects for m in messages if m.direction == "reply"), default=0)
    return pulled + pushed + CONTROL_REQUESTS_PER_MESSAGE


def _requests(message: MessageSizes) -> int:
    """One request per object, plus pull-messages and confirm (instruction) or push-messages."""
    return message.objects + (2 if message.direction == "instruction" else 1)


def fleet_sizes(message: Any) -> MessageSizes:
    """The Fleet HTTP bodies that carry `message` (flwr 1.42's protobuf-over-HTTP client)."""
    from flwr.app.message.message import remove_content_from_message
    from flwr.common.serde import message_to_proto
    from flwr.proto.fleet_pb2 import (  # pylint: disable=E0611
        PullMessagesResponse,
        PushMessagesRequest,
    )
    from flwr.proto.message_pb2 import (  # pylint: disable=E0611
        PullObjectResponse,
        PushObjectRequest,
    )
    from flwr.proto.node_pb2 import Node  # pylint: disable=E0611
    from flwr.supercore.inflatable.inflatable_object import (
        get_all_nested_objects,
        get_object_tree,
    )

    metadata = message.metadata
    is_reply = bool(metadata.reply_to_message_id)
    node = Node(node_id=metadata.src_node_id if is_reply else metadata.dst_node_id)
    tree = get_object_tree(message)
    bare = message_to_proto(remove_content_from_message(message))
    if is_reply:
        envelope = PushMessagesRequest(
            node=node,
            messages_list=[bare],
            message_object_trees=[tree],
            clientapp_runtime_list=[1.0],
        )
    else:
        envelope = PullMessagesResponse(messages_list=[bare], message_object_trees=[tree])
    bodies = [envelope.SerializeToString(deterministic=True)]
    contents = [obj.deflate() for obj in get_all_nested_objects(message).values()]
    session = str(uuid.uuid4())
    for content in contents:
        if is_reply:
            body = PushObjectRequest(
                node=node,
                run_id=metadata.run_id,
                object_id="0" * 64,
                object_content=content,
                session_id=session,
            )
        else:
            body = PullObjectResponse(
                object_found=True, object_available=True, object_content=content
            )
        bodies.append(body.SerializeToString(deterministic=True))
    return MessageSizes(
        message_type=metadata.message_type,
        direction="reply" if is_reply else "instruction",
        objects=len(contents),
        largest_object_bytes=max(len(c) for c in contents),
        # Instructions come back as response bodies: the node's request bodies stay small.
        largest_request_bytes=max(len(b) for b in bodies) if is_reply else len(bodies[0]),
        total_bytes=sum(len(b) for b in bodies),
    )


@contextmanager
def _recording(sink: list[MessageSizes]) -> Iterator[None]:
    """Record every message the in-process grid puts on the wire, in both directions."""
    import experiments.inprocess as inprocess

    original: Callable[[Any], Any] = inprocess.wire

    def wire(message: Any) -> Any:
        sink.append(fleet_sizes(message))
        return original(message)

    inprocess.wire = wire
    try:
        yield
    finally:
        inprocess.wire = original


def _tiny_sites(out: Path, *, n_sites: int) -> Path:
    """Small generated sites: the model, not the data, sets the message size."""
    from experiments.generator import generate_sites

    generate_sites(out_dir=out, n_sites=n_sites, n_days=2, seed=2, scale=0.05)
    for config in out.glob("*/site.toml"):  # SecAgg+ needs the volumes a site shares
        text = re.sub(r'level = "[^"]*"', 'level = "rates+volumes"', config.read_text())
        config.write_text(text)
    return out


def measure(*, n_sites: int = 3) -> dict[str, Any]:
    """One real round per mode; the sizes of every message and the figures for the proxy."""
    from common.model import ModelSpec, build_model, model_to_ndarrays
    from experiments.simulate import run_in_process

    arrays = model_to_ndarrays(build_model(ModelSpec(), seed=0))
    result: dict[str, Any] = {
        "command": f"python -m experiments.fleet_messages --sites {n_sites}",
        "what": "Fleet API bodies of one real round (default model), as flwr 1.42's HTTP "
        "client carries them; sizes the proxy's client_max_body_size and limit_req",
        "sites": n_sites,
        "default_model": {
            "arrays": len(arrays),
            "parameters": int(sum(a.size for a in arrays)),
            "float32_bytes": int(sum(a.nbytes for a in arrays)),
        },
        "modes": {},
    }
    with tempfile.TemporaryDirectory(prefix="fedsec-fleet-") as scratch:
        sites = _tiny_sites(Path(scratch) / "sites", n_sites=n_sites)
        for mode in MODES:
            sizes = ModeSizes(mode)
            with _recording(sizes.messages):
                run_in_process(
                    data_dir=sites,
                    out_dir=Path(scratch) / mode,
                    overrides={**ROUND_OVERRIDES, "mode": mode},
                )
            result["modes"][mode] = {
                **sizes.summary(n_sites=n_sites),
                "by_message": [asdict(m) for m in _distinct(sizes.messages)],
            }
    result["largest_request_body_bytes"] = max(
        mode["largest_request_body_bytes"] for mode in result["modes"].values()
    )
    for key in ("most_requests_per_exchange", "requests_per_site_per_round"):
        result[key] = max(mode[key] for mode in result["modes"].values())
    return result


def _distinct(messages: list[MessageSizes]) -> list[MessageSizes]:
    """The largest message of each (type, direction): sites differ by a few bytes only."""
    largest: dict[tuple[str, str], MessageSizes] = {}
    for message in messages:
        key = (message.message_type, message.direction)
        if key not in largest or message.total_bytes > largest[key].total_bytes:
            largest[key] = message
    return list(largest.values())


def main(argv: list[str] | None = None) -> int:
    """Measure and write the results file (JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=3, help="data holders (SecAgg+ needs 3+)")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    result = measure(n_sites=args.sites)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"largest Fleet request body {result['largest_request_body_bytes']:,} bytes; at most "
        f"{result['most_requests_per_exchange']} requests per message and reply, "
        f"{result['requests_per_site_per_round']} per site and round; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
