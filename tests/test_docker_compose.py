"""docker-compose.yaml, .env.example and the Dockerfiles agree with the project.

No Docker engine is needed (nor `docker compose config`): the files are read as data. The checks
catch what otherwise breaks far away, at `docker compose up` or in a pod: a path, volume or
service that is not there, a secret nobody documented, an AERODROME_* variable no code reads, a
port open beyond the host, an image that drifts from the pinned environment.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
AIRFLOW_DOCKERFILE = ROOT / "docker" / "airflow" / "Dockerfile"
TRAINER_DOCKERFILE = ROOT / "docker" / "trainer" / "Dockerfile"
DOCKERFILES = sorted(ROOT.glob("docker/*/Dockerfile"))

# AERODROME_* variables that the stack sets for stages not built yet, with the stage that will
# read them. Remove an entry when its stage lands: the test fails while a listed name is read.
READ_BY_STAGES_NOT_BUILT_YET: dict[str, str] = {}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$|AUTH$")
URL_PASSWORD = re.compile(r"://[^:/@\s]*:(.*?)@")
KEY_FILES = {"AERODROME_SIGNING_KEY"}  # the path of a key file mounted from a volume, not the key itself
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+alt}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?|\$([A-Za-z_][A-Za-z0-9_]*)")
HEALTH_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
AIRFLOW_COMMAND = re.compile(r"\bairflow (api-server|scheduler|dag-processor|triggerer|db migrate)\b")
PROJECT_INSTALL = re.compile(r"pip install (?:--\S+ )*(?:-e )?\.(?:\s|$)")


# --- reading the files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    assert compose.get("services"), "docker-compose.yaml defines no services"
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command(service: dict) -> str:
    cmd = service.get("command") or ""
    return " ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)


def project_python() -> str:
    """`3.11` from pyproject's requires-python (`>=3.11,<3.12`)."""
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    return re.search(r"\d+\.\d+", spec).group(0)


def strings(node) -> list[str]:
    """Every string value below `node` (comments are already gone)."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def variables(text: str) -> dict[str, bool]:
    """Variables interpolated in `text` -> whether compose requires them (no default)."""
    found: dict[str, bool] = {}
    for match in VARIABLE.finditer(text.replace("$$", "")):  # `$$` escapes a literal `$`
        name = match.group(1) or match.group(3)
        operator = match.group(2)
        required = operator is None or "?" in operator
        found[name] = found.get(name, False) or required
    return found


def compose_variables(compose: dict) -> dict[str, bool]:
    found: dict[str, bool] = {}
    for text in strings(compose):
        for name, required in variables(text).items():
            found[name] = found.get(name, False) or required
    return found


def env_example() -> tuple[dict[str, str], set[str]]:
    """(`NAME=value` lines, names only shown commented out as `# NAME=default`)."""
    assert ENV_EXAMPLE.is_file(), ".env.example is missing: it documents the stack's variables"
    active, commented = {}, set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if m := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip()):
            active[m.group(1)] = m.group(2)
        elif m := re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=.*", line.strip()):
            commented.add(m.group(1))
    return active, commented


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, args = (current + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, f"{path}: ends inside a continued line"
    return instructions


def arg_defaults(instructions) -> dict[str, str]:
    pairs = [a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a]
    return {name: value.strip("\"'") for name, value in pairs}


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def base_image(instructions) -> str:
    return expand(next(a for k, a in instructions if k == "FROM").split()[0], arg_defaults(instructions))


def copy_sources(instructions) -> list[str]:
    """Build-context paths of COPY/ADD (not those copied from another stage or image)."""
    sources = []
    for keyword, args in instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        tokens = json.loads(args) if args.startswith("[") else shlex.split(args)
        if any(t.startswith("--from") for t in tokens):
            continue
        paths = [t for t in tokens if not t.startswith("--")]
        assert len(paths) >= 2, f"{keyword} {args}: needs a source and a destination"
        sources += paths[:-1]
    return sources


def workdir(instructions) -> str:
    return [a for k, a in instructions if k == "WORKDIR"][-1]


def build_context(services: dict, path: Path) -> Path:
    """The build context compose uses for the Dockerfile `path` (project root if none does)."""
    for service in services.values():
        build = service.get("build")
        if isinstance(build, dict):
            context = ROOT / build.get("context", ".")
            if (context / build.get("dockerfile", "Dockerfile")).resolve() == path.resolve():
                return context
    return ROOT


def dockerfile_of(services: dict, name: str) -> Path | None:
    """The Dockerfile that builds the image service `name` runs, whichever service builds it."""
    image = services[name].get("image")
    for service in services.values():
        build = service.get("build")
        if build and (service is services[name] or (image and service.get("image") == image)):
            build = build if isinstance(build, dict) else {"context": build}
            return ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    return None


def volume_mounts(service: dict) -> list[tuple[str, str, str]]:
    """(kind, source, target) with kind 'bind', 'volume' or 'anonymous'."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            kind, source, target = entry.get("type", "volume"), entry.get("source", ""), entry["target"]
        else:
            parts = entry.split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        mounts.append((kind if source else "anonymous", source, target))
    return mounts


# --- compose ----------------------------------------------------------------------------------


def test_every_service_has_an_image_or_a_build(services):
    missing = [name for name, s in services.items() if not (s.get("image") or s.get("build"))]
    assert not missing, f"services without image or build: {missing}"


def test_build_contexts_and_dockerfiles_exist(services):
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        build = build if isinstance(build, dict) else {"context": build}
        context = ROOT / build.get("context", ".")
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        dockerfile_path = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile_path.is_file(), f"{name}: Dockerfile {dockerfile_path} does not exist"


def test_every_project_dockerfile_is_built_by_compose(services):
    built = {dockerfile_of(services, name).resolve() for name in services if dockerfile_of(services, name)}
    assert AIRFLOW_DOCKERFILE.resolve() in built and TRAINER_DOCKERFILE.resolve() in built, built


def test_relative_bind_mounts_exist(services):
    binds = [(n, src) for n, s in services.items() for kind, src, _ in volume_mounts(s) if kind == "bind"]
    assert binds, "expected at least the PostgreSQL init script to be bind-mounted"
    for name, source in binds:
        assert not source.startswith(("/", "~")), f"{name}: host path {source} ties compose to one machine"
        assert (ROOT / source).exists(), f"{name}: bind-mounted {source} does not exist in the project"


def test_named_volumes_are_declared_and_used(compose, services):
    declared = set(compose.get("volumes") or {})
    used = {src for s in services.values() for kind, src, _ in volume_mounts(s) if kind == "volume"}
    assert used <= declared, f"volumes used but not declared: {sorted(used - declared)}"
    assert declared <= used, f"volumes declared but not used: {sorted(declared - used)}"


def test_depends_on_names_services_with_valid_conditions(services):
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        for target, spec in depends.items():
            assert target in services, f"{name} depends on {target!r}, which is not a service"
            assert target != name, f"{name} depends on itself"
            condition = (spec or {}).get("condition", "service_started")
            assert condition in HEALTH_CONDITIONS, f"{name} -> {target}: unknown condition {condition}"
            if condition == "service_healthy":
                check = services[target].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), (
                    f"{name} waits for {target} to be healthy, but {target} has no health check"
                )
            if condition == "service_completed_successfully":
                # a one-shot that compose restarts after success would run forever
                assert str(services[target].get("restart", "no")) == "no", f"{target} must not restart"


def test_every_service_states_its_health_check(services):
    # the Airflow image has a default HEALTHCHECK for the API server; others must override it
    missing = [name for name, s in services.items() if "healthcheck" not in s]
    assert not missing, f"services without a healthcheck (a test, or `disable: true`): {missing}"


def test_published_ports_bind_to_loopback_only(services):
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name}: host networking bypasses port binding"
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: port {port} is not bound to 127.0.0.1"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: port {port!r} is not bound to 127.0.0.1"


def test_required_variables_are_documented_in_env_example(compose):
    active, commented = env_example()
    used = compose_variables(compose)
    assert used, "docker-compose.yaml interpolates no variable: where do its secrets come from?"
    undocumented_required = sorted(n for n, required in used.items() if required and n not in active)
    assert not undocumented_required, f"required but not set in .env.example: {undocumented_required}"
    undocumented = sorted(set(used) - set(active) - commented)
    assert not undocumented, f"optional variables missing from .env.example: {undocumented}"
    stale = sorted((set(active) | commented) - set(used))
    assert not stale, f".env.example documents variables compose does not use: {stale}"


def test_env_example_holds_no_secret_values():
    active, _ = env_example()
    filled = [name for name, value in active.items() if SECRET_NAME.search(name) and value.strip()]
    assert not filled, f".env.example must leave secrets empty: {filled}"


def test_no_secret_is_written_inline(services):
    for name, service in services.items():
        for key, value in environment(service).items():
            if key in KEY_FILES:
                assert value.startswith("/"), f"{name}: {key} must be the path of a mounted key file"
            elif SECRET_NAME.search(key):
                assert "${" in value, f"{name}: {key} is written inline; take it from the environment"
            for password in URL_PASSWORD.findall(value):
                assert password.startswith("${"), f"{name}: {key} embeds a literal password"


def test_aerodrome_variables_are_read_by_the_code(services):
    source = "\n".join(p.read_text() for d in ("include", "plugins") for p in (ROOT / d).rglob("*.py"))

    def read(name: str) -> bool:
        return re.search(rf"[\"']{name}[\"']", source) is not None

    set_by_stack = {key for s in services.values() for key in environment(s) if key.startswith("AERODROME_")}
    for path in DOCKERFILES:
        for keyword, args in dockerfile(path):
            if keyword == "ENV":
                set_by_stack |= set(re.findall(r"\b(AERODROME_[A-Z0-9_]+)=", args))
    assert set_by_stack, "the stack sets no AERODROME_* variable"
    unread = sorted(n for n in set_by_stack if not read(n) and n not in READ_BY_STAGES_NOT_BUILT_YET)
    assert not unread, f"set by the stack but read by no code in include/ or plugins/: {unread}"
    now_read = sorted(n for n in READ_BY_STAGES_NOT_BUILT_YET if read(n))
    assert not now_read, f"now read by the code: remove from READ_BY_STAGES_NOT_BUILT_YET: {now_read}"
    unused = sorted(set(READ_BY_STAGES_NOT_BUILT_YET) - set_by_stack)
    assert not unused, f"READ_BY_STAGES_NOT_BUILT_YET lists names the stack no longer sets: {unused}"


def test_airflow_components_share_one_configuration(services):
    components = {name: s for name, s in services.items() if AIRFLOW_COMMAND.search(command(s))}
    run = {AIRFLOW_COMMAND.search(command(s)).group(1) for s in components.values()}
    missing = {"api-server", "scheduler", "dag-processor", "triggerer", "db migrate"} - run
    assert not missing, f"no service runs airflow {sorted(missing)}"
    configs = []
    for name, service in components.items():
        env = environment(service)
        assert env.get("AIRFLOW__CORE__EXECUTOR") == "aerodrome_airflow.executor.WarmLocalExecutor", name
        assert env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "").startswith("postgresql+psycopg2://"), name
        for secret in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"):
            assert variables(env.get(secret, "")), f"{name}: {secret} must come from the environment"
        url = env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "")
        host = re.match(r"https?://([^:/]+)", url)
        assert host and host.group(1) in services, f"{name}: execution API {url!r} names no service"
        assert "airflow api-server" in command(services[host.group(1)]), f"{url} is not the API server"
        assert dockerfile_of(services, name) == AIRFLOW_DOCKERFILE, f"{name} does not run the Airflow image"
        configs.append(env)
    for key in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__FERNET_KEY",
    ):
        assert len({c.get(key) for c in configs}) == 1, f"{key} differs between Airflow components"


def test_data_root_is_a_mounted_volume_wherever_it_is_set(services):
    for name, service in services.items():
        root = environment(service).get("AERODROME_DATA_ROOT")
        if root is None:
            continue
        targets = {t for kind, _, t in volume_mounts(service) if kind == "volume"}
        assert root in targets, f"{name}: AERODROME_DATA_ROOT {root} is not on a named volume (data lost)"


def test_usecases_dir_is_copied_into_the_image(services):
    checked = 0
    for name in services:
        path = dockerfile_of(services, name)
        usecases = environment(services[name]).get("AERODROME_USECASES_DIR")
        if path is None or usecases is None:
            continue
        instructions = dockerfile(path)
        home = workdir(instructions).rstrip("/") + "/"
        assert usecases.startswith(home), f"{name}: {usecases} is outside the image's project root {home}"
        relative = usecases[len(home) :]
        assert (ROOT / relative).is_dir(), f"{name}: {relative} does not exist in the project"
        copied = [s.rstrip("/") for s in copy_sources(instructions)]
        assert any(relative == s or relative.startswith(s + "/") for s in copied), f"{relative} not copied"
        checked += 1
    assert checked, "no service sets AERODROME_USECASES_DIR"


# --- Dockerfiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_copy_sources_exist(path, services):
    context = build_context(services, path)
    sources = copy_sources(dockerfile(path))
    assert sources, f"{path}: copies nothing from the project"
    for source in sources:
        matches = list(context.glob(source.rstrip("/"))) if any(c in source for c in "*?[") else []
        assert (context / source).exists() or matches, f"{path}: COPY source {source} not in {context}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_runs_as_a_non_root_user(path):
    instructions = dockerfile(path)
    users = [expand(a, arg_defaults(instructions)) for k, a in instructions if k == "USER"]
    assert users, f"{path}: no USER, so the container runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and "$" not in user, f"{path}: runs as {users[-1]!r}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_hard_codes_no_package_index(path):
    runs = " ".join(a for k, a in dockerfile(path) if k == "RUN")
    hosts = re.findall(r"https?://([^/\s\"']+)", runs)
    assert not hosts, f"{path}: hard-coded hosts {hosts}; pass indexes as build arguments"
    for option in re.findall(r"--(?:extra-)?index-url[ =](\S+)", runs):
        assert option.strip("\"'").startswith("${"), f"{path}: index {option} is not a build argument"


def test_airflow_image_installs_the_pinned_environment(services):
    instructions = dockerfile(AIRFLOW_DOCKERFILE)
    image = base_image(instructions)
    assert fnmatch(image, f"python:{project_python()}-slim*"), f"{image} is not python:{project_python()}-slim"
    runs = [a for k, a in instructions if k == "RUN"]
    install = [r for r in runs if re.search(r"pip install .*-r requirements\.txt", r)]
    assert install, "the Airflow image does not install requirements.txt"
    constrained = re.search(r"(-c|--constraint)[ =]constraints\.txt", install[0])
    assert constrained, "requirements.txt is installed without constraints.txt"
    assert {"requirements.txt", "constraints.txt"} <= set(copy_sources(instructions))
    assert any(PROJECT_INSTALL.search(r) for r in runs), "the project itself is not installed"
    torch = [r for r in runs if "torch==" in r and "--index-url" in r]
    assert torch and "TORCH_INDEX_URL" in torch[0], "torch must come from the TORCH_INDEX_URL build argument"
    assert "TORCH_INDEX_URL" in {a.split("=")[0] for k, a in instructions if k == "ARG"}
    for name in ("dags/", "plugins/", "include/", "pyproject.toml", "airflow_settings.yaml"):
        assert name in copy_sources(instructions), f"the Airflow image does not copy {name}"
    assert {"AIRFLOW_HOME=/opt/airflow"} <= set(" ".join(a for k, a in instructions if k == "ENV").split())
    build_args = (services["airflow-init"].get("build") or {}).get("args") or {}
    assert "TORCH_INDEX_URL" in build_args, "compose does not pass TORCH_INDEX_URL to the Airflow build"


def test_trainer_image_is_cuda_python_and_runs_the_training_entrypoint():
    instructions = dockerfile(TRAINER_DOCKERFILE)
    image = base_image(instructions)
    assert re.fullmatch(r"nvidia/cuda:12\.\d+(\.\d+)?-(cudnn-)?runtime-ubuntu\d+\.\d+", image), image
    runs = " ".join(a for k, a in instructions if k == "RUN")
    assert "python3.11" in runs, "the trainer must run the project's Python 3.11"
    for package in ("torch==", "xgboost", "constraints"):
        assert package in runs, f"the trainer image does not install {package}"
    assert PROJECT_INSTALL.search(runs), "the aerodrome library is not installed"
    entrypoint = [json.loads(a) for k, a in instructions if k == "ENTRYPOINT"]
    assert entrypoint[-1:] == [["python", "-m", "aerodrome.train.entrypoint"]], entrypoint
    envs = " ".join(a for k, a in instructions if k == "ENV")
    assert "AERODROME_CODE_VERSION=${CODE_VERSION}" in envs, "the image has no .git: it must carry its code version"
