"""Writes the third-party runtime requirements of the given packages, for the dependency layer of
the service images.

Each argument is a package folder holding a pyproject.toml (libs/contracts, libs/common,
services/<svc>). The output lists every entry of their ``[project] dependencies`` except our own
distributions (``modelserve-*``), which are installed later from source, after the code is copied.
Versions come from requirements.lock, passed to pip as constraints, so the list stays unpinned here.

    python runtime_requirements.py -o /tmp/requirements.txt libs/contracts libs/common services/registry

Standard library only: it runs in the image's build stage before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(package_dirs: list[Path]) -> list[str]:
    """The union of the packages' dependencies, our own ``modelserve-*`` distributions left out,
    in first-seen order, duplicates removed."""
    seen: dict[str, str] = {}
    for folder in package_dirs:
        project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        for requirement in project.get("dependencies", []):
            match = _NAME.match(requirement)
            if match is None:
                raise SystemExit(f"{folder}/pyproject.toml: cannot read requirement {requirement!r}")
            if canonical(match.group(1)).startswith("modelserve-"):
                continue
            seen.setdefault(requirement.replace(" ", ""), requirement)
    return list(seen.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+", type=Path, help="folders holding a pyproject.toml")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    text = "".join(f"{r}\n" for r in runtime_requirements(args.packages))
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
