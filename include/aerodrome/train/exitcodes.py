"""Exit codes of the trainer command, shared by the trainer and the operators that run it (no heavy imports)."""

from __future__ import annotations

OK = 0
FAILED = 1  # unexpected (a crash, an unreachable service): a retry may help
USAGE = 2  # bad command line (argparse)
INPUT = 3  # the window, data, spec or parameters cannot be trained on: retrying the same run cannot help

MEANING = {
    FAILED: "training failed",
    USAGE: "bad trainer arguments",
    INPUT: "the window, data or parameters cannot be trained on",
}
NOT_RETRYABLE = frozenset({USAGE, INPUT})


def describe(code: int) -> str:
    """`exit code 3 (the window, data or parameters cannot be trained on)`."""
    if code == OK:
        return "exit code 0 (success)"
    meaning = MEANING.get(code, "killed by a signal" if code > 128 or code < 0 else "training failed")
    return f"exit code {code} ({meaning})"
