"""Endpoint URLs: https on public addresses only, whatever the name resolves to."""

from __future__ import annotations

import pytest

from shared.providers.endpoints import EndpointRefused, check_endpoint_url


def _resolver(mapping: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in mapping:
            raise OSError("no such host")
        return mapping[host]

    return resolve


PUBLIC = _resolver({"api.example.com": ["93.184.216.34"], "rebind.example.com": ["93.184.216.34", "10.0.0.5"]})


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com/v1",
        "https://127.0.0.1/v1",
        "https://[::1]/v1",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/v1",
        "https://172.16.0.1/v1",
        "https://192.168.1.1/v1",
        "https://100.64.0.1/v1",
        "https://0.0.0.0/v1",
        "https://[::ffff:127.0.0.1]/v1",
        "https://[fe80::1]/v1",
        "https://[2002:a9fe:a9fe::1]/v1",  # 6to4 around 169.254.169.254
        "https://[2002:a00:1::1]/v1",  # 6to4 around 10.0.0.1
        "https://localhost/v1",
        "https://rebind.example.com/v1",
        "https://unknown.example.com/v1",
        "https://user:pw@api.example.com/v1",
        "ftp://api.example.com/",
        "https:///nohost",
    ],
)
def test_endpoint_is_refused_when_not_https_on_a_public_address(url):
    with pytest.raises(EndpointRefused):
        check_endpoint_url(url, resolver=PUBLIC)


def test_endpoint_is_allowed_with_its_addresses_when_https_on_a_public_address():
    assert check_endpoint_url("https://api.example.com/v1", resolver=PUBLIC) == ["93.184.216.34"]
    assert check_endpoint_url("https://8.8.8.8:8443/v1", resolver=PUBLIC) == ["8.8.8.8"]
    assert check_endpoint_url("https://[2002:808:808::1]/v1", resolver=PUBLIC) == ["2002:808:808::1"]


@pytest.mark.parametrize("region", ["us-east-١", "eu-west-٣"])
def test_a_resource_region_is_refused_unless_its_digit_is_ascii(region):
    from pydantic import ValidationError

    from shared.services.catalog import ResourceIn, ResourcePatch

    assert ResourcePatch(region="us-east-1").region == "us-east-1"
    with pytest.raises(ValidationError):
        ResourceIn(resource_name="r", resource_type="bedrock", region=region)
    with pytest.raises(ValidationError):
        ResourcePatch(region=region)
