"""Config parsing shared by the ``rabbitmq`` kinds: a bad config is a permanent error that
names fields, never values (any of them may be a secret)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from stackyard.errors import ProviderPermanentError
from stackyard.providers.api import ResourceMeta

_M = TypeVar("_M", bound=pydantic.BaseModel)


def parse(model: type[_M], meta: ResourceMeta, config: Mapping[str, Any]) -> _M:
    """``config`` validated by ``model``."""
    try:
        return model.model_validate(dict(config))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()
        )
        raise ProviderPermanentError(f"Invalid config: {problems}", address=meta.address) from None
