"""Passwords in URLs masked as ``***`` before anything is logged, listed or written to a job file.

>>> mask_password("postgresql+psycopg://hub:s3cret@db:5432/metro")
'postgresql+psycopg://hub:***@db:5432/metro'
>>> mask_secrets("metro-app run --store postgresql://hub:s3cret@db/metro --port 8000")
'metro-app run --store postgresql://hub:***@db/metro --port 8000'
"""

from __future__ import annotations

import re

__all__ = ["mask_password", "mask_secrets"]

_URL_PASSWORD = re.compile(r"(://[^/:@]*:)[^@/]*@")
_PASSWORDS_IN_TEXT = re.compile(r"(://[^/\s:@]*:)[^@/\s]*@")


def mask_password(url: str) -> str:
    """`url` (one URL, user:password@host) with its password masked; anything else unchanged."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it (user:password@host) masked.

    Unlike `mask_password`, a URL ends at white space, so a command line or a
    log line with several URLs keeps the words between them.
    """
    return _PASSWORDS_IN_TEXT.sub(r"\1***@", text)
