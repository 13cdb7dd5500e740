"""Domain plugins: discovery through the entry-point group ``sciexplain.domains`` and dispatch.

The core imports no plugin. A plugin is a separate distribution (``sciexplain-eeg``,
``sciexplain-image``, ...) that registers one :class:`Domain` object::

    [project.entry-points."sciexplain.domains"]
    image = "sciexplain_image.domain:DOMAIN"

``sx.explain(model, data)`` with ``data`` that is not a tensor or array asks each installed
domain whether it ``claims`` the data and hands the call to the first that does (a domain
claims only its own native types, so at most one does). Data whose plugin is not installed gets
an error naming the distribution to install. See ``docs/plugins.md`` for the full contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import xarray as xr

from .errors import InputError, SciexplainError

__all__ = ["Domain", "load_domains", "domains", "dispatch", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "sciexplain.domains"

#: type-name prefixes of native data -> the distribution whose domain handles them
_HINTS = {
    "mne.": ("eeg", "sciexplain-eeg"),
    "PIL.": ("image", "sciexplain-image"),
    "av.": ("video", "sciexplain-video"),
}


class Domain:
    """Base class of a domain plugin's registered object. Subclass and fill in.

    Attributes
    ----------
    name : str
        Short domain name (``"eeg"``, ``"image"``); the entry-point name.
    distribution : str
        The installable distribution (``"sciexplain-eeg"``).
    default_preset : str or mapping
        The LRP preset that suits the domain's models.
    dims : tuple of str
        Dims of the relevance this domain returns, batch dim first.
    """

    name: str = ""
    distribution: str = ""
    default_preset: Any = "epsilon-plus"
    dims: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version(self.distribution)
        except PackageNotFoundError:
            return "unknown"

    def claims(self, data: Any) -> bool:
        """Whether ``data`` is this domain's native input (checked by type, never by content)."""
        raise NotImplementedError

    def to_tensor(self, data: Any, model: Any = None, **options: Any) -> tuple[Any, dict]:
        """Native data -> (batch tensor, {"dims": ..., "coords": ..., "attrs": ...})."""
        raise NotImplementedError

    def explain(self, model: Any, data: Any, **kwargs: Any) -> xr.DataArray:
        """Explain ``model`` on native ``data``; returns the relevance contract with domain labels."""
        raise NotImplementedError

    def removal(self, **options: Any) -> Callable | str:
        """The removal strategy for :func:`sciexplain.evaluate.perturbation_curve` in this domain."""
        return "uniform"

    def plot(self, R: xr.DataArray, sample: int = 0, **kwargs: Any):
        """The domain's main figure of one sample of an explanation (``R.relevance.plot()`` draws
        results whose ``attrs["domain"]`` names this domain with it); returns a matplotlib Figure."""
        raise NotImplementedError

    def demo(self, out: Path) -> dict:
        """Run the domain's end-to-end example on bundled real data into ``out``; return a summary."""
        raise NotImplementedError

    # -- pipelines (``sciexplain run FILE.toml``; see docs/plugins.md, "Pipelines") -------------
    def pipeline_loaders(self) -> dict[str, Callable[..., Mapping[str, Any]]]:
        """Data loaders by name: ``loader(**params) -> {"x" or "native", "dims", "coords", "y", ...}``."""
        return {}

    def pipeline_models(self) -> dict[str, Callable[..., Any]]:
        """Named models: ``factory(*, seed, **params) -> torch.nn.Module`` (trained or with shipped weights)."""
        return {}

    def pipeline_architectures(self) -> dict[str, Callable[..., Any]]:
        """Architectures a state dict is loaded into: ``build(**params) -> torch.nn.Module``."""
        return {}

    def pipeline_poolings(self) -> dict[str, Callable[..., Any]]:
        """Domain poolings: ``pool(R, data, model, **params) -> DataArray or Dataset``."""
        return {}

    def pipeline_figures(self) -> dict[str, Callable[..., Any]]:
        """Domain figures: ``figure(R, data, model, **params) -> matplotlib Figure``."""
        return {}


def load_domains() -> dict[str, Domain]:
    """Load every installed domain plugin (imports them; the core never does so by itself)."""
    found: dict[str, Domain] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as err:  # a broken plugin must not break the core
            raise SciexplainError(f"the sciexplain plugin {ep.name!r} ({ep.value}) failed to load: "
                                  f"{type(err).__name__}: {err}. Reinstall it or uninstall it.") from err
        if isinstance(obj, type):
            obj = obj()
        found[ep.name] = obj
    return found


def domains() -> dict[str, str]:
    """Installed domains and their distribution versions, without importing the plugins."""
    out = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        ver = ep.dist.version if ep.dist is not None else "?"
        out[ep.name] = f"{dist} {ver}"
    return out


def _type_names(data: Any) -> list[str]:
    return [f"{c.__module__}.{c.__qualname__}" for c in type(data).__mro__]


def dispatch(model: Any, data: Any, **kwargs: Any) -> xr.DataArray:
    """Hand ``sx.explain(model, data)`` to the installed domain that claims ``data``."""
    for domain in load_domains().values():
        if domain.claims(data):
            return domain.explain(model, data, **kwargs)
    names = _type_names(data)
    for prefix, (dom, dist) in _HINTS.items():
        if any(n.startswith(prefix) for n in names):
            raise InputError(f"data of type {names[0]} is handled by the {dom} plugin, which is not "
                             f"installed: pip install {dist} (or ./plugins/{dom} from the repository)")
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, str) for d in data):
        raise InputError("a list of documents is handled by the text plugin: pip install sciexplain-text")
    if isinstance(data, Mapping):
        raise InputError("x is a mapping; sciexplain explains one input tensor: pass a tensor or array")
    raise InputError(f"cannot explain data of type {names[0]}: pass a torch.Tensor or numpy array of shape "
                     f"(batch, ...), or data of a type an installed plugin claims ({sorted(domains()) or 'none installed'})")
