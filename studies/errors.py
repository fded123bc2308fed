"""Errors a user can act on. The CLI prints their message as one line and exits with their code."""

from __future__ import annotations

__all__ = ["ExploreError", "StudyNotFound", "UsageError"]


class ExploreError(Exception):
    """A failure explained to the user in one line (exit code 1)."""

    exit_code = 1


class UsageError(ExploreError):
    """Bad input: options, config files, storage URLs (exit code 2)."""

    exit_code = 2


class StudyNotFound(ExploreError):
    """The named study is not in the storage."""
