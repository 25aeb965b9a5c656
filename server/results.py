"""The run's record on disk: results.json after every round, and a checkpoint per round."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so a reader or a crash never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp_name, 0o666 & ~umask)  # mkstemp's 0600 would hide results from the team
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """NaN and inf are not JSON: write them as null (a metric that could not be computed)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


class RunRecorder:
    """Collects what each round produced and keeps `results.json` current on disk."""

    def __init__(self, out_dir: Path, *, config: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.config = dict(config)
        self.rounds: dict[int, dict[str, Any]] = {}

    def load_completed(self, *, up_to_round: int) -> None:
        """On resume: keep the rounds a previous process completed, drop anything later."""
        path = self.out_dir / "results.json"
        if not path.is_file():
            return
        previous = json.loads(path.read_text())
        self.rounds = {entry["round"]: entry for entry in previous.get("rounds", [])
                       if entry["round"] <= up_to_round}

    def _round(self, server_round: int) -> dict[str, Any]:
        return self.rounds.setdefault(
            server_round,
            {"round": server_round, "train": {}, "sites": {}, "aggregate": {}},
        )

    def record_train(self, server_round: int, train: dict[str, Any]) -> None:
        self._round(server_round)["train"] = train

    def record_evaluate(
        self, server_round: int, *, sites: dict[str, dict[str, Any]], aggregate: dict[str, Any]
    ) -> None:
        entry = self._round(server_round)
        entry["sites"] = sites
        entry["aggregate"] = aggregate

    def record_timing(self, server_round: int, **seconds: float) -> None:
        self._round(server_round).setdefault("seconds", {}).update(seconds)

    def document(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "rounds": [self.rounds[key] for key in sorted(self.rounds)],
        }

    def flush(self) -> Path:
        path = self.out_dir / "results.json"
        text = json.dumps(_json_safe(self.document()), indent=2, sort_keys=True)
        write_atomic(path, text.encode() + b"\n")
        return path
