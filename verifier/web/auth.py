"""The API's one rule for who is asking: a bearer token (or an audit UI session) of one of the
roles a route takes; 401 and 403 in the API's error shape. Blueprints share it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Response, g

from .errors import api_error
from .state import bearer_user, rate_limit

View = Callable[..., Response]


def token_required(*roles: str, realm: str = "verifier-audit", limited: bool = False) -> Callable[[View], View]:
    """Require a bearer token of one of `roles` (any role if none), put its user in `g.user`.
    `limited`: count the request against the client's rate limit first, so a flood of bad tokens
    costs a counter, not a read of the accounts table."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            if limited:
                rate_limit()
            user = bearer_user()
            if user is None:
                return api_error(
                    "unauthorized",
                    "send Authorization: Bearer <token>",
                    401,
                    {"WWW-Authenticate": f'Bearer realm="{realm}"'},
                )
            if roles and user.role not in roles:
                return api_error("forbidden", f"this needs the {' or '.join(roles)} role", 403)
            g.user = user
            return view(*args, **kwargs)

        return wrapper

    return decorate
