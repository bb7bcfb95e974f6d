"""Unforgeable identifiers: an HMAC appended to ids that a caller hands back (task tokens, delivery ids).

Task tokens and delivery ids used to be readable paths (`<process>/<step>/<attempt>/t`), so anyone
allowed to report could complete any task by writing its path. With a MAC over the id under a key
only the control plane knows (kept in the store, shared by every replica), an id is valid only if
the control plane made it; the id stays readable for debugging.
"""

from __future__ import annotations

import base64
import hmac

# 16 bytes of HMAC-SHA256: 128 bits, far beyond guessing, and short enough for logs.
_MAC_BYTES = 16
_SEPARATOR = "."


class Signer:
    """Appends and checks a MAC; the MAC alphabet (base64url) never contains the separator."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a signing key needs at least 16 bytes")
        self._key = key

    def _mac(self, text: str) -> str:
        # hmac.digest: one C call (OpenSSL's one-shot HMAC), about half the CPU of an hmac.new object per
        # MAC; a MAC is made for every task handed out.
        digest = hmac.digest(self._key, text.encode(), "sha256")[:_MAC_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, text: str) -> str:
        """`text` with its MAC appended."""
        return f"{text}{_SEPARATOR}{self._mac(text)}"

    def verify(self, signed: str) -> str | None:
        """The text of a signed id, or None when it was not signed with this key."""
        text, separator, mac = signed.rpartition(_SEPARATOR)
        # As bytes: compare_digest refuses str with non-ASCII characters, which a caller may send.
        if not separator or not hmac.compare_digest(mac.encode(), self._mac(text).encode()):
            return None
        return text
