"""Run an Argo CD resource health script the way Argo CD does: Lua 5.1, `obj` a global table.

Argo CD embeds gopher-lua (a Lua 5.1 VM), so scripts run here under lupa's Lua 5.1 runtime with
no `os`/`io` libraries. JSON arrays become 1-based tables, objects become tables; JSON null
becomes nil (absent), as in Argo CD's conversion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lupa import lua51

ROOT = Path(__file__).resolve().parents[1]
OURS = ROOT / "examples" / "argocd" / "health.lua"
ARTICLE = ROOT / "tests" / "fixtures" / "argocd-article-health.lua"


class LuaHealthError(Exception):
    """The script raised a Lua error (Argo CD reports such a resource's health as unknown)."""


def article_script() -> str:
    """The health check published with the OpenKruise log-collection article, as quoted there."""
    return ARTICLE.read_text()


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from(
            {k: _to_lua(runtime, v) for k, v in value.items() if v is not None}
        )
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value if v is not None])
    return value


def health(script: str, obj: dict[str, Any]) -> dict[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    lua_globals = runtime.globals()
    for unsafe in ("os", "io", "require", "dofile", "loadfile", "load", "loadstring"):
        lua_globals[unsafe] = None
    lua_globals.obj = _to_lua(runtime, obj)
    try:
        result = runtime.execute(script)
    except lua51.LuaError as err:
        raise LuaHealthError(str(err)) from None
    return {"status": str(result["status"]), "message": str(result["message"] or "")}
