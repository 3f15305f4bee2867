"""Passwords out of what bench prints and writes: the tracking store's and the sweep storage's.

``redact`` hides the password of every URL in a text (``scheme://user:PASSWORD@host``, and query values
such as ``?password=``), and every secret bench was given (``remember``; the tracking URI's password and
MLflow's credential variables are always known), wherever it appears: MLflow's and the drivers' error
messages quote a URL in pieces, or the password alone.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

HIDDEN = "***"
# The password runs to the last '@' of the URL that a host follows (then a path, a query, a quote, a
# space or the end): a raw '@' or '/' in a password, as users type them, is hidden with it, as
# SQLAlchemy reads such a URL (``make_url`` keeps text before the last '@' as the password); a '@' in a
# URL's path hides more than the password, never less.
USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/?#@'\"]*):\S*@(?=[^\s@/?#'\"]*(?:[/?#\s'\"]|$))")
QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|access_token|secret|api_key)=)([^&#\s'\"]*)")
PASSWORD = re.compile(r"(?i)^[a-z][a-z0-9+.\-]*://[^\s:/?#@]*:(\S*)@[^\s@/?#]*(?:[/?#]|$)")
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
SHORTEST = 4  # a shorter secret is hidden in URLs only: replaced everywhere, it would mangle the text

_remembered: set[str] = set()


def remember(url: str) -> None:
    """Hide the password of ``url`` (e.g. a sweep storage's) wherever it appears from now on."""
    _remembered.update(_secrets_of(url))


def _secrets_of(url: str) -> set[str]:
    found = PASSWORD.match(url.strip())
    password = found.group(1) if found else ""
    values = [password, *(value for _, value in QUERY_SECRET.findall(url))]
    return {form for value in values if value for form in (value, unquote(value))}


def known_secrets() -> set[str]:
    """The secrets to hide: those remembered, the tracking URI's, and MLflow's credential variables'."""
    given = {os.environ.get(name, "") for name in CREDENTIAL_VARIABLES}
    secrets = _remembered | _secrets_of(os.environ.get("MLFLOW_TRACKING_URI", "")) | given
    return {secret for secret in secrets if len(secret) >= SHORTEST}


def redact(text: str) -> str:
    """``text`` with every URL's password and every known secret replaced by ``***``."""
    text = QUERY_SECRET.sub(rf"\1{HIDDEN}", USERINFO.sub(rf"\1:{HIDDEN}@", text))
    for secret in sorted(known_secrets(), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text
