"""Keep passwords inside the process: URLs and free text are scrubbed before output."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

_SECRET_WORDS = re.compile(r"pass|pwd|secret|token|key|credential|auth", re.IGNORECASE)
# scheme://user:password@host -- the password part of any URL-looking text
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)")


def safe_url(url: URL | str) -> str:
    """The URL as text with any password replaced by ***."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return scrub(str(url))
    return parsed.render_as_string(hide_password=True)


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove URL passwords and any known secret strings from free text."""
    cleaned = _URL_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    for secret in secrets:
        if secret:
            cleaned = cleaned.replace(secret, "***")
    return cleaned


def looks_secret(name: str) -> bool:
    """True for environment variable names that may hold credentials."""
    return bool(_SECRET_WORDS.search(name))
