"""Run a federation in-process: every helper role a thread, the driver in the caller.

Both training modes use this: the helper roles (parties and servers, or feature holders
and the dealer) run as daemon threads over one transport; the driving role (the
coordinator, or the label holder) runs in the calling thread and returns the model.
When the driver reports a peer failure whose cause was bad input inside a helper
(a ParameterError), the user gets that error, named after the role, instead.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

from ppxgb.errors import ParameterError, PeerFailure

Role = tuple[str, Callable[..., Any], tuple, dict]      # (thread name, function, args, kwargs)


def run_roles(helpers: Sequence[Role], driver: Callable[[], Any]):
    """Start the helpers, run the driver, join; the driver's result."""
    errors: list[BaseException] = []

    def guard(fn, *args, **kw):
        try:
            fn(*args, **kw)
        except PeerFailure:
            pass  # the driver reports the failure
        except BaseException as exc:  # recorded; the driver sees the abort message
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(fn, *args), kwargs=kwargs, daemon=True, name=name)
               for name, fn, args, kwargs in helpers]
    for t in threads:
        t.start()
    try:
        result = driver()
    except PeerFailure as exc:
        cause = next((e for e in errors if isinstance(e, ParameterError)), None)
        if cause is not None:  # bad input found inside a helper: the user's error, named
            raise type(cause)(f"{exc.peer}: {cause}") from None
        raise
    for t in threads:
        t.join(timeout=30)
    return result
