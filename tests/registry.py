"""What the example registries must cover (torch's ``test_has_examples`` idea)."""

import inspect
from types import ModuleType

import torch.distributions as td


def public_classes(module: ModuleType) -> set[type]:
    """The distribution classes a module exports in ``__all__`` (aliases counted once)."""
    objects = (getattr(module, name) for name in module.__all__)
    return {obj for obj in objects if inspect.isclass(obj) and issubclass(obj, td.Distribution)}
