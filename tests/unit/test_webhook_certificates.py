"""The webhook serving certificate names the Service however long its namespace is."""

from __future__ import annotations

from cryptography import x509

from sidecarset.app import certificates
from sidecarset.shell import pki


def test_a_service_name_longer_than_a_common_name_still_gets_a_certificate() -> None:
    namespace = "n" * 63  # the longest a namespace can be
    hosts = certificates.service_hosts("sidecarset-webhook", namespace)
    ca = pki.CertificateAuthority("test-ca")
    serving = certificates.issue(ca, hosts, ())
    names = serving.certificate().extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == list(hosts)
