"""The reply guard: a reply naming the site's traffic is withheld; clean ones pass, audited."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import given
from hypothesis import strategies as st

from client.audit import (
    MIN_BINARY_NAME_CHARS,
    LeakError,
    _dotted,
    leaked_names,
    make_reply_guard,
    reply_texts,
)

NAMES = frozenset({"evil-dga-qwkz.com", "intranet.acme.example", "acme.example"})


def test_leaked_names_finds_full_and_registered_names_in_bytes():
    payload = b"\x00\x12www.evil-dga-qwkz.com\x08foo\x00mail.acme.example\x01"
    assert leaked_names(payload, NAMES) == {"evil-dga-qwkz.com", "acme.example"}
    assert leaked_names(b"fitres.metrics\x00site-id\x00auc", NAMES) == set()


def test_a_short_name_in_a_masked_vector_is_chance_not_a_leak():
    """A masked SecAgg+ update is random bytes: a 4-character name turns up in ~1e-4 of them."""
    masked = np.random.default_rng(7).integers(0, 2**32, size=1000, dtype=np.int64)
    masked[500] = int.from_bytes(b"T.Co", "little")  # as the random low bytes of one word
    short = frozenset({"t.co", *NAMES})
    texts, binary = reply_texts(RecordDict({"m": ArrayRecord([masked])}))
    assert leaked_names(texts, short, binary=binary) == set()
    # Text is searched for every name; binary for names of MIN_BINARY_NAME_CHARS or more.
    assert leaked_names(["see t.co"], short) == {"t.co"}
    long = np.frombuffer(b"\x00acme.example\x00\x00\x00", dtype=np.int64)
    texts, binary = reply_texts(RecordDict({"m": ArrayRecord([long])}))
    assert leaked_names(texts, short, binary=binary) == {"acme.example"}


@pytest.fixture
def message() -> Message:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    return Message(
        content=RecordDict({"config": ConfigRecord({"server-round": 1})}),
        dst_node_id=7,
        message_type=MessageType.EVALUATE,
        group_id="1",
    )


def _context() -> Context:
    return Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})


def _guard(audit_dir=None):
    return make_reply_guard(site_names=lambda _: NAMES, audit_dir=lambda _: audit_dir)


def test_reply_with_a_domain_is_withheld(message):
    def handler(msg, context):
        return Message(
            RecordDict({"m": ConfigRecord({"top_fp": "intranet.acme.example"})}), reply_to=msg
        )

    with pytest.raises(LeakError, match="withheld"):
        _guard()(message, _context(), handler)


def test_clean_reply_passes_and_is_audited(message, tmp_path):
    def handler(msg, context):
        return Message(RecordDict({"m": MetricRecord({"auc": 0.97})}), reply_to=msg)

    reply = _guard(tmp_path / "audit")(message, _context(), handler)
    assert reply.content["m"]["auc"] == 0.97
    written = list((tmp_path / "audit").glob("evaluate-1-reply-*.bin"))
    assert len(written) == 1 and b"auc" in written[0].read_bytes()


@given(
    data=st.binary(max_size=400)
    | st.text(alphabet="abcXYZ019_-.\x00\xff ", max_size=400).map(lambda t: t.encode("latin-1")),
    planted=st.lists(st.sampled_from(["Sub.Evil-Domain.net", "example.com", "ab.cd", "x.y"])),
)
def test_binary_search_reads_only_name_runs_and_finds_what_a_whole_scan_finds(data, planted):
    """The guard regexes only runs of name bytes (client/audit._name_runs), not the whole
    vector; that must never miss a name a scan of the whole decoded value would find."""
    names = frozenset({"evil-domain.net", "sub.evil-domain.net", "example.com", "ab.cd", "x.y"})
    value = data + b"".join(b"\x00" + name.encode() + b"\x00" for name in planted) + data
    whole = {
        name
        for name in _dotted(value.decode("latin-1").lower(), names)
        if len(name) >= MIN_BINARY_NAME_CHARS
    }
    assert leaked_names([], names, binary=[value]) == whole
    if any(len(name) >= MIN_BINARY_NAME_CHARS for name in planted):
        assert whole  # the planted names are found, so the comparison has teeth
