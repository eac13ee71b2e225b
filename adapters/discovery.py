"""Finding adapter plug-ins: every class published under the `qihub.adapters` entry-point group.

Built-in adapters are found the same way as a third party's. A plug-in that cannot be imported, is not an
`Adapter`, or declares a manifest that is invalid or names itself differently from its entry point is listed
with its error in the catalog and otherwise ignored: one broken package never stops the hub.
"""

import inspect
import threading
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import jsonschema

from adapters.framework import Adapter, AdapterManifest
from storage.errors import InvalidInputError

ENTRY_POINT_GROUP = "qihub.adapters"


@dataclass(frozen=True)
class PluginLoadError:
    """A plug-in the hub found but could not use, and why."""

    name: str
    target: str  # the entry point's "module:attribute"
    distribution: str | None
    error: str


@dataclass(frozen=True)
class PluginInfo:
    """Where a usable plug-in came from."""

    name: str
    target: str
    distribution: str | None
    adapter: type[Adapter]


@dataclass(frozen=True)
class AdapterCatalog:
    """The plug-ins found in this environment: the usable ones and the load errors of the others."""

    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    errors: list[PluginLoadError] = field(default_factory=list)


class UnknownAdapterError(InvalidInputError):
    """No usable plug-in has this entry-point name."""

    code = "unknown-adapter"
    title = "Unknown adapter"


_lock = threading.Lock()
_cached: AdapterCatalog | None = None


def _distribution(entry_point: EntryPoint) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return None if dist is None else f"{dist.name} {dist.version}"


def _check(entry_point: EntryPoint, loaded: object) -> type[Adapter]:
    """The plug-in class if it honours the contract; raises ValueError saying what is wrong otherwise."""
    if not (inspect.isclass(loaded) and issubclass(loaded, Adapter)):
        raise ValueError(f"{entry_point.value} is not a subclass of adapters.framework.Adapter")
    if inspect.isabstract(loaded):
        missing = ", ".join(sorted(getattr(loaded, "__abstractmethods__", ())))
        raise ValueError(f"{entry_point.value} does not implement: {missing}")
    manifest = getattr(loaded, "manifest", None)
    if not isinstance(manifest, AdapterManifest):
        raise ValueError(f"{entry_point.value} has no AdapterManifest `manifest`")
    # Re-validated: a manifest built with model_construct or changed after creation is not trusted.
    AdapterManifest.model_validate(manifest.model_dump())
    jsonschema.Draft202012Validator.check_schema(manifest.config_schema)
    if manifest.name != entry_point.name:
        raise ValueError(f"the manifest names itself {manifest.name!r} but is published as {entry_point.name!r}")
    return loaded


def _scan() -> AdapterCatalog:
    catalog = AdapterCatalog()
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        distribution = _distribution(entry_point)
        try:
            if entry_point.name in catalog.plugins:
                raise ValueError(f"another plug-in is already published as {entry_point.name!r}")
            adapter = _check(entry_point, entry_point.load())
        except Exception as error:  # a broken plug-in is reported, never fatal
            catalog.errors.append(
                PluginLoadError(
                    name=entry_point.name,
                    target=entry_point.value,
                    distribution=distribution,
                    error=f"{type(error).__name__}: {error}"[:2000],
                )
            )
            continue
        catalog.plugins[entry_point.name] = PluginInfo(
            name=entry_point.name, target=entry_point.value, distribution=distribution, adapter=adapter
        )
    return catalog


def adapter_catalog(*, refresh: bool = False) -> AdapterCatalog:
    """Usable plug-ins and load errors (scanned once per process; `refresh` scans again)."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            _cached = _scan()
        return _cached


def discover_adapters(*, refresh: bool = False) -> dict[str, type[Adapter]]:
    """Entry-point name → adapter class, for every plug-in that loads and has a valid manifest."""
    return {name: info.adapter for name, info in adapter_catalog(refresh=refresh).plugins.items()}


def get_adapter_class_or_raise(name: str) -> type[Adapter]:
    """The plug-in class published as `name`, else UnknownAdapterError (with its load error if it has one)."""
    catalog = adapter_catalog()
    info = catalog.plugins.get(name)
    if info is not None:
        return info.adapter
    failed = next((error for error in catalog.errors if error.name == name), None)
    if failed is not None:
        raise UnknownAdapterError(
            f"The adapter plug-in {name!r} is installed but cannot be used: {failed.error}",
            extra={"adapter": name},
        )
    raise UnknownAdapterError(
        f"No adapter plug-in is published as {name!r}; known: {', '.join(sorted(catalog.plugins)) or 'none'}.",
        extra={"adapter": name},
    )
