"""Codes the engine stores for each event's fate and the rule that placed it (explainability)."""

from __future__ import annotations

NEW, MISSING_ASSET, R5A, R5B, CAP, REOPEN, RESOLVE = range(7)
RULES = ("new", "R4-missing-asset", "R5a", "R5b", "R6-cap", "R7-reopen", "R7-resolve")
OPENS = (NEW, MISSING_ASSET, CAP)  # rules that open an incident

MEMBER, DUPLICATE, TOO_LATE, ORPHAN, STALE_RESOLVE = range(5)
DISPOSITIONS = ("member", "duplicate", "too_late", "orphan_resolved", "stale_resolve")
DISPOSITION_RULES = (None, "R2", "R9", "R12", "R11")  # the rule of a non-member
