"""Who is asking: the visitor behind the current request, in hosted mode (core.hosting has the rules).

A visitor is their browser. On page load the browser sends the random token it keeps in its
localStorage (`gr.BrowserState`; a new one is made on the first visit), and the server ties the
page's session to it, so a visitor keeps their runs across reloads. A client without a browser
(the API, gradio_client) is its session. Handlers need no extra argument: Gradio keeps the
current request in a context variable while a handler runs, and `current_owner` reads it.

Locally (no POLYGLOT_HOSTED) there are no visitors: `current_owner` is None and every run is
everyone's.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict

from gradio.context import LocalContext

from core.limits import current_limits

STORAGE_KEY = "polyglot-lab-visitor"  # the localStorage key of the browser's token
STORAGE_SECRET = "polyglot-lab"  # BrowserState encrypts with it in the browser; the token itself is the secret
SERVER = "server"  # the owner of calls made without a request (tests, start-up): owns nothing a visitor made
MAX_SESSIONS = 50_000  # sessions remembered; the oldest are forgotten (their browser re-binds on its next load)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
_LOCK = threading.Lock()
_BROWSERS: OrderedDict[str, str] = OrderedDict()  # session hash -> browser token


def current_owner() -> str | None:
    """The visitor making the current request: "browser:<token>", or "session:<hash>" for an API
    client; None in local mode. In hosted mode a call without a session never sees a visitor's run."""
    if not current_limits().hosted:
        return None
    request = LocalContext.request.get(None)
    if request is None:
        return SERVER
    session = getattr(request, "session_hash", None)
    if not session:
        return f"request:{secrets.token_hex(16)}"  # no session to come back with: a stranger to everyone
    with _LOCK:
        token = _BROWSERS.get(session)
    return f"browser:{token}" if token else f"session:{session}"


def remember_browser(token: str | None) -> str:
    """Page load: tie this page's session to the browser's token (a new one on a first visit, or
    when the stored value is not one of ours); returns the token for the browser to keep."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        token = secrets.token_urlsafe(32)
    request = LocalContext.request.get(None)
    session = getattr(request, "session_hash", None)
    if session:
        with _LOCK:
            _BROWSERS[session] = token
            _BROWSERS.move_to_end(session)
            while len(_BROWSERS) > MAX_SESSIONS:
                _BROWSERS.popitem(last=False)
    return token
