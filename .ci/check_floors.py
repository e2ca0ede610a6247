"""
Fails unless this environment is the floor that streamd declares: Python at
python_requires' lower bound and every install_requires at its ">=" version,
so that setup.cfg can only state floors that .ci/run tests.

Run it with the floor venv's Python after installing streamd there.
"""

import sys
from importlib.metadata import metadata, requires, version

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version


def lowerBound(specifier: SpecifierSet, what: str) -> Version:
    bounds = [Version(s.version) for s in specifier if s.operator == ">="]
    if len(bounds) != 1:
        raise SystemExit(f"{what}: declare exactly one '>=' floor, not {str(specifier)!r}")
    return bounds[0]


def main() -> None:
    problems = []
    python = Version("{}.{}".format(*sys.version_info[:2]))
    wanted = lowerBound(SpecifierSet(metadata("streamd")["Requires-Python"]), "python_requires")
    print(f"Python {python} (python_requires floor {wanted})")
    if python != wanted:
        problems.append(f"Python is {python}, python_requires says >= {wanted}")
    for line in requires("streamd") or []:
        requirement = Requirement(line)
        if requirement.marker is not None:
            continue  # an extra (test tools), not a dependency of the daemon
        wanted = lowerBound(requirement.specifier, requirement.name)
        installed = Version(version(requirement.name))
        print(f"{requirement.name} {installed} (floor {wanted})")
        if installed != wanted:
            problems.append(f"{requirement.name} is {installed}, setup.cfg says >= {wanted}")
    for problem in problems:
        print(f"not the declared floor: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
