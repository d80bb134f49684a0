"""One line for every mistake: how the command line reports an exception that reaches it.

Bad input (a ValueError such as ConfigError, GraphError, GrammarError or JointMismatch, a missing key or
file) exits 2; a failure while running (a timeout, a graph that died, a device that did not answer) exits 1.
Either way the user sees `error: <one line>` on stderr; `loopylab --debug ...` shows the traceback instead.
An exception of a kind we did not expect is a bug: its line names its type and points at --debug.
"""

from __future__ import annotations

INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    LookupError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
RUN_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, TimeoutError, ConnectionError, OSError)


def message(e: BaseException) -> str:
    """The exception's text on one line (a KeyError's without the quotes repr adds)."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        text = e.args[0]
    elif isinstance(e, OSError) and e.filename is not None and e.strerror:
        text = f"{e.filename}: {e.strerror}"  # e.g. 'runs/x: Permission denied', not '[Errno 13] ...'
    else:
        text = str(e)
    return " ".join(text.split())


def describe(e: BaseException) -> str:
    """`error: ...` as the user sees it."""
    text = message(e)
    if isinstance(e, INPUT_ERRORS + RUN_ERRORS):
        return f"error: {text or type(e).__name__}"
    return f"error: {type(e).__name__}: {text} (unexpected: run with --debug for the traceback)".replace(": (", " (")


def exit_code(e: BaseException) -> int:
    """2 for bad input, 1 for anything that failed while running."""
    return 2 if isinstance(e, INPUT_ERRORS) else 1
