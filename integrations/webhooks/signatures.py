"""Request signatures: an HMAC of the raw body, keyed with the webhook's secret.

The ``*_signature`` functions compute what a provider sends, so tests, the
benchmark and the docs' curl example sign exactly as the provider does.
"""

from __future__ import annotations

import hashlib
import hmac


def github_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def vercel_signature(secret: str, body: bytes) -> str:
    """The ``x-vercel-signature`` header value Vercel sends for ``body``."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def signature_matches(expected: str, received: str | None) -> bool:
    """Compare in constant time, so the comparison leaks nothing about ``expected``.

    Header values may hold any character; comparing bytes avoids
    ``compare_digest``'s refusal of non-ASCII strings.
    """
    return received is not None and hmac.compare_digest(expected.encode(), received.encode())
