"""The image's build steps, checked as far as possible without a container runtime: the
Dockerfile's shape and COPY sources, the component commands, and a wheel installed into a
clean virtual environment whose console scripts start."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest
from tests.k8s.k8s_render import ADMIN_PORTS, COMPONENTS, REPO
from tests.k8s.k8s_objects import by_name, containers

DOCKERFILE = REPO / "deploy" / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def dockerignored(path: str) -> bool:
    """Apply the top-level .dockerignore (last matching pattern wins) to a context path."""
    ignored = False
    for pattern in (REPO / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            ignored = not negate
    return ignored


def test_copy_sources_exist_and_are_in_the_context():
    """Every COPY from the build context names an existing path the .dockerignore lets in."""
    copies = [args for word, args in instructions() if word == "COPY" and "--from" not in args]
    assert copies
    for args in copies:
        *sources, _destination = [a for a in args.split() if not a.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"COPY source {source} does not exist"
            assert not dockerignored(source), f"COPY source {source} is excluded by .dockerignore"


def test_every_package_is_copied():
    """The builder copies every package setuptools packages (else the wheel lacks it)."""
    copied = {
        args.split()[0].rstrip("/")
        for word, args in instructions() if word == "COPY" and "--from" not in args
    }
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in include:
        assert pattern.rstrip("*") in copied, pattern


def test_multi_stage_slim_non_root():
    """A builder stage builds the wheel into a venv; the final stage is slim Python 3.11, copies
    only the venv, installs no compiler and runs as a numeric non-root user."""
    builder, final = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    build_text = " ".join(args for _, args in builder)
    assert "pip wheel" in build_text and re.search(r"python3? -m venv /opt/passgate", build_text)
    args = {word: args for word, args in reversed(final)}
    base = dict(i for i in instructions() if i[0] == "ARG")["ARG"]
    assert re.search(r"python:3\.11-slim", base), base
    assert args["FROM"] == "${PYTHON_IMAGE}"
    user = args["USER"].split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user), args["USER"]
    final_text = " ".join(a for _, a in final)
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", final_text)
    assert "RUN" not in {word for word, _ in final}, "nothing is built in the final stage"
    copies = [a for w, a in final if w == "COPY"]
    assert copies == ["--from=builder /opt/passgate /opt/passgate"]
    assert "/opt/passgate/bin" in args["ENV"].split("PATH=")[1].split()[0]


def test_image_exposes_every_port_the_manifests_use(rendered):
    """EXPOSE lists each component's API port and admin port (the services' 9090 included),
    and the manifests' container ports are exactly those."""
    (exposed,) = [args for word, args in stages()[-1] if word == "EXPOSE"]
    ports = {int(p.split("/")[0]) for p in exposed.split()}
    assert ports == set(COMPONENTS.values()) | set(ADMIN_PORTS.values())
    for objects in rendered.values():
        for name in COMPONENTS:
            server = next(containers(by_name(objects, "Deployment")[name]))
            assert {p["containerPort"] for p in server["ports"]} <= ports, name


def test_component_commands_are_console_scripts(rendered):
    """Each Deployment's command is a console script pyproject declares (init containers run
    its `migrate` subcommand), and it names its own component."""
    for objects in rendered.values():
        for name in COMPONENTS:
            workload = by_name(objects, "Deployment")[name]
            server = next(containers(workload))
            assert server["command"] == [f"passgate-{name}"]
            assert server["command"][0] in SCRIPTS
            for init in workload["spec"]["template"]["spec"].get("initContainers", []):
                assert init["command"] == [f"passgate-{name}", "migrate"]


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory) -> Path:
    """Build the wheel (offline: no build isolation) and install it with --no-deps into a fresh
    venv; dependencies come from this venv's site-packages through a .pth path entry (a path
    entry, so the editable install's own .pth hooks are NOT run and the source tree stays out)."""
    root = tmp_path_factory.mktemp("image")
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(wheels), str(REPO)],
        check=True, timeout=120, cwd=root,
    )
    (wheel,) = wheels.glob("passgate-*.whl")
    target = root / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
         "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True, timeout=120, cwd=root,
    )
    site = subprocess.run(
        [str(target / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    (Path(site) / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return target


def _run(venv_dir: Path, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{venv_dir / 'bin'}:/usr/bin:/bin", "HOME": str(venv_dir),
           "PASSGATE_HOST": "127.0.0.1", "PASSGATE_PORT": "0", **extra}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=venv_dir, env=env)


@pytest.mark.slow
def test_wheel_installs_from_the_wheel_not_the_tree(clean_venv):
    """The clean venv imports the packages from the installed wheel, and the wheel's declared
    dependencies are all satisfied (what a full install would bring)."""
    code = (
        "import importlib.metadata as md, common, gateway, services\n"
        "from packaging.requirements import Requirement\n"
        "print(common.__file__)\n"
        "for spec in md.requires('passgate') or []:\n"
        "    req = Requirement(spec)\n"
        "    if req.marker and not req.marker.evaluate({'extra': ''}): continue\n"
        "    assert req.specifier.contains(md.version(req.name), prereleases=True), spec\n"
    )
    result = _run(clean_venv, str(clean_venv / "bin" / "python"), "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(clean_venv)), result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("component", list(COMPONENTS))
def test_component_command_starts_from_the_wheel(clean_venv, component):
    """Each component's console script runs from the installed wheel: the services answer
    `--help` (listing `migrate`); the gateway, whose bare command serves, runs its `lint`
    command on the routes file and CORS origins the Kubernetes ConfigMap mounts."""
    module = SCRIPTS[f"passgate-{component}"].split(":")[0]
    if not (REPO / (module.replace(".", "/") + ".py")).exists():
        pytest.skip(f"{module} is not written yet")
    script = clean_venv / "bin" / f"passgate-{component}"
    assert script.exists()
    if component == "gateway":
        result = _run(clean_venv, str(script), "lint",
                      PASSGATE_ROUTES_FILE=str(REPO / "deploy/k8s/base/gateway-routes.yaml"),
                      PASSGATE_CORS_ORIGINS="https://app.example.com,https://admin.example.org")
        assert result.returncode == 0, result.stdout + result.stderr[-2000:]
        assert "0 error(s)" in result.stdout
        return
    result = _run(clean_venv, str(script), "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()
    assert "migrate" in result.stdout
