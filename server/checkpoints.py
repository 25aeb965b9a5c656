"""Global model checkpoints: one file per completed round, written atomically."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common.model import ModelSpec, model_to_bytes, ndarrays_to_model
from server.results import write_atomic

_ROUND_FILE = re.compile(r"^round-(\d{3,})\.npz$")


class CheckpointStore:
    """`checkpoints/round-NNN.npz`: the global model after round NNN."""

    def __init__(self, directory: Path, *, spec: ModelSpec) -> None:
        self.directory = directory
        self.spec = spec

    def path_for(self, server_round: int) -> Path:
        return self.directory / f"round-{server_round:03d}.npz"

    def save(self, server_round: int, arrays: list[np.ndarray]) -> Path:
        path = self.path_for(server_round)
        write_atomic(path, model_to_bytes(ndarrays_to_model(arrays, spec=self.spec)))
        return path

    def save_final(self, arrays: list[np.ndarray], path: Path) -> Path:
        write_atomic(path, model_to_bytes(ndarrays_to_model(arrays, spec=self.spec)))
        return path

    def completed_rounds(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (_ROUND_FILE.match(p.name) for p in self.directory.iterdir())
        return sorted(int(match.group(1)) for match in found if match)
