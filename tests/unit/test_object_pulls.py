"""Objects not uploaded yet are pulled again after 0.05 s, not flwr 1.42's 1 s, on both sides
(deploy/object_pulls.py for the SuperNode and ClientApps, server/polling.py for the ServerApp)."""

from __future__ import annotations

import functools
import importlib
from types import SimpleNamespace

import pytest

from deploy import object_pulls
from server import polling


def _late_object(available_after: float, contents: dict[str, bytes] | None = None):
    """A pull function over objects that land `available_after` s from now (as a store fills
    while its receiver pulls), and the times it was called at. Each object's content is in
    `contents`; without it, any id answers b"content"."""
    import time

    from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

    start = time.monotonic()
    tries = []

    def pull_object(object_id: str) -> bytes:
        tries.append(time.monotonic() - start)
        if time.monotonic() - start < available_after:
            raise ObjectUnavailableError(object_id)
        return b"content" if contents is None else contents[object_id]

    return pull_object, tries


@pytest.mark.parametrize(
    "patch", [object_pulls.prompt_object_pulls, polling.prompt_object_pulls], ids=["node", "server"]
)
def test_a_late_object_is_fetched_within_a_fraction_of_flwrs_first_backoff(patch):
    from flwr.supercore.inflatable import inflatable_utils

    module = SimpleNamespace(__name__="fake", pull_objects=inflatable_utils.pull_objects)
    patch(module)
    patch(module)  # twice is once
    assert isinstance(module.pull_objects, functools.partial)
    assert module.pull_objects.func is inflatable_utils.pull_objects
    pull_object, tries = _late_object(0.2)
    got = module.pull_objects(["a"], pull_object_fn=pull_object)
    assert got == {"a": b"content"}
    # flwr's own first retry comes after ~1 s; here the object is in hand well before that.
    assert tries[-1] < 0.6 and len(tries) >= 2


def test_the_patched_modules_are_the_ones_flwr_pulls_through():
    for name in (
        "flwr.superlink.grid.http_grid",
        "flwr.supernode.start_client_internal",
        "flwr.supercore.inflatable.inflatable_utils",
    ):
        module = importlib.import_module(name)
        assert callable(module.pull_objects), name
        object_pulls.prompt_object_pulls(
            SimpleNamespace(__name__=name, pull_objects=module.pull_objects)
        )


def test_a_flwr_without_the_backoff_parameters_is_refused_with_the_fix():
    module = SimpleNamespace(__name__="changed", pull_objects=lambda object_ids, pull_object_fn: {})
    with pytest.raises(RuntimeError, match="fix: install flwr==1.42.0"):
        object_pulls.prompt_object_pulls(module)


def _late_message_tree(available_after: float):
    """A real flwr object tree (a model's ArrayRecord, as a message holds) whose every object
    lands `available_after` s from now, with `_late_object`'s pull function and tries."""
    import numpy as np
    from flwr.app import ArrayRecord
    from flwr.supercore.inflatable.inflatable_object import (
        get_all_nested_objects,
        get_object_tree,
    )

    message = ArrayRecord([np.arange(6.0), np.ones((2, 3))])
    contents = {key: obj.deflate() for key, obj in get_all_nested_objects(message).items()}
    return (get_object_tree(message), *_late_object(available_after, contents))


def test_the_clientapps_message_pull_is_prompt_too():
    """run_clientapp pulls through pull_and_inflate_object_from_tree, which passes flwr's own
    1 s backoff to pull_objects: it has to be patched itself (on the run_clientapp module)."""
    from flwr.app import ArrayRecord
    from flwr.supernode.runtime import run_clientapp

    real = run_clientapp.pull_and_inflate_object_from_tree
    tree, pull_object, tries = _late_message_tree(0.2)
    real(tree, pull_object, lambda _: None, return_type=ArrayRecord)
    assert tries[-1] > 0.7  # flwr's own: the first retry after ~1 s (±20%)

    module = SimpleNamespace(__name__="run_clientapp", pull_and_inflate_object_from_tree=real)
    object_pulls.prompt_object_pulls(module)
    tree, pull_object, tries = _late_message_tree(0.2)
    got = module.pull_and_inflate_object_from_tree(
        tree, pull_object, lambda _: None, return_type=ArrayRecord
    )
    assert isinstance(got, ArrayRecord) and len(got) == 2
    assert tries[-1] < 0.6 and len(tries) >= 2
    assert callable(run_clientapp.pull_and_inflate_object_from_tree)  # the name app_guard patches


def test_a_module_with_neither_pull_is_refused_with_the_fix():
    with pytest.raises(RuntimeError, match="has none of pull_objects"):
        object_pulls.prompt_object_pulls(SimpleNamespace(__name__="empty"))
