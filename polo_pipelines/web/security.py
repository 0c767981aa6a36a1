"""Who may change rules: the API takes ``Authorization: Bearer <POLO_API_TOKEN>``; the pages take the token once at
``/login`` and keep a session cookie (HttpOnly, SameSite=Strict), and every form carries a per-session CSRF token and
is refused from another origin. Reads are open (the server binds to 127.0.0.1 unless told otherwise). No token, no
rule changes. The token is compared in constant time and never echoed, logged or rendered.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path
from urllib.parse import urlsplit

SESSION_COOKIE = "polo_session"


class Forbidden(PermissionError):
    """A change refused: ``status`` 401 (no or a wrong token) or 403 (changes are off, or a cross-site form)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def token_setting() -> str:
    return os.environ.get("POLO_API_TOKEN", "")


def local_token(home: Path) -> Path:
    """A token of this machine's own for a server that binds to loopback with no POLO_API_TOKEN (``make dev`` on a
    laptop): made once, kept in ``<POLO_HOME>/api-token`` readable by its owner only, never printed. Whoever can read
    the file may change rules; set POLO_API_TOKEN to choose the token instead."""
    path = home / "api-token"
    if not path.exists() or not path.read_text().strip():
        home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    os.chmod(path, 0o600)
    return path


class Guard:
    """The token and the sessions of one server."""

    def __init__(self, token: str | None = None, token_file: Path | None = None):
        self.token = token_setting() if token is None else token
        self.token_file = token_file  # where the token is, when the server made it (shown on the sign-in page)
        self._secret = secrets.token_bytes(32)
        self._sessions: set[str] = set()
        self._lock = threading.Lock()

    @property
    def changes_allowed(self) -> bool:
        return bool(self.token)

    def _off(self) -> Forbidden:
        return Forbidden(403, "rule changes are off: start the server with POLO_API_TOKEN set")

    def check_bearer(self, header: str | None) -> None:
        if not self.token:
            raise self._off()
        given = (header or "").removeprefix("Bearer ").strip() if (header or "").startswith("Bearer ") else ""
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Forbidden(401, "changing rules needs Authorization: Bearer <POLO_API_TOKEN>")

    # ------------------------------------------------------------------ the pages

    def login(self, given: str) -> str:
        """A new session id for the right token."""
        if not self.token:
            raise self._off()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Forbidden(401, "that is not the token (POLO_API_TOKEN)")
        session = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions.add(session)
        return session

    def logout(self, session: str | None) -> None:
        with self._lock:
            self._sessions.discard(session or "")

    def signed_in(self, session: str | None) -> bool:
        with self._lock:
            return bool(session) and session in self._sessions

    def csrf(self, session: str | None) -> str:
        """The form token of a session (empty without one)."""
        if not session:
            return ""
        return hmac.new(self._secret, session.encode(), hashlib.sha256).hexdigest()

    def check_form(self, session: str | None, csrf: str | None, origin: str | None, host: str) -> None:
        """A form that changes rules: signed in, its CSRF token, and sent from this server's own pages."""
        if origin and origin != "null" and urlsplit(origin).netloc != host:
            raise Forbidden(403, "this form was sent from another site")
        if not self.token:
            raise self._off()
        if not self.signed_in(session):
            raise Forbidden(401, "sign in with the token (POLO_API_TOKEN) to change rules")
        if not csrf or not hmac.compare_digest(csrf, self.csrf(session)):
            raise Forbidden(403, "the form's token is missing or stale: reload the page and send it again")
