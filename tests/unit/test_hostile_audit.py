"""A hostile coordinator names the audit copies (issue 18): they stay inside the audit folder.

The reply guard names each audit copy after the message's type, its `group_id` and the
SecAgg+ stage, all chosen by the coordinator. Whatever those hold (`..`, `/`, an absolute
path, NUL, glob characters, thousands of characters), the copy lands directly in the audit
folder, under a short safe name, and never replaces an earlier copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.audit import MAX_AUDIT_STEM, audit_stem, make_reply_guard, write_audit_copy

HOSTILE_IDS = [
    "../../x",
    "..",
    "/etc/passwd",
    "/tmp/../../root/.ssh/authorized_keys",
    "a\x00b",
    "x" * 5000,
    "*",
    "[a-z]?",
    "C:\\Windows\\x",
    "\u2025\u2025/\u2215x",  # look-alike dots and slashes
    "",
]


def _message(group_id: str, stage: object = None) -> Message:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    content = RecordDict({"config": ConfigRecord({"server-round": 1})})
    if stage is not None:
        content[RECORD_KEY_CONFIGS] = ConfigRecord({Key.STAGE: stage})
    return Message(content=content, dst_node_id=7, message_type="train", group_id=group_id)


def _context() -> Context:
    return Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})


def _reply(msg: Message, context: Context) -> Message:
    return Message(RecordDict({"m": MetricRecord({"auc": 0.9})}), reply_to=msg)


def _audited(tmp_path: Path, group_id: str, stage: object = None) -> list[Path]:
    audit = tmp_path / "work" / "audit"
    guard = make_reply_guard(site_names=lambda _: frozenset(), audit_dir=lambda _: audit)
    guard(_message(group_id, stage), _context(), _reply)
    everything = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert all(path.parent == audit for path in everything), everything
    return everything


@pytest.mark.parametrize("group_id", HOSTILE_IDS)
def test_hostile_group_ids_write_one_short_file_inside_the_audit_folder(
    tmp_path: Path, group_id: str
) -> None:
    (written,) = _audited(tmp_path, group_id)
    assert len(written.name) <= MAX_AUDIT_STEM + len("-0.bin")
    assert written.name.startswith("train-") and written.name.endswith("-0.bin")


@pytest.mark.parametrize("stage", ["../../../evil", "/abs", "a\x00", "z" * 3000])
def test_hostile_stages_stay_inside_too(tmp_path: Path, stage: str) -> None:
    assert len(_audited(tmp_path, "1", stage)) == 1


def test_an_earlier_copy_is_never_overwritten(tmp_path: Path) -> None:
    audit = tmp_path / "work" / "audit"
    audit.mkdir(parents=True)
    earlier = audit / "train-1-reply-1.bin"  # copy 0 was removed; copy 1 is kept
    earlier.write_bytes(b"earlier")
    first = write_audit_copy(audit, "train-1-reply", b"new")
    second = write_audit_copy(audit, "train-1-reply", b"newer")
    assert earlier.read_bytes() == b"earlier"
    assert {first.read_bytes(), second.read_bytes()} == {b"new", b"newer"}


def test_an_unsafe_stem_is_refused(tmp_path: Path) -> None:
    for stem in ["../x", "a/b", "", "x" * (MAX_AUDIT_STEM + 1)]:
        with pytest.raises(ValueError, match="safe token"):
            write_audit_copy(tmp_path, stem, b"")
    assert not any(tmp_path.iterdir())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(message_type=st.text(max_size=50), group_id=st.text(), stage=st.text(max_size=50))
def test_fuzz_audit_stem_is_one_safe_token(message_type: str, group_id: str, stage: str) -> None:
    stem = audit_stem(message_type, group_id, stage)
    assert 0 < len(stem) <= MAX_AUDIT_STEM
    assert "/" not in stem and "\\" not in stem and "\x00" not in stem and ".." not in stem
    assert Path(stem).name == stem and stem not in {".", ".."}
