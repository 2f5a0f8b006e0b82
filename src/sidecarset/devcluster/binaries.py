"""Where the control plane's binaries are, and a clear message when they are not.

They are built from pinned Go modules by `tools/build_testbin.py` (`make testbin`) into a
git-ignored folder; `SIDECARSET_TESTBIN` points elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def project_root() -> Path | None:
    """The checkout this package runs from (editable install), if it is one."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "tools" / "build_testbin.py").is_file() else None


def default_dir() -> Path:
    env = os.environ.get("SIDECARSET_TESTBIN")
    if env:
        return Path(env)
    root = project_root()
    return (root or Path.cwd()) / ".testbin"


class BinariesMissing(Exception):
    pass


@dataclass(frozen=True)
class Binaries:
    directory: Path

    def path(self, component: str) -> Path:
        return self.directory / component

    @classmethod
    def locate(cls, directory: Path | None = None) -> Binaries:
        found = cls((directory or default_dir()).resolve())
        missing = [c for c in COMPONENTS if not os.access(found.path(c), os.X_OK)]
        if missing:
            raise BinariesMissing(
                f"control-plane binaries missing in {found.directory}: {', '.join(missing)}; "
                "build them with `make testbin` (python3 tools/build_testbin.py, 20-40 min cold)"
            )
        return found
