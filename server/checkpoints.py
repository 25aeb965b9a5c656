"""Global model checkpoints: one file per completed round, written atomically."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

import numpy as np

from common.files import write_atomic
from common.model import (
    ModelSpec,
    model_from_bytes,
    model_to_bytes,
    model_to_ndarrays,
    ndarrays_to_model,
)

_ROUND_FILE = re.compile(r"^round-(\d{3,})\.npz$")


class CheckpointStore:
    """`checkpoints/round-NNN.npz`: the global model after round NNN (with server momentum on,
    `velocity-NNN.npz` beside it: the coordinator's velocity after that round)."""

    def __init__(self, directory: Path, *, spec: ModelSpec) -> None:
        self.directory = directory
        self.spec = spec

    def path_for(self, server_round: int) -> Path:
        return self.directory / f"round-{server_round:03d}.npz"

    def velocity_path(self, server_round: int) -> Path:
        return self.directory / f"velocity-{server_round:03d}.npz"

    def save(
        self,
        server_round: int,
        arrays: list[np.ndarray],
        *,
        velocity: list[np.ndarray] | None = None,
    ) -> Path:
        """The model after a completed round (and the server velocity, if any), then its state
        file (the commit point)."""
        path = self.path_for(server_round)
        write_atomic(path, model_to_bytes(ndarrays_to_model(arrays, spec=self.spec)))
        if velocity is not None:
            buffer = io.BytesIO()
            np.savez(buffer, *velocity)
            write_atomic(self.velocity_path(server_round), buffer.getvalue())
        # Python's `random` drives SecAgg+'s neighbour shuffle; keep it so a resumed run
        # draws what an uninterrupted one would have drawn.
        state = {"round": server_round, "python_random": _jsonable(random.getstate())}
        write_atomic(path.with_suffix(".state.json"), json.dumps(state).encode())
        return path

    def load(self, server_round: int) -> list[np.ndarray]:
        """Restore the model of a completed round and the RNG state saved with it."""
        model, spec = model_from_bytes(self.path_for(server_round).read_bytes())
        if spec != self.spec:
            raise ValueError(
                f"{self.path_for(server_round)}: saved with {spec}, run uses "
                f"{self.spec} (fix: resume with the same model settings)"
            )
        state = json.loads(self.path_for(server_round).with_suffix(".state.json").read_text())
        random.setstate(_tupled(state["python_random"]))
        return model_to_ndarrays(model)

    def load_velocity(self, server_round: int) -> list[np.ndarray] | None:
        """The server velocity saved with a completed round; None if that run kept none."""
        path = self.velocity_path(server_round)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as saved:
            return [saved[f"arr_{index}"] for index in range(len(saved.files))]

    def save_final(self, arrays: list[np.ndarray], path: Path) -> Path:
        write_atomic(path, model_to_bytes(ndarrays_to_model(arrays, spec=self.spec)))
        return path

    def completed_rounds(self) -> list[int]:
        """Rounds whose model and state file both exist (a crash between them is no round)."""
        if not self.directory.is_dir():
            return []
        found = (_ROUND_FILE.match(p.name) for p in self.directory.iterdir())
        rounds = sorted(int(match.group(1)) for match in found if match)
        return [r for r in rounds if self.path_for(r).with_suffix(".state.json").is_file()]


def _jsonable(value):
    return [_jsonable(item) for item in value] if isinstance(value, tuple | list) else value


def _tupled(value):
    return tuple(_tupled(item) for item in value) if isinstance(value, list) else value
