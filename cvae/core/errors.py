"""User-facing errors: one clear line that names the fix, never a traceback
(and ``plural``, for the counts these lines and the stages' summaries name).

Exit statuses follow the Unix/click convention: 2 for a usage error (the
command line or params.yaml asks for something invalid), 1 for a runtime error
(a missing or damaged file, weights that do not match, a full disk).
"""

USAGE_EXIT = 2
RUNTIME_EXIT = 1


class CVAEError(Exception):
    """A bad input or environment problem the user can fix.

    The message is one line and says what to do. Stages and the CLI print it as
    ``error: <message>`` and exit with :func:`exit_code`.
    """


class UsageError(CVAEError):
    """The invocation itself is invalid: an option or param value, a prompt that
    names no class. Fixed by changing the command or params.yaml."""


def exit_code(error: CVAEError) -> int:
    """2 for a usage error, 1 for anything else."""
    return USAGE_EXIT if isinstance(error, UsageError) else RUNTIME_EXIT


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 image``, ``2 images``; ``nouns`` for an irregular plural."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"
