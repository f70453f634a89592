"""TURN REST API credentials, the scheme coturn checks with ``use-auth-secret``.

``username = "<unix expiry>:<id>"`` and ``credential = base64(HMAC-SHA1(static-auth-secret, username))``. coturn
recomputes the HMAC from its own copy of the secret and refuses the allocation once the expiry has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["turn_credential", "turn_credentials"]


def turn_credential(secret: str, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))``: the password coturn expects for ``username``."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def turn_credentials(secret: str, *, expires: int, user_id: str) -> tuple[str, str]:
    """The ``(username, credential)`` pair valid until the unix time ``expires``, tagged with ``user_id``."""
    if ":" in user_id:
        # coturn splits on the first colon; a colon in the id would shift the timestamp it reads.
        raise ValueError("user_id may not contain ':'")
    username = f"{int(expires)}:{user_id}"
    return username, turn_credential(secret, username)
