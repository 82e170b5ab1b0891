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
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd)=)[^&#\s]*", re.IGNORECASE)


def mask_password(url: str) -> str:
    """`url` (one URL) with its password masked, as user:password@host or ?password=; anything else unchanged.

    >>> mask_password("postgresql://hub@db/metro?password=pw&sslmode=require")
    'postgresql://hub@db/metro?password=***&sslmode=require'
    """
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", url))


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it (user:password@host, ?password=) masked.

    Unlike `mask_password`, a URL ends at white space, so a command line or a
    log line with several URLs keeps the words between them.
    """
    return _QUERY_PASSWORD.sub(r"\1***", _PASSWORDS_IN_TEXT.sub(r"\1***@", text))
