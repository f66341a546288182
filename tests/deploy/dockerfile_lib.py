"""The one Dockerfile (deploy/docker/Dockerfile) read as the deploy tests need it: stages and
instructions, build arguments substituted, and each service's image as its final stage and the
stages it is built FROM (imported by test_dockerfiles.py and test_settings_drift.py; the folder is
put on sys.path by conftest.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deploy_testlib import ROOT, Service

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list), f"line {self.line}: {self.keyword} {text}"
        return [str(v) for v in value]


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def find(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(path: Path, build_args: dict[str, str] | None = None) -> list[Stage]:
    """Stages with their instructions; comments dropped, continuation lines joined, ``${ARG}``
    replaced by ``build_args`` (as ``docker build --build-arg`` would)."""
    stages: list[Stage] = []
    pending = ""
    start = 0
    text = path.read_text(encoding="utf-8")
    for name, value in (build_args or {}).items():
        text = text.replace("${" + name + "}", value)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:  # a global ARG (usable in FROM), substituted above
            continue
        if keyword == "FROM":
            words = args.split()
            flags = [w for w in words if w.startswith("--")]
            words = [w for w in words if not w.startswith("--")]
            assert not flags, f"{path}:{start}: FROM flags ({flags}) are not expected"
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{path}:{start}: {keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, args.strip(), start))
    return stages


def copy_sources(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """(flags, sources, destination) of a COPY."""
    words = instruction.exec_form() or instruction.args.split()
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def stages_of(service: Service) -> list[Stage]:
    """Every stage, as ``--build-arg SERVICE=<package>`` makes them."""
    return parse_dockerfile(DOCKERFILE, {"SERVICE": service.package})


def image_of(service: Service) -> Stage:
    """The service's image as ``--target <package>`` builds it: its final stage merged with the
    stages it is built FROM (the runtime base), base instructions first."""
    stages = stages_of(service)
    by_name = {s.name: s for s in stages}
    chain = [by_name[service.package]]
    while chain[0].image in by_name:
        chain.insert(0, by_name[chain[0].image])
    return Stage(chain[0].image, service.package, [i for s in chain for i in s.instructions])


def dependencies(stages: list[Stage], target: str) -> set[str]:
    """The stages BuildKit builds for ``--target``: the target, the stages it is built FROM and
    those it copies from (``COPY --from=<stage>``), transitively."""
    by_name = {s.name: s for s in stages}
    seen: set[str] = set()
    todo = [target]
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        stage = by_name[name]
        todo.append(stage.image)
        for instruction in stage.find("COPY"):
            flags, _, _ = copy_sources(instruction)
            if "from" in flags:
                todo.append(flags["from"])
    return seen


def build_chain(service: Service) -> list[Instruction]:
    """The instructions that make the ``build`` stage as ``--build-arg SERVICE=<package>`` builds
    it: those of the stages it is built FROM first."""
    by_name = {s.name: s for s in stages_of(service)}
    chain = [by_name["build"]]
    while chain[0].image in by_name:
        chain.insert(0, by_name[chain[0].image])
    return [i for s in chain for i in s.instructions]


def build_stage(service: Service) -> Stage:
    return {s.name: s for s in stages_of(service)}["build"]
