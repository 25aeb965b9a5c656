"""The model travels packed in one vector (common/weights.py, `pack`), and a site answers in
the form it was asked in: a message is 6 Fleet objects instead of 30, the same values."""

from __future__ import annotations

import numpy as np
from flwr.app.message_type import MessageType
from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from common import weights
from common.model import ModelSpec, array_shapes, build_model, model_to_ndarrays
from common.protocol import SERVER_ROUND

OVERRIDES = {"local-steps": 2, "site-html": "off", "seed": 0, "mode": "fedavg"}


def _train(grid, node: int, arrays: list[np.ndarray]) -> list[np.ndarray]:
    ask = FitIns(ndarrays_to_parameters(arrays), {SERVER_ROUND: 1})
    message = grid.create_message(
        compat.fitins_to_recorddict(ask, True), MessageType.TRAIN, node, "1"
    )
    (reply,) = grid.send_and_receive([message])
    assert not reply.has_error(), reply.error
    return parameters_to_ndarrays(compat.recorddict_to_fitres(reply.content, False).parameters)


def test_a_site_answers_packed_when_asked_packed_with_the_same_update(tmp_path):
    import client.app
    from experiments.generator import generate_sites
    from experiments.inprocess import LocalGrid
    from experiments.simulate import run_settings

    data = tmp_path / "sites"
    generate_sites(out_dir=data, n_sites=1, n_days=2, seed=4, scale=0.05)
    settings = run_settings(data_dir=data, out_dir=tmp_path / "run", overrides=OVERRIDES)
    grid = LocalGrid(client_app=client.app.app, num_nodes=1, run_config=settings.to_run_config())
    node = next(iter(grid.contexts))
    model = model_to_ndarrays(build_model(ModelSpec(), seed=0))
    layout = array_shapes(ModelSpec())

    by_layer = _train(grid, node, model)
    assert weights.shapes(by_layer) == layout  # asked layer by layer: answered so
    packed = _train(grid, node, weights.pack(model))
    assert len(packed) == 1 and packed[0].shape == (sum(a.size for a in model),)
    # Training is deterministic for a seed and round: the same update, in the other form.
    assert np.array_equal(packed[0], weights.pack(by_layer)[0])
