"""How each watched resource is held in memory: decoders from list/watch bytes to projections.

- SidecarSets: the raw object in its internal (v1alpha1) form, whichever version it was read
  through (needed to compute revisions and status writes), plus the parsed model. One that
  fails to parse (stored before our webhook existed) is kept with its error, so it is reported
  instead of silently ignored.
- Namespaces: name and labels only (namespaceSelector matching).
- Pods: `core.podview.PodView`, decoded straight from the stream; unknown fields never become
  Python objects (about 3 KB a pod instead of 60 KB for a full dict).
- ControllerRevisions: whole objects, few and small.
- ConfigMaps: the whitelist ConfigMaps only (a field selector names each), whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from sidecarset.core import conversion, model
from sidecarset.core.errors import ModelError
from sidecarset.core.podview import PodView
from sidecarset.shell.informer import DictCodec, ListPage, StructCodec, WatchEvent
from sidecarset.shell.store import Key


@dataclass(frozen=True, slots=True)
class SidecarSetEntry:
    raw: dict[str, Any]
    sidecarset: model.SidecarSet | None
    error: str = ""

    @property
    def name(self) -> str:
        return str(self.raw.get("metadata", {}).get("name", ""))


def entry(raw: dict[str, Any]) -> SidecarSetEntry:
    try:
        internal = conversion.to_internal(raw)
    except conversion.ConversionError as err:
        return SidecarSetEntry(raw, None, str(err))
    try:
        return SidecarSetEntry(internal, model.parse_sidecarset(internal))
    except ModelError as err:
        return SidecarSetEntry(internal, None, str(err))


class SidecarSetCodec:
    _dicts = DictCodec()

    def decode_list(self, page: bytes) -> ListPage[SidecarSetEntry]:
        listed = self._dicts.decode_list(page)
        return ListPage(listed.resource_version, [entry(item) for item in listed.items])

    def decode_event(self, line: bytes) -> WatchEvent[SidecarSetEntry]:
        event = self._dicts.decode_event(line)
        obj = entry(event.obj) if event.obj is not None else None
        return WatchEvent(
            event.type, event.resource_version, obj, event.code, event.message, event.reason
        )

    def key(self, obj: SidecarSetEntry) -> Key:
        return obj.name


class NamespaceMeta(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    name: str = ""
    resource_version: str = ""
    labels: dict[str, str] = {}


class NamespaceView(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    metadata: NamespaceMeta = NamespaceMeta()


NAMESPACE_CODEC: StructCodec[NamespaceView] = StructCodec(NamespaceView)


POD_CODEC: StructCodec[PodView] = StructCodec(PodView)

REVISION_CODEC = DictCodec()

CONFIGMAP_CODEC = DictCodec()
