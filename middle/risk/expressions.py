"""Rule expressions in CEL (Common Expression Language), compiled once and evaluated per decision.

CEL is a safe, side-effect-free, non-Turing-complete language made for exactly this (policy and
rule evaluation); ``common-expression-language`` binds the Rust implementation. No ``eval``, no
attribute access beyond the facts given, no I/O.

A rule is checked when it is compiled, so a mistake stops startup rather than a decision:

1. syntax (CEL's parser);
2. every top-level name is a fact section the rule's flow has at the rule's stage;
3. every ``section.field`` path into a typed section names a real field (``velocity`` paths name a
   dimension, a configured window and ``count`` or ``amount_minor``);
4. evaluated once against zero-valued facts, the expression yields a boolean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cel

from middle.risk.facts import (
    OPEN_SECTIONS,
    SECTION_MODELS,
    VELOCITY_DIMENSIONS,
    WindowFacts,
    sample_facts,
    sections_at,
)

_STRING_LITERAL = re.compile(r"""(?:[rRbB]{0,2})("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')""")
_PATH = re.compile(r"(?<![\w.])([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*)+)")


class ExpressionError(ValueError):
    """An expression that does not compile or does not fit the facts."""


class EvaluationError(RuntimeError):
    """An expression failed while a decision was evaluated (recorded as the rule's error)."""


@dataclass(frozen=True)
class CompiledExpression:
    source: str
    program: Any  # cel.Program
    names: tuple[str, ...]

    def evaluate(self, context: Any) -> bool:
        try:
            result = self.program.execute(context)
        except Exception as exc:  # the binding raises KeyError, TypeError, RuntimeError, ValueError
            raise EvaluationError(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(result, bool):
            raise EvaluationError(f"the expression gave {type(result).__name__} {result!r}, not true or false")
        return result


def compile_expression(source: str) -> CompiledExpression:
    """Parse ``source``; raises :class:`ExpressionError` with the parser's message."""
    if not source.strip():
        raise ExpressionError("the expression is empty")
    try:
        program = cel.compile(source)
    except Exception as exc:
        message = " ".join(str(exc).split())
        raise ExpressionError(f"not a valid CEL expression: {message[:300]}") from None
    return CompiledExpression(source=source, program=program, names=tuple(program.variables()))


def check_expression(compiled: CompiledExpression, flow: str, stage: str, windows: dict[str, int]) -> None:
    """Check a compiled expression against the facts of ``flow`` at ``stage`` (steps 2-4 above)."""
    available = sections_at(flow, stage)
    paths = list(_paths(compiled.source))
    sections_used = {head for head, _ in paths} | {name for name in compiled.names if name in _ALL_SECTIONS}
    for name in sorted(sections_used):
        if name not in available:
            later = " (it is known only from the post_score stage on)" if name in ("score", "profile") else ""
            raise ExpressionError(
                f"refers to facts {name!r}, which the {flow} flow does not have at stage {stage!r}{later}; "
                f"available: {', '.join(available)}"
            )
    for head, tail in paths:
        if head in available:
            _check_path(head, tail, windows)
    context = cel.Context(sample_facts(flow, stage, windows))
    try:
        compiled.evaluate(context)
    except EvaluationError as exc:
        # A key of an open map (consented.x, extra.x, profile.x) may be absent from zero facts.
        if "KeyError" in str(exc) and sections_used & OPEN_SECTIONS:
            return
        raise ExpressionError(f"fails on zero-valued facts: {exc}") from None


_ALL_SECTIONS = frozenset(SECTION_MODELS) | OPEN_SECTIONS


def _paths(source: str) -> list[tuple[str, list[str]]]:
    """``(section, [field, ...])`` for each dotted path in the expression (string literals removed)."""
    stripped = _STRING_LITERAL.sub('""', source)
    found = []
    for match in _PATH.finditer(stripped):
        head = match.group(1)
        if head in _ALL_SECTIONS:
            found.append((head, [part.strip() for part in match.group(2).split(".")[1:]]))
    return found


def _check_path(head: str, tail: list[str], windows: dict[str, int]) -> None:
    if head == "extra" or not tail:
        return
    if head == "velocity":
        dimension = tail[0]
        if dimension not in VELOCITY_DIMENSIONS:
            raise ExpressionError(f"velocity.{dimension}: no such dimension (use {', '.join(VELOCITY_DIMENSIONS)})")
        if len(tail) > 1 and tail[1] not in windows:
            raise ExpressionError(
                f"velocity.{dimension}.{tail[1]}: no such window (configured: {', '.join(windows) or 'none'})"
            )
        if len(tail) > 2 and tail[2] not in WindowFacts.model_fields:
            raise ExpressionError(f"velocity.{dimension}.{tail[1]}.{tail[2]}: use count or amount_minor")
        return
    fields = SECTION_MODELS[head].model_fields
    if tail[0] not in fields:
        raise ExpressionError(f"{head}.{tail[0]}: no such fact (fields of {head}: {', '.join(fields)})")
