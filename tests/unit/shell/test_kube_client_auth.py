"""Credentials reach the request: a kubeconfig token (as a ServiceAccount token is) is sent as
the Authorization header, not dropped (which would make every request anonymous)."""

from __future__ import annotations

from pathlib import Path

import yaml

from sidecarset.shell.kube.client import KubeClient


async def test_a_kubeconfig_token_is_sent_as_a_bearer_header(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://127.0.0.1:1",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "sa", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sa"}}],
                "current-context": "c",
            }
        )
    )
    async with await KubeClient.from_kubeconfig(str(kubeconfig)) as client:
        headers = await client._headers(None)
    assert headers["Authorization"] == "Bearer t0ken"
