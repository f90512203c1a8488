"""Readable failures: which expectation, which column, how many rows, a few values and row ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from great_expectations.core import ExpectationSuiteValidationResult

if TYPE_CHECKING:
    from aerodrome.validate.custom import CustomOutcome

EXAMPLES = 3
MAX_LINES = 12
UNREADABLE = "readable_parquet_partition"  # pseudo-expectation: the file could not be read at all


@dataclass(frozen=True)
class Failure:
    """One failed expectation. `rows` are 0-based row positions in the partition's Parquet file."""

    expectation: str
    column: str | None = None
    unexpected_count: int | None = None
    element_count: int | None = None
    examples: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    observed: str | None = None
    expected: str | None = None
    error: str | None = None

    def describe(self) -> str:
        head = f"{self.expectation} [{self.column}]" if self.column else self.expectation
        if self.expectation == "expect_column_to_exist":
            return f"{head}: column is missing"
        if self.expectation == UNREADABLE:
            return f"unreadable partition: {self.error}"
        if self.error:
            return f"{head}: could not be evaluated: {self.error}"
        if self.unexpected_count is not None:
            share = f" ({100 * self.unexpected_count / self.element_count:.1f}%)" if self.element_count else ""
            text = f"{head}: {self.unexpected_count} of {self.element_count} rows unexpected{share}"
            if self.examples:
                pairs = [f"row {r}: {v}" for r, v in zip(self.rows, self.examples, strict=False)]
                pairs += self.examples[len(self.rows) :]
                text += "; e.g. " + ", ".join(pairs)
            return text
        return f"{head}: observed {self.observed}, expected {self.expected}"


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(_plain(v) for v in value.values()) + ")"
    value = value.item() if hasattr(value, "item") and not isinstance(value, str) else value
    return repr(value) if isinstance(value, str) else str(value)


def _expected(kwargs: dict[str, Any]) -> str | None:
    if "type_" in kwargs:
        return str(kwargs["type_"])
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if lo is None and hi is None:
        return None
    if lo is None:
        return f"at most {hi}"
    if hi is None:
        return f"at least {lo}"
    return f"between {lo} and {hi}"


def _error(info: dict[str, Any] | None) -> str | None:
    if not info:
        return None
    infos = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for item in infos:
        if item.get("raised_exception"):
            message = str(item.get("exception_message") or "error").strip().splitlines()
            return message[0][:200] if message else "error"
    return None


def failures_from_result(result: ExpectationSuiteValidationResult) -> list[Failure]:
    """The failed expectations of a GX result, schema failures first, then in suite order of type."""
    failures = []
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
        column = kwargs.get("column") or (", ".join(kwargs["column_list"]) if "column_list" in kwargs else None)
        detail = item.result or {}
        observed = detail.get("observed_value")
        failures.append(
            Failure(
                expectation=config.type,
                column=column,
                unexpected_count=detail.get("unexpected_count"),
                element_count=detail.get("element_count"),
                examples=[_plain(v) for v in (detail.get("partial_unexpected_list") or [])[:EXAMPLES]],
                rows=[int(r) for r in (detail.get("partial_unexpected_index_list") or [])[:EXAMPLES] if _is_int(r)],
                observed=None if observed is None else str(observed),
                expected=_expected(kwargs),
                error=_error(item.exception_info),
            )
        )
    order = {
        "expect_column_to_exist": 0,
        "expect_column_type_to_be": 1,
        "expect_table_row_count_to_be_between": 2,
    }
    return sorted(failures, key=lambda f: (order.get(f.expectation, 3), f.expectation, f.column or ""))


def failure_from_custom(outcome: CustomOutcome) -> Failure:
    """A failed custom rule (`aerodrome.validate.custom`) described like a GX expectation."""
    whole = outcome.unexpected_count is None and outcome.error is None  # a rule about the whole partition
    return Failure(
        expectation=outcome.expectation,
        column=outcome.column,
        unexpected_count=outcome.unexpected_count,
        element_count=outcome.element_count,
        examples=[_plain(v) for v in outcome.examples[:EXAMPLES]],
        rows=outcome.rows[:EXAMPLES],
        observed=str(outcome.success) if whole else None,
        expected="True" if whole else None,
        error=outcome.error,
    )


def _is_int(value: Any) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


def summarize(header: str, failures: list[Failure], footer: list[str]) -> str:
    """A short multi-line summary; expectations that could not run on a missing column are folded."""
    missing = {f.column for f in failures if f.expectation == "expect_column_to_exist" and f.column}

    def on_missing(f: Failure) -> bool:
        return bool(f.error) and bool(missing & {c.strip() for c in (f.column or "").split(",")})

    folded = [f for f in failures if f.expectation != "expect_column_to_exist" and on_missing(f)]
    lines = [f"  - {f.describe()}" for f in failures if f not in folded]
    if folded:
        lines.append(f"  - {len(folded)} other expectation(s) on the missing column(s) could not run")
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES] + [f"  ... and {len(lines) - MAX_LINES} more (see the result document)"]
    return "\n".join([header, *lines, *footer])
