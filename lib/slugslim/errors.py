"""Every failure slugslim can report, and the one place that words them.

Library code raises these classes; ``cli`` turns them into a build-log error with
``render``. Each message says what happened, why, and what to do, for a Heroku user
who has never heard of slugslim.
"""

from __future__ import annotations


class SlugslimError(Exception):
    """Base class. ``title`` is one line; ``detail`` explains why and what to do."""

    title = "slugslim failed"

    def detail(self) -> str:
        return str(self)

    def render(self) -> str:
        body = self.detail().strip()
        return f"Error: {self.title}.\n\n{body}" if body else f"Error: {self.title}."


class ConfigError(SlugslimError):
    """A problem in slugslim.yml or a SLUGSLIM_* config var."""

    title = "Invalid slugslim configuration"

    def __init__(self, source: str, problem: str, fix: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem
        self.fix = fix

    def detail(self) -> str:
        return (
            f"In {self.source}:\n"
            f"{self.problem}\n\n"
            f"{self.fix}\n\n"
            "The full list of settings is in the slugslim README, under 'Configuration'."
        )


class ToolError(SlugslimError):
    """An external tool (pip, pip-compile, strip, curl) failed in a way we cannot recover."""

    title = "A build tool failed"

    def __init__(self, what: str, output: str, fix: str) -> None:
        super().__init__(what)
        self.what = what
        self.output = output
        self.fix = fix

    def detail(self) -> str:
        tail = "\n".join(self.output.strip().splitlines()[-15:])
        shown = f"\n\nIts last output was:\n{tail}" if tail else ""
        return f"{self.what}{shown}\n\n{self.fix}"


class AnalyzeError(SlugslimError):
    """``slugslim analyze`` was pointed at something it cannot analyse."""

    title = "Cannot analyze this path"

    def __init__(self, path: str, problem: str, fix: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.fix = fix

    def detail(self) -> str:
        return f"{self.path}:\n{self.problem}\n\n{self.fix}"
