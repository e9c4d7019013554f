"""PEP 508 markers as a Heroku dyno running the app's Python evaluates them: the swap's plan, the
preflight, and the runtime packages slugslim installs from its universal lock."""

from __future__ import annotations

from collections.abc import Mapping

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName, default_environment
from packaging.requirements import Requirement


def dyno_environment(python_version: str) -> dict[str, str]:
    """PEP 508 marker values on a Heroku dyno running the app's Python."""
    env = {key: str(value) for key, value in default_environment().items()}
    env.update(
        sys_platform="linux", platform_system="Linux", os_name="posix", platform_machine="x86_64",
        implementation_name="cpython", platform_python_implementation="CPython",
        python_version=python_version, python_full_version=f"{python_version}.0",
    )
    return env


def applies_on_dyno(requirement: Requirement, environment: Mapping[str, str]) -> bool:
    if requirement.marker is None:
        return True
    try:
        return requirement.marker.evaluate(dict(environment))
    except (UndefinedEnvironmentName, UndefinedComparison):
        # A marker we cannot decide: assume it holds, as pip on the dyno might.
        return True
