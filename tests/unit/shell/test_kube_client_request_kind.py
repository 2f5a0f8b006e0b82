"""request_kind: how the client labels its requests in `sidecarset_api_requests_total`."""

from __future__ import annotations

import pytest

from sidecarset.shell.kube.client import request_kind


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        pytest.param("GET", "/api/v1/pods", ("LIST", "pods"), id="cluster-list"),
        pytest.param("GET", "/api/v1/namespaces/a/pods", ("LIST", "pods"), id="namespaced-list"),
        pytest.param("PATCH", "/api/v1/namespaces/a/pods/p", ("PATCH", "pods"), id="patch"),
        pytest.param(
            "PATCH", "/api/v1/namespaces/a/pods/p/status", ("PATCH", "pods/status"), id="status"
        ),
        pytest.param("GET", "/api/v1/namespaces/a", ("GET", "namespaces"), id="namespace-get"),
        pytest.param("GET", "/api/v1/namespaces", ("LIST", "namespaces"), id="namespace-list"),
        pytest.param(
            "PATCH",
            "/apis/apps.kruise.io/v1alpha1/sidecarsets/s/status",
            ("PATCH", "sidecarsets/status"),
            id="cluster-scoped-status",
        ),
        pytest.param(
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
            ("PUT", "leases"),
            id="group",
        ),
        pytest.param("GET", "/metrics", ("GET", ""), id="not-an-api-path"),
    ],
)
def test_requests_are_labelled_by_verb_and_resource(
    method: str, path: str, expected: tuple[str, str]
) -> None:
    assert request_kind(method, path) == expected
