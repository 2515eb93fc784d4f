"""A call back when a function returns, while its frame's locals are still alive.

A test's rows are usually dropped when the test function returns, before the pytest
plugin's capture ends: a census then sees nothing of them unless one happened to run
while the test held them. On Python 3.12 and newer, sys.monitoring reports the return
of one code object at no cost to any other code, and a census taken in that callback
sees the test's locals. Older Pythons have no such event short of tracing every call
(sys.settrace), which would slow the test down: there this does nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType

TOOL_NAME = "sqldiag"


def at_return(code: CodeType, callback: Callable[[], object]) -> Callable[[], None]:
    """Call `callback()` each time a frame of `code` returns; the result stops it."""
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:
        return lambda: None
    tool = next((t for t in range(6) if monitoring.get_tool(t) is None), None)
    if tool is None:  # every tool id taken (debuggers, coverage, profilers)
        return lambda: None
    monitoring.use_tool_id(tool, TOOL_NAME)
    event = monitoring.events.PY_RETURN

    def returned(returning: CodeType, offset: int, value: object) -> object:
        if returning is code:
            callback()
        return None

    monitoring.register_callback(tool, event, returned)
    monitoring.set_local_events(tool, code, event)

    def stop() -> None:
        monitoring.set_local_events(tool, code, 0)
        monitoring.register_callback(tool, event, None)
        monitoring.free_tool_id(tool)

    return stop
