"""The SSRF policy on its own: literal addresses, resolution answers, exemptions (no network)."""

from __future__ import annotations

import ipaddress
import socket

import httpx
import pytest

from app.core.config import Settings
from app.core.media.download import (
    CheckedURL,
    DownloadPolicy,
    HostResolutionError,
    check_url_allowed,
    is_forbidden_address,
    normalize_host,
)
from app.core.media.errors import MediaForbiddenHost


class FixedResolver:
    """DNS answers from a table; unknown names fail like getaddrinfo does."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


async def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"DNS must not be used for {host}")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/x",
        "http://172.16.5.4/x",
        "http://192.168.1.10/x",
        "http://127.0.0.1:8000/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://224.0.0.251/",  # multicast
        "http://255.255.255.255/",
        "http://240.0.0.1/",  # reserved
        "http://[::1]/",
        "http://[::]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[ff02::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://[2002:a00:1::]/",  # 6to4 of 10.0.0.1
        "https://10.0.0.1:8443/secure",
    ],
)
async def test_literal_private_addresses_are_refused_without_dns(url: str) -> None:
    with pytest.raises(MediaForbiddenHost) as info:
        await check_url_allowed(url, DownloadPolicy(resolver=no_dns))
    assert info.value.status_code == 422
    assert info.value.code == "forbidden_url"


@pytest.mark.parametrize("url", ["http://93.184.215.14/a.mp4", "https://[2606:4700::6810:84e5]/"])
async def test_literal_public_addresses_are_allowed(url: str) -> None:
    checked = await check_url_allowed(url, DownloadPolicy(resolver=no_dns))
    assert checked.addresses == (str(ipaddress.ip_address(checked.host)),)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.mp4",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "data:text/plain,hello",
        "http:///nohost",
        "not a url",
    ],
)
async def test_non_http_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(MediaForbiddenHost):
        await check_url_allowed(url, DownloadPolicy(resolver=no_dns))


async def test_any_private_answer_refuses_the_host() -> None:
    resolver = FixedResolver(
        {"mixed.test": ["93.184.215.14", "10.1.2.3"], "public.test": ["93.184.215.14"]}
    )
    policy = DownloadPolicy(resolver=resolver)
    with pytest.raises(MediaForbiddenHost, match=r"mixed\.test resolves to a private"):
        await check_url_allowed("https://mixed.test/video.mp4", policy)
    checked = await check_url_allowed("https://public.test/video.mp4", policy)
    assert checked.addresses == ("93.184.215.14",)
    assert resolver.calls == [("mixed.test", 443), ("public.test", 443)]


async def test_localhost_by_name_is_refused_through_real_resolution() -> None:
    # Real getaddrinfo (answered from /etc/hosts, no network needed).
    with pytest.raises(MediaForbiddenHost):
        await check_url_allowed("http://localhost:9/x", DownloadPolicy())


async def test_decimal_ip_notation_is_resolved_and_refused() -> None:
    # 2130706433 == 127.0.0.1; httpx treats it as a name and getaddrinfo maps it back.
    with pytest.raises(MediaForbiddenHost):
        await check_url_allowed("http://2130706433/", DownloadPolicy())


async def test_unresolvable_host_is_a_transient_resolution_error() -> None:
    with pytest.raises(HostResolutionError) as info:
        await check_url_allowed(
            "https://nowhere.test/x", DownloadPolicy(resolver=FixedResolver({}))
        )
    assert info.value.transient is True


async def test_exempt_hosts_skip_dns_and_the_address_check() -> None:
    trusted = {"simulator.internal", "https://Upstream.Example:8443/v1"}
    allowed = {"10.0.0.1", "*.corp.test", "Media.Example.", "[::1]"}
    policy = DownloadPolicy(trusted_hosts=trusted, allowed_hosts=allowed, resolver=no_dns)
    for url in [
        "http://simulator.internal/files/a.mp4",
        "https://upstream.example/v1/x",
        "http://10.0.0.1/x",
        "http://cdn.corp.test/x",
        "http://a.b.corp.test/x",
        "http://MEDIA.example/x",
        "http://media.example./x",
        "http://[::1]:8080/x",
    ]:
        checked = await check_url_allowed(url, policy)
        assert checked.addresses == (), url
    # The wildcard covers subdomains only; other names and literals get the full check.
    everything_private = DownloadPolicy(
        trusted_hosts=trusted,
        allowed_hosts=allowed,
        resolver=FixedResolver({"corp.test": ["10.9.9.9"], "evilcorp.test": ["10.9.9.9"]}),
    )
    for url in ["http://corp.test/x", "http://evilcorp.test/x", "http://10.0.0.2/x"]:
        with pytest.raises(MediaForbiddenHost):
            await check_url_allowed(url, everything_private)


async def test_policy_from_settings_uses_the_allowed_hosts_setting(settings: Settings) -> None:
    configured = settings.model_copy(update={"media_download_allowed_hosts": ["files.lan"]})
    policy = DownloadPolicy.from_settings(configured, trusted_hosts=["api.upstream.test"])
    assert policy.allowed_hosts == frozenset({"files.lan"})
    assert policy.trusted_hosts == frozenset({"api.upstream.test"})
    assert policy.is_exempt("FILES.lan")
    assert not policy.is_exempt("other.lan")


def test_a_single_string_is_not_accepted_as_a_host_set() -> None:
    with pytest.raises(TypeError):
        DownloadPolicy(allowed_hosts="example.com")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("example.com:8080", "example.com"),
        ("[::1]", "::1"),
        ("[::1]:443", "::1"),
        ("https://Files.Example:8443/path", "files.example"),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_normalize_host(value: str, expected: str) -> None:
    assert normalize_host(value) == expected


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
        ("::ffff:8.8.8.8", True),  # mapped addresses never come from honest DNS answers
        ("192.0.2.1", True),  # documentation range
        ("198.18.0.1", True),  # benchmarking range
        ("fec0::1", True),  # site-local
    ],
)
def test_is_forbidden_address(address: str, forbidden: bool) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address)) is forbidden


def test_request_target_pins_address_and_keeps_name_for_host_and_sni() -> None:
    checked = CheckedURL(
        httpx.URL("https://cdn.example:8443/v.mp4?sig=1"),
        "cdn.example",
        ("93.184.215.14", "2606:4700::6810:84e5"),
    )
    url, headers, extensions = checked.request_target()
    assert str(url) == "https://93.184.215.14:8443/v.mp4?sig=1"
    assert headers == {"Host": "cdn.example:8443"}
    assert extensions == {"sni_hostname": "cdn.example"}
    url, _, _ = checked.request_target(attempt=1)
    assert str(url) == "https://[2606:4700::6810:84e5]:8443/v.mp4?sig=1"
    plain = CheckedURL(httpx.URL("http://cdn.example/v.mp4"), "cdn.example", ("93.184.215.14",))
    assert plain.request_target()[2] == {}
    exempt = CheckedURL(httpx.URL("http://simulator.internal/v.mp4"), "simulator.internal")
    assert exempt.request_target() == (exempt.url, {}, {})
