"""Links answered without a network, for what no real server on loopback can stand in for: a host
on the public internet (every loopback server is, rightly, refused by the download policy).

``PUBLIC`` is a literal public address, so the policy's name lookup needs no DNS; the mock
transport answers for it and records every URL the client really requested.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

PUBLIC = "http://93.184.216.34"
PRIVATE_LINKS = (  # one of each kind the policy refuses, for links and for redirects to them
    "http://127.0.0.1/x.png",
    "http://10.0.0.8/x.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://localhost/x.png",
    "http://[::1]/x.png",
    "http://[::ffff:169.254.169.254]/x.png",
)


def recording_client(
    handler: Callable[[httpx.Request], httpx.Response],
) -> tuple[httpx.AsyncClient, list[str]]:
    """A client whose every request goes to ``handler``; the list fills with the URLs requested."""
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return handler(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(record), trust_env=False), seen
