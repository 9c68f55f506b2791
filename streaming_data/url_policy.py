"""Which URLs a ``--urls`` ingest may fetch: http and https only, redirects included.

img2dataset fetches each row with ``urllib.request.urlopen``, whose default opener also reads ``file://``
(a URL list row ``file:///home/me/.ssh/id_rsa`` would copy that local file into the dataset), ``ftp://``
and ``data:`` URLs, and follows redirects from http to ftp. :func:`http_only_opener` has only the http(s)
handlers and refuses a redirect to any other scheme; ``streaming_data.url_downloader`` installs it in
img2dataset's download processes (that module imports img2dataset, which takes seconds; this one is cheap).

A refused row is dropped, not fatal, like any other failed download: URL lists scraped from the web hold
junk rows, and one should not stop an ingest of millions. The ingest summary and the sample index count
them by reason: ``url_scheme_not_allowed`` (the row's URL is not http(s)) and ``redirect_not_allowed``
(an http(s) URL redirected to another scheme).
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

ALLOWED_SCHEMES = ("http", "https")
URL_SCHEME_REASON = "url_scheme_not_allowed"
REDIRECT_REASON = "redirect_not_allowed"
_REFUSED = {"unknown url type": URL_SCHEME_REASON, "Redirection to url": REDIRECT_REASON}
"""Phrases of urllib's refusals (and of :class:`_HttpOnlyRedirects`) -> drop reason."""


def refusal_reason(error_message: str) -> str | None:
    """The drop reason if an img2dataset error message is this policy's refusal, else None."""
    return next((reason for needle, reason in _REFUSED.items() if needle in error_message), None)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only (urllib itself refuses ``file://`` but follows ``ftp://``)."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ALLOWED_SCHEMES:
            raise urllib.error.HTTPError(newurl, code, f"{msg} - Redirection to url '{newurl}' is not allowed "
                                         "(only http and https)", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def http_only_opener() -> urllib.request.OpenerDirector:
    """A urllib opener with the http(s) handlers only: other schemes fail with "unknown url type"."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(), _HttpOnlyRedirects(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener
