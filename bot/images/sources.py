"""Where the CLI's ``--image`` sources come from: a local file, or a link fetched under the
download policy of ``bot.downloads`` (public addresses only, capped, redirects re-checked).
Every failure is an InputImageError whose message is safe to show: the host alone, never
credentials or a query string."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from bot import downloads
from bot.config import Limits
from bot.downloads import MAX_REDIRECTS, FetchPolicy
from bot.errors import InputImageError
from bot.images.codec import megabytes


async def fetch_url(
    http: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    timeout: float = downloads.USER_LINK_TIMEOUT,  # noqa: ASYNC109 - one deadline: DNS, redirects, body
    allow_private: bool = False,
) -> bytes:
    """Download a user-given image link safely (no private networks, capped size, redirects
    re-checked hop by hop). Raises InputImageError with a message safe to show.

    ``http`` must carry no default credentials (headers, cookies): whatever it sends by default
    goes to the user's host too."""
    policy = FetchPolicy.user_link(max_bytes, timeout, allow_private=allow_private)
    try:
        return await downloads.fetch(http, url, policy)
    except downloads.DownloadError as exc:
        raise InputImageError(_user_message(exc)) from None


def _user_message(exc: downloads.DownloadError) -> str:
    where = exc.where
    match exc:
        case downloads.NotALink():
            return "This is not a valid link."
        case downloads.WrongScheme():
            return "Only http:// and https:// image links are accepted."
        case downloads.NoHost():
            return "This link has no host name."
        case downloads.UnknownHost():
            return f"Could not find the host {where}."
        case downloads.PrivateAddress():
            return f"Links to private or local network addresses are refused ({where})."
        case downloads.RedirectNowhere():
            return f"The image link at {where} redirects nowhere."
        case downloads.TooManyRedirects():
            return f"The image link redirected more than {MAX_REDIRECTS} times."
        case downloads.BadStatus(status=status):
            return f"The image link at {where} answered HTTP {status}."
        case downloads.TooLarge(max_bytes=max_bytes):
            return f"The image at {where} is larger than {megabytes(max_bytes)}."
        case downloads.TimedOut():
            return f"Downloading the image from {where} took too long."
        case downloads.TransportError(error=error):
            # The class name only: httpx messages can quote the full URL, credentials included.
            return f"Could not download the image from {where} ({type(error).__name__})."
    return f"Could not download the image from {where}."


def _read_file(source: str, max_bytes: int) -> bytes:
    path = Path(source).expanduser()
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)  # never more, whatever the file claims to be
    except FileNotFoundError:
        raise InputImageError(f"No such file: {path}.") from None
    except IsADirectoryError:
        raise InputImageError(f"{path} is a directory, not an image.") from None
    except PermissionError:
        raise InputImageError(f"No permission to read {path}.") from None
    except OSError as exc:
        raise InputImageError(f"Could not read {path} ({exc.strerror or type(exc).__name__}).") from None
    if len(data) > max_bytes:
        raise InputImageError(f"{path} is larger than {megabytes(max_bytes)}.")
    return data


async def load_source(
    source: str, http: httpx.AsyncClient, limits: Limits, *, allow_private: bool = False
) -> bytes:
    """For the CLI: read a local file or download an http(s) link, capped at max_input_bytes."""
    if "://" in source:
        return await fetch_url(http, source, max_bytes=limits.max_input_bytes, allow_private=allow_private)
    return await asyncio.to_thread(_read_file, source, limits.max_input_bytes)
