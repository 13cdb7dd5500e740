"""The text domain object registered under ``sciexplain.domains`` (see ``docs/plugins.md``).

It only connects the core's dispatch to the plugin's functions; ``explain`` and ``demo`` never
import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sciexplain.plugins import Domain

from .deletion import delete_tokens
from .documents import Documents
from .errors import TextInputError
from .explain import DEFAULT_PRESET, DIMS, explain_documents, prepare_documents

__all__ = ["TextDomain", "DOMAIN"]


class TextDomain(Domain):
    """Documents (:class:`~sciexplain_text.Documents`) explained word by word."""

    name = "text"
    distribution = "sciexplain-text"
    default_preset = DEFAULT_PRESET
    dims = DIMS

    def claims(self, data: Any) -> bool:
        return isinstance(data, Documents)

    def to_tensor(self, data: Any, model: Any = None, **options: Any):
        docs = prepare_documents(data, model) if model is not None else data
        return docs.ids, {"dims": DIMS, "coords": docs.coords(), "attrs": docs.attrs()}

    def explain(self, model: Any, data: Any, **kwargs: Any):
        if kwargs.get("dims") is not None or kwargs.get("coords") is not None:
            raise TextInputError("text explanations set dims and coords themselves; do not pass dims=/coords=")
        kwargs = {k: v for k, v in kwargs.items() if k not in ("dims", "coords")}
        for key in ("at", "through", "bounds"):
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
        if kwargs.get("max_pool") == "winner-take-all":
            kwargs.pop("max_pool")
        target = kwargs.pop("target", None)
        return explain_documents(model, data, target, **kwargs)

    def removal(self, pad_id: int = 0, **options: Any):
        """Delete words by replacing their ids with the zero padding embedding."""
        def remove(x_batch, mask):
            return delete_tokens(x_batch, mask, pad_id)
        return remove

    def plot(self, R, **kwargs: Any):
        from .plots import plot_document
        return plot_document(R, **kwargs)

    def demo(self, out: Path) -> dict:
        from .demo import run_demo
        return run_demo(out)


DOMAIN = TextDomain()
