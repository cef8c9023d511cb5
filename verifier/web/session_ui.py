"""The audit UI's sessions, shared by the pages under /audit/ (the audit UI, cases, the consoles):
who is signed in (the `vaudit` cookie, path /audit) and the CSRF token every form carries."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from flask import abort, g, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from .state import AUDIT_SESSION_COOKIE, session_user, state

LOGIN_PATH = "/audit/login"


def csrf_token() -> str:
    """The token of the request's session: an HMAC of the session cookie (empty before login)."""
    session = request.cookies.get(AUDIT_SESSION_COOKIE, "")
    return hmac.new(state().hash_key, f"csrf\x00{session}".encode(), hashlib.sha256).hexdigest()[:32]


def login_required(*roles: str) -> Callable[[Callable[..., BaseResponse]], Callable[..., BaseResponse]]:
    """A signed-in user of one of `roles` (any if none), put in `g.user`; on a POST, the form's
    CSRF token too. Anonymous: to the login page; another role or a bad token: 403."""

    def decorate(view: Callable[..., BaseResponse]) -> Callable[..., BaseResponse]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> BaseResponse:
            user = session_user()
            if user is None:
                return redirect(LOGIN_PATH)
            g.user = user  # a refusal's page still shows the user their own way on
            if roles and user.role not in roles:
                abort(403)
            if request.method == "POST" and not hmac.compare_digest(
                request.form.get("csrf", "").encode(), csrf_token().encode()
            ):
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorate
