"""Static checks of the deployment files: Dockerfile, .dockerignore, docker-compose.yml, docker/.

No Docker needed. Each check is a function that returns a list of problems; the tests assert
that the real files have none, and feed each check a broken input to show that it can fail.
docker-compose.yml is validated against the Compose Specification's JSON schema, vendored in
tests/data/compose-spec.json from compose-spec/compose-spec (schema/compose-spec.json).
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import jwt
import pytest
import yaml

from app.core.config import KEY_SETTINGS, PIPELINE_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
KONG_CONFIG = ROOT / "docker" / "kong" / "kong.yml"
KONG_ENTRYPOINT = ROOT / "docker" / "kong" / "kong-entrypoint.sh"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"

SETTING_NAMES = {name.upper() for name in Settings.model_fields}
REQUIRED_SETTINGS = set(PIPELINE_SETTINGS)  # the stack connects the bucket pipeline
APP_PORT = 8000

# ---------------------------------------------------------------------------------------------
# Compose variable interpolation (the subset the Compose Specification defines)

_VAR = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


@dataclass
class VarUse:
    name: str
    op: str | None
    default: str | None


def variable_uses(text: str) -> list[VarUse]:
    uses = []
    for m in _VAR.finditer(text):
        if m.group(0) == "$$":
            continue
        if m.group("bare"):
            uses.append(VarUse(m.group("bare"), None, None))
        else:
            uses.append(VarUse(m.group("braced"), m.group("op"), m.group("arg")))
    return uses


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """What `docker compose` makes of `value` with only `env` set ($$ becomes $)."""
    env = env or {}
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else current  # type: ignore[return-value]
        return current or ""

    return _VAR.sub(one, value)


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# ---------------------------------------------------------------------------------------------
# Compose checks


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def schema_problems(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(load_schema())
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    ref, _, digest = image.partition("@")
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag, digest or None
    return ref, None, digest or None


def image_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in doc["services"].items():
        if "image" not in svc:
            if "build" not in svc:
                problems.append(f"{name}: neither image nor build")
            continue
        image = interpolate(svc["image"])
        repo, tag, digest = split_image(image)
        if digest is None and (tag is None or tag == "latest" or not tag):
            problems.append(f"{name}: image {image!r} is not pinned to a version")
        if "$" in str(svc["image"]):
            problems.append(f"{name}: image {svc['image']!r} depends on the environment")
    return problems


def build_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in doc["services"].items():
        build = svc.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (ROOT / build.get("context", ".")).resolve()
        if not context.is_dir():
            problems.append(f"{name}: build context {context} does not exist")
            continue
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        if not dockerfile.is_file():
            problems.append(f"{name}: {dockerfile} does not exist")
            continue
        declared = {a.name for a in parse_dockerfile(dockerfile.read_text()).args}
        args = build.get("args") or {}
        names = args if isinstance(args, dict) else [a.split("=", 1)[0] for a in args]
        for arg in names:
            if arg not in declared:
                problems.append(f"{name}: build arg {arg} is not an ARG of {dockerfile.name}")
    return problems


def split_volume(spec: str | dict[str, Any]) -> tuple[str | None, str, str]:
    """(source, target, type) of a service volume, short or long syntax."""
    if isinstance(spec, dict):
        return spec.get("source"), spec["target"], spec["type"]
    parts = interpolate(spec).split(":")
    if len(parts) == 1:
        return None, parts[0], "volume"
    source, target = parts[0], parts[1]
    kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    return source, target, kind


def mount_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    named = set(doc.get("volumes") or {})
    for name, svc in doc["services"].items():
        for spec in svc.get("volumes") or []:
            source, target, kind = split_volume(spec)
            if not target.startswith("/"):
                problems.append(f"{name}: mount target {target!r} is not absolute")
            if kind == "bind":
                assert source is not None
                if not source.startswith("./"):
                    problems.append(f"{name}: bind source {source!r} is outside the repository")
                elif not (ROOT / source).exists():
                    problems.append(f"{name}: bind source {source} does not exist")
            elif kind == "volume" and source is not None and source not in named:
                problems.append(f"{name}: volume {source!r} is not declared under volumes")
    return problems


def parse_port(spec: Any) -> tuple[str | None, int | None, int, str]:
    """(host_ip, published, target, protocol) of a short-syntax port or a long-syntax one."""
    if isinstance(spec, dict):
        published = spec.get("published")
        return (
            spec.get("host_ip"),
            int(interpolate(str(published))) if published is not None else None,
            int(spec["target"]),
            spec.get("protocol", "tcp"),
        )
    text = interpolate(str(spec))
    text, _, protocol = text.partition("/")
    parts = text.rsplit(":", 2)
    target = int(parts[-1])
    published = int(parts[-2]) if len(parts) >= 2 else None
    host_ip = parts[0] if len(parts) == 3 else None
    return host_ip, published, target, protocol or "tcp"


def port_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    seen: dict[tuple[str | None, int, str], str] = {}
    for name, svc in doc["services"].items():
        for spec in svc.get("ports") or []:
            try:
                host_ip, published, target, protocol = parse_port(spec)
            except (ValueError, KeyError) as exc:
                problems.append(f"{name}: port {spec!r} does not parse ({exc})")
                continue
            if protocol not in ("tcp", "udp"):
                problems.append(f"{name}: port {spec!r}: protocol {protocol!r}")
            for port in (published, target):
                if port is not None and not 1 <= port <= 65535:
                    problems.append(f"{name}: port {spec!r}: {port} is out of range")
            if published is None:
                problems.append(f"{name}: port {spec!r} publishes a random host port")
                continue
            key = (host_ip or "0.0.0.0", published, protocol)
            if key in seen:
                problems.append(f"{name}: host port {published} is also taken by {seen[key]}")
            seen[key] = name
    return problems


def has_healthcheck(name: str, svc: dict[str, Any]) -> bool:
    check = svc.get("healthcheck")
    if check is not None:
        return not check.get("disable", False) and check.get("test") not in (None, ["NONE"])
    if "build" in svc:
        build = svc["build"] if isinstance(svc["build"], dict) else {"context": svc["build"]}
        dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        return parse_dockerfile(dockerfile.read_text()).final.has("HEALTHCHECK")
    return False


def depends_on_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    services = doc["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep!r}")
                continue
            if dep == name:
                problems.append(f"{name}: depends on itself")
            condition = spec.get("condition")
            if condition == "service_healthy" and not has_healthcheck(dep, services[dep]):
                problems.append(f"{name}: waits for {dep} to be healthy, but it has no check")
            if condition == "service_completed_successfully" and services[dep].get(
                "restart", "no"
            ) not in ("no", "on-failure"):
                problems.append(f"{name}: waits for {dep} to complete, but it restarts")
    # no cycles
    graph = {n: set(s.get("depends_on") or {}) for n, s in services.items()}
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in done or node not in graph:
            return
        if node in visiting:
            problems.append("depends_on cycle: " + " -> ".join([*path, node]))
            return
        visiting.add(node)
        for nxt in graph[node]:
            visit(nxt, [*path, node])
        visiting.discard(node)
        done.add(node)

    for node in graph:
        visit(node, [])
    return problems


def captioner_env_problems(doc: dict[str, Any], service: str = "captioner") -> list[str]:
    svc = doc["services"].get(service)
    if svc is None:
        return [f"no {service} service"]
    env = environment_of(svc)
    problems = [
        f"{k} is not a setting of app.core.config.Settings" for k in env if k not in SETTING_NAMES
    ]
    resolved = interpolate(env)
    for name in sorted(REQUIRED_SETTINGS - set(KEY_SETTINGS)):
        if not resolved.get(name):
            problems.append(f"required setting {name} is not set (or empty by default)")
    if not any(resolved.get(name) for name in KEY_SETTINGS):
        problems.append(f"none of {', '.join(KEY_SETTINGS)} is set (or non-empty by default)")
    return problems


def variable_default_problems(text: str) -> list[str]:
    """Every ${VAR} has a default (so `docker compose up` needs no .env), the same everywhere."""
    problems = []
    defaults: dict[str, set[str]] = {}
    for use in variable_uses(text):
        if use.op not in (":-", "-"):
            problems.append(f"${{{use.name}}} has no default")
            continue
        defaults.setdefault(use.name, set()).add(use.default or "")
    for name, values in defaults.items():
        if len(values) > 1:
            problems.append(f"${{{name}}} has different defaults: {sorted(values)}")
    return problems


def migrate_problems(doc: dict[str, Any], service: str = "migrate") -> list[str]:
    svc = doc["services"].get(service)
    if svc is None:
        return [f"no {service} service"]
    problems = []
    targets = {}
    for spec in svc.get("volumes") or []:
        source, target, kind = split_volume(spec)
        if kind == "bind" and source is not None:
            targets[(ROOT / source).resolve()] = target
    migrations = (ROOT / "migrations").resolve()
    target = targets.get(migrations)
    if target is None:
        problems.append(f"{service} does not mount ./migrations")
    else:
        command = " ".join(map(str, _as_list(svc.get("entrypoint")) + _as_list(svc.get("command"))))
        if f"{target}/*.sql" not in command:
            problems.append(f"{service}'s command does not apply {target}/*.sql")
        if "psql" not in command or "ON_ERROR_STOP=1" not in command:
            problems.append(f"{service} does not run psql with ON_ERROR_STOP=1")
    deps = svc.get("depends_on") or {}
    for needed in ("db", "storage"):
        if (deps.get(needed) or {}).get("condition") != "service_healthy":
            problems.append(f"{service} does not wait for {needed} to be healthy")
    if not sorted(migrations.glob("*.sql")):
        problems.append("migrations/ has no .sql files")
    return problems


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def demo_defaults() -> dict[str, str]:
    """The `${VAR:-default}` defaults of docker-compose.yml: the demo values."""
    uses = variable_uses(COMPOSE_FILE.read_text())
    return {u.name: u.default or "" for u in uses if u.op == ":-"}


def kong_environment(doc: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    """The kong container's environment, with `env` as the compose variables."""
    return dict(interpolate(environment_of(doc["services"]["kong"]), env))


def run_gateway_entrypoint(
    env: dict[str, str], tmp_path: Path, template: Path = KONG_CONFIG
) -> subprocess.CompletedProcess[str]:
    """docker/kong/kong-entrypoint.sh run here with the container's `env`, rendering
    `template` into tmp_path/kong.yml and running `true` instead of Kong."""
    rendered = tmp_path / "kong.yml"
    rendered.unlink(missing_ok=True)
    paths = {"KONG_CONFIG_TEMPLATE": str(template), "KONG_DECLARATIVE_CONFIG": str(rendered)}
    return subprocess.run(
        ["sh", str(KONG_ENTRYPOINT), "true"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env, **paths},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def render_gateway(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """The declarative config Kong loads, as the entrypoint renders it for `env`."""
    done = run_gateway_entrypoint(env, tmp_path)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load((tmp_path / "kong.yml").read_text())
    return config


def credentials(config: dict[str, Any]) -> dict[str, set[str]]:
    """Each consumer's key-auth keys."""
    return {
        c["username"]: {k["key"] for k in c["keyauth_credentials"]} for c in config["consumers"]
    }


def plugins_of(config: dict[str, Any], service: str) -> dict[str, dict[str, Any]]:
    (found,) = [s for s in config["services"] if s["name"] == service]
    return {p["name"]: p.get("config") or {} for p in found["plugins"]}


def lua_authorization(template: str) -> Callable[[dict[str, str]], str | None]:
    """A request-transformer value `$(<Lua expression>)` as a function of the request's
    headers (lower-case names). The expression's Lua (and/or, ==, ~=, nil, .., s:sub(1, 10))
    is translated to the Python that means the same for non-empty strings."""
    assert template.startswith("$(") and template.endswith(")"), template
    python = re.sub(r"headers\.(\w+)", r"headers.get('\1')", template[2:-1])
    for lua, py in ((":sub(1, 10)", "[:10]"), ("~=", "!="), (" nil", " None"), (" .. ", " + ")):
        python = python.replace(lua, py)
    code = compile(python, "LUA_AUTH_EXPR", "eval")

    def authorization(headers: dict[str, str]) -> str | None:
        value = eval(code, {"__builtins__": {}}, {"headers": headers})
        return value or None

    return authorization


def bearer_role(authorization: str | None) -> str | None:
    """The role of `Bearer <JWT>` signed with the demo JWT_SECRET; None for anything else."""
    if authorization is None or not authorization.startswith("Bearer "):
        return None
    try:
        claims = jwt.decode(authorization[7:], demo_defaults()["JWT_SECRET"], algorithms=["HS256"])
    except jwt.InvalidTokenError:
        return None
    return str(claims["role"])


def _without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


# ---------------------------------------------------------------------------------------------
# Dockerfile parsing and checks


@dataclass
class Instruction:
    name: str
    args: str
    line: int

    def json_args(self) -> list[str] | None:
        try:
            value = json.loads(self.args)
        except ValueError:
            return None
        return value if isinstance(value, list) else None


@dataclass
class Arg:
    name: str
    default: str | None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def has(self, name: str) -> bool:
        return any(i.name == name for i in self.instructions)

    def all(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.name == name]


@dataclass
class Dockerfile:
    stages: list[Stage]
    args: list[Arg]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions, with `\\` continuations joined and comments dropped, split into stages."""
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        name, _, args = buffer.partition(" ")
        instructions.append(Instruction(name.upper(), args.strip(), start))
        buffer = ""
    stages: list[Stage] = []
    args: list[Arg] = []
    for ins in instructions:
        if ins.name == "ARG":
            for item in shlex.split(ins.args):
                key, eq, value = item.partition("=")
                args.append(Arg(key, value if eq else None))
        if ins.name == "FROM":
            words = ins.args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(ins)
    return Dockerfile(stages, args)


BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cargo|rustc)\b")


def copy_sources(ins: Instruction) -> tuple[list[str], dict[str, str]]:
    """(sources, flags) of a COPY/ADD instruction."""
    words = ins.json_args() or shlex.split(ins.args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return words[:-1], flags


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines() if DOCKERIGNORE.exists() else []
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    path = path.strip("/").removeprefix("./")
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/").removeprefix("./")
        candidates = [path] + [str(p) for p in Path(path).parents if str(p) != "."]
        if any(
            fnmatch.fnmatch(c, pat) or fnmatch.fnmatch(c, pat.removeprefix("**/"))
            for c in candidates
        ):
            ignored = not negate
    return ignored


def dockerfile_problems(df: Dockerfile) -> list[str]:
    problems = []
    if len(df.stages) < 2:
        problems.append(f"{len(df.stages)} FROM: not a multi-stage build")
        return problems
    names = {s.name for s in df.stages if s.name}
    final = df.final
    users = final.all("USER")
    if not users:
        problems.append("final stage has no USER (runs as root)")
    elif users[-1].args.split(":")[0] in ("root", "0"):
        problems.append(f"final stage runs as {users[-1].args}")
    checks = final.all("HEALTHCHECK")
    if not checks:
        problems.append("final stage has no HEALTHCHECK")
    elif "/healthz" not in checks[-1].args or "os.environ.get('PORT'" not in checks[-1].args:
        problems.append("HEALTHCHECK does not ask /healthz on the PORT the service listens on")
    for ins in final.all("RUN"):
        if BUILD_TOOLS.search(ins.args):
            problems.append(f"line {ins.line}: build tools in the final stage: {ins.args[:60]}")
    if str(APP_PORT) not in " ".join(i.args for i in final.all("EXPOSE")).split():
        problems.append(f"final stage does not EXPOSE {APP_PORT}")
    patterns = dockerignore_patterns()
    for stage in df.stages:
        for ins in stage.all("COPY") + stage.all("ADD"):
            sources, flags = copy_sources(ins)
            if "from" in flags:
                if flags["from"] not in names:
                    problems.append(f"line {ins.line}: COPY --from={flags['from']}: no stage")
                continue
            for source in sources:
                matches = (
                    list(ROOT.glob(source))
                    if any(c in source for c in "*?[")
                    else ([ROOT / source] if (ROOT / source).exists() else [])
                )
                if not matches:
                    problems.append(f"line {ins.line}: COPY source {source} does not exist")
                elif is_ignored(source, patterns):
                    problems.append(f"line {ins.line}: COPY source {source} is in .dockerignore")
    return problems


def env_of(stage: Stage) -> dict[str, str]:
    """The stage's ENV values (`ENV A=1 B=2` form), later ones winning."""
    values: dict[str, str] = {}
    for ins in stage.all("ENV"):
        for item in shlex.split(ins.args):
            key, _, value = item.partition("=")
            values[key] = value
    return values


def cmd_problems(df: Dockerfile) -> list[str]:
    """The CMD runs `captioner serve` (exit 0 after a graceful SIGTERM), which reads HOST,
    PORT and FORWARDED_ALLOW_IPS from the environment: the image's defaults are ENV, so that
    `-e PORT=...` is honoured (an option in CMD would win over it)."""
    cmds = df.final.all("CMD")
    if not cmds:
        return ["final stage has no CMD"]
    argv = cmds[-1].json_args()
    if argv is None:
        return ["CMD is not in exec (JSON) form: signals would go to a shell"]
    if argv[:2] != ["captioner", "serve"]:
        return [f"CMD runs {argv[:2]}, not `captioner serve`"]
    try:
        cli = importlib.import_module("app.commands.cli")
    except ImportError as exc:
        return [f"CMD runs captioner but app.commands.cli does not import: {exc}"]
    problems = []
    if "serve" not in {
        command.name or command.callback.__name__
        for command in cli.cli.registered_commands
        if command.callback
    }:
        problems.append("the CLI has no `serve` command")
    for option in ("--host", "--port", "--forwarded-allow-ips"):
        if option in argv:
            problems.append(f"CMD passes {option}: the environment's value would be ignored")
    env = env_of(df.final)
    expected = {"HOST": "0.0.0.0", "PORT": str(APP_PORT), "FORWARDED_ALLOW_IPS": "*"}
    for name, value in expected.items():
        if env.get(name) != value:
            problems.append(f"ENV {name} is {env.get(name)!r}, not {value!r}")
    if set(expected) - SETTING_NAMES:
        problems.append(f"not settings `serve` reads: {sorted(set(expected) - SETTING_NAMES)}")
    return problems


def image_problems_of(df: Dockerfile) -> list[str]:
    """What issue 19 found in the first build: the page's setting follows the build, torch
    cannot silently be the CUDA build, migrations and README are in, build arguments sit
    below the stable layers, and no pip/setuptools/wheel reach the runtime image."""
    problems = []
    builder, final = df.stages[0], df.final
    if env_of(final).get("UI_ENABLED") != "${WITH_UI}" or "WITH_UI" not in _args_of(final):
        problems.append("UI_ENABLED does not follow the WITH_UI build argument")
    runs = [ins.args for ins in builder.all("RUN")]
    torch = next((run for run in runs if "torch==" in run), "")
    if "+cpu" not in torch or "torch.version.cuda" not in torch:
        problems.append("torch is not required as the +cpu build (PyPI's CUDA wheel could win)")
    copied = [source for ins in builder.all("COPY") for source in copy_sources(ins)[0]]
    for needed in ("README.md", "migrations", "app"):
        if needed not in copied:
            problems.append(f"the builder does not COPY {needed}")
    stable = max(
        i
        for i, ins in enumerate(builder.instructions)
        if ins.name == "RUN" and ("apt-get" in ins.args or " venv " in ins.args)
    )
    first_arg = min(
        (i for i, ins in enumerate(builder.instructions) if ins.name == "ARG"),
        default=len(builder.instructions),
    )
    if first_arg < stable:
        problems.append("a build ARG sits above the apt and venv layers (rebuilt on each change)")
    if not any("uninstall -y pip setuptools wheel" in run for run in runs[-1:]):
        problems.append("pip, setuptools and wheel stay in the venv")
    if not any("uninstall -y pip setuptools wheel" in ins.args for ins in final.all("RUN")):
        problems.append("the base image's pip, setuptools and wheel stay in the runtime image")
    return problems


def _args_of(stage: Stage) -> set[str]:
    return {item.partition("=")[0] for ins in stage.all("ARG") for item in shlex.split(ins.args)}


def build_arg_problems(df: Dockerfile) -> list[str]:
    problems = []
    args = {a.name: a.default for a in df.args}
    expected = {"WITH_LOCAL_MODEL": "false", "WITH_UI": "true"}
    for name, default in expected.items():
        if name not in args:
            problems.append(f"no ARG {name}")
        elif args[name] != default:
            problems.append(f"ARG {name} defaults to {args[name]!r}, not {default!r}")
    runs = " ".join(i.args for s in df.stages for i in s.all("RUN"))
    for name in expected:
        if f"${name}" not in runs and f"${{{name}}}" not in runs:
            problems.append(f"ARG {name} is never used by a RUN")
    if "download.pytorch.org/whl/cpu" not in " ".join((a.default or "") for a in df.args) + runs:
        problems.append("torch is not installed from the PyTorch CPU index")
    return problems


# ---------------------------------------------------------------------------------------------
# Tests: the real files


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_vendored_schema_is_the_compose_spec() -> None:
    schema = load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"
    assert schema["$id"] == "compose_spec.json"
    for definition in ("service", "healthcheck", "network", "volume", "deployment", "command"):
        assert definition in schema["definitions"]
    service_keys = schema["definitions"]["service"]["properties"]
    assert {"build", "depends_on", "healthcheck", "image", "ports", "volumes"} <= set(service_keys)


def test_compose_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    assert schema_problems(compose) == []


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    assert image_problems(compose) == []


def test_compose_builds_exist(compose: dict[str, Any]) -> None:
    assert build_problems(compose) == []


def test_compose_mounts_exist(compose: dict[str, Any]) -> None:
    assert mount_problems(compose) == []


def test_compose_ports_are_sane(compose: dict[str, Any]) -> None:
    assert port_problems(compose) == []
    ports = [parse_port(p) for p in compose["services"]["captioner"].get("ports", [])]
    assert [target for _, _, target, _ in ports] == [APP_PORT]


def test_compose_depends_on(compose: dict[str, Any]) -> None:
    assert depends_on_problems(compose) == []


def test_compose_needs_no_env_file() -> None:
    assert variable_default_problems(COMPOSE_FILE.read_text()) == []


def test_captioner_environment_is_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert captioner_env_problems(compose) == []
    # and the values (defaults interpolated) make valid Settings
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    for key, value in interpolate(environment_of(compose["services"]["captioner"])).items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.supabase_url == "http://kong:8000"
    assert settings.public_webhook_url is not None


def test_captioner_is_wired_to_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = interpolate(environment_of(services["captioner"]))
    gateway = re.fullmatch(r"http://([\w-]+):(\d+)", env["SUPABASE_URL"])
    assert gateway, env["SUPABASE_URL"]
    assert gateway.group(1) in services
    gateway_ports = [parse_port(p)[2] for p in services[gateway.group(1)].get("ports", [])]
    assert int(gateway.group(2)) in gateway_ports
    hook = re.fullmatch(r"http://([\w-]+):(\d+)(/.*)", env["PUBLIC_WEBHOOK_URL"])
    assert hook, env["PUBLIC_WEBHOOK_URL"]
    assert hook.group(1) == "captioner" and int(hook.group(2)) == APP_PORT
    from app.main import create_app

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        supabase_url="http://kong:8000",
        supabase_secret_key="sb_secret_k",
        webhook_secret="s",
        ui_enabled=False,
    )
    paths = set(create_app(settings).openapi()["paths"])
    assert hook.group(3) in paths
    assert "/healthz" in paths
    deps = services["captioner"]["depends_on"]
    assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_migrate_applies_the_migrations(compose: dict[str, Any]) -> None:
    assert migrate_problems(compose) == []


def test_demo_keys_are_signed_with_the_demo_secret() -> None:
    text = COMPOSE_FILE.read_text()
    defaults = {u.name: u.default for u in variable_uses(text) if u.op == ":-"}
    secret = defaults["JWT_SECRET"]
    assert secret and len(secret) >= 32
    # the demo keys are minted for the demo secret and valid until 2100 (Supabase's own expire)
    assert jwt.decode(defaults["SERVICE_ROLE_KEY"], secret, algorithms=["HS256"])["role"] == (
        "service_role"
    )
    assert jwt.decode(defaults["ANON_KEY"], secret, algorithms=["HS256"])["role"] == "anon"


def test_gateway_config_routes_rest_and_storage(compose: dict[str, Any], tmp_path: Path) -> None:
    # every $NAME in kong.yml is the kong service's or one the entrypoint sets
    names = {u.name for u in variable_uses(KONG_CONFIG.read_text())}
    assert names <= set(environment_of(compose["services"]["kong"])) | {"LUA_AUTH_EXPR"}
    config = render_gateway(kong_environment(compose), tmp_path)
    routes = {
        path: service["url"]
        for service in config["services"]
        for route in service["routes"]
        for path in route["paths"]
    }
    assert routes["/rest/v1/"] == "http://rest:3000/"
    assert routes["/storage/v1/"] == "http://storage:5000/"
    for url in routes.values():
        assert re.match(r"http://([\w-]+):", url).group(1) in compose["services"]  # type: ignore[union-attr]


def test_kong_runs_the_entrypoint_on_its_mounted_files(compose: dict[str, Any]) -> None:
    kong = compose["services"]["kong"]
    mounts = {(ROOT / s).resolve(): t for s, t, _ in map(split_volume, kong["volumes"]) if s}
    script = mounts[KONG_ENTRYPOINT.resolve()]
    assert kong["entrypoint"] == ["sh", script]
    assert kong["command"] == ["/docker-entrypoint.sh", "kong", "docker-start"]
    text = KONG_ENTRYPOINT.read_text()
    default = re.search(r"template=\$\{KONG_CONFIG_TEMPLATE:-(\S+)\}", text)
    assert default and mounts[KONG_CONFIG.resolve()] == default.group(1)
    assert environment_of(kong)["KONG_DECLARATIVE_CONFIG"].startswith("/home/kong/")


def test_gateway_accepts_both_kinds_of_key_for_each_role(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    env = kong_environment(compose)
    assert env["SUPABASE_SECRET_KEY"].startswith("sb_secret_")
    assert env["SUPABASE_PUBLISHABLE_KEY"].startswith("sb_publishable_")
    config = render_gateway(env, tmp_path)
    assert credentials(config) == {
        "service_role": {env["SUPABASE_SERVICE_KEY"], env["SUPABASE_SECRET_KEY"]},
        "anon": {env["SUPABASE_ANON_KEY"], env["SUPABASE_PUBLISHABLE_KEY"]},
    }
    groups = {a["consumer"]: a["group"] for a in config["acls"]}
    assert groups == {"service_role": "admin", "anon": "anon"}
    rest = plugins_of(config, "rest-v1")
    assert set(rest["acl"]["allow"]) == {"admin", "anon"}
    # the request-transformer reads the apikey header after key-auth: it must stay
    assert rest["key-auth"]["hide_credentials"] is False


def test_gateway_swaps_opaque_keys_for_their_roles_jwts(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    env = kong_environment(compose)
    secret, publishable = env["SUPABASE_SECRET_KEY"], env["SUPABASE_PUBLISHABLE_KEY"]
    config = render_gateway(env, tmp_path)
    for service in ("rest-v1", "storage-v1"):
        transformer = plugins_of(config, service)["request-transformer"]
        # `add` where the request has no Authorization, `replace` where it has one
        assert transformer["add"]["headers"] == transformer["replace"]["headers"]
        (header,) = transformer["add"]["headers"]
        name, _, expression = header.partition(": ")
        assert name == "Authorization"
        authorization = lua_authorization(expression)
        roles = {
            "service_role": {"apikey": secret},
            "anon": {"apikey": publishable},
            # a key sent both ways (supabase-py does) is swapped too
            "service_role too": {"apikey": secret, "authorization": f"Bearer {secret}"},
            # a legacy key goes down as a Bearer token
            "anon too": {"apikey": env["SUPABASE_ANON_KEY"]},
        }
        for expected, headers in roles.items():
            assert bearer_role(authorization(headers)) == expected.removesuffix(" too"), headers
        # a user's JWT is left as it is
        user = "Bearer eyJ.user.token"
        assert authorization({"apikey": secret, "authorization": user}) == user
        # a key the gateway does not know goes down as it is, for the service to refuse
        # (key-auth refuses it first on /rest/v1)
        assert authorization({"apikey": "sb_secret_unknown"}) == "Bearer sb_secret_unknown"
        assert authorization({}) is None  # a signed URL: nothing added


def test_captioner_uses_the_gateways_secret_key(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    captioner = environment_of(services["captioner"])
    kong = environment_of(services["kong"])
    assert captioner["SUPABASE_SECRET_KEY"] == kong["SUPABASE_SECRET_KEY"]
    assert "SUPABASE_SERVICE_ROLE_KEY" not in captioner  # it would be ignored (doctor says so)
    own = {"SUPABASE_SECRET_KEY": "sb_secret_own"}
    assert interpolate(captioner, own)["SUPABASE_SECRET_KEY"] == "sb_secret_own"
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    for key, value in interpolate(captioner).items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.service_key is not None
    setting, key = settings.service_key
    assert (setting, key.kind, key.has_service_rights) == ("SUPABASE_SECRET_KEY", "secret", True)


def test_gateway_entrypoint_refuses_unsafe_keys(compose: dict[str, Any], tmp_path: Path) -> None:
    own_secret = "your-own-jwt-secret-with-at-least-32-characters"
    own_jwts = {
        "SERVICE_ROLE_KEY": jwt.encode({"role": "service_role"}, own_secret, algorithm="HS256"),
        "ANON_KEY": jwt.encode({"role": "anon"}, own_secret, algorithm="HS256"),
    }
    demo = kong_environment(compose)
    refused = {
        # your own JWTs with the published opaque keys would let anyone in
        "public demo": kong_environment(compose, own_jwts),
        "together (or neither)": _without(demo, "SUPABASE_PUBLISHABLE_KEY"),
        "SUPABASE_SECRET_KEY does not start": {**demo, "SUPABASE_SECRET_KEY": "sb_publishable_x"},
        "SUPABASE_PUBLISHABLE_KEY does not start": {
            **demo,
            "SUPABASE_PUBLISHABLE_KEY": "sb_secret_x",
        },
        "has a character": {**demo, "SUPABASE_SECRET_KEY": "sb_secret_x') or ('"},
        "SUPABASE_SERVICE_KEY (SERVICE_ROLE_KEY) is not set": _without(
            demo, "SUPABASE_SERVICE_KEY"
        ),
    }
    for expected, env in refused.items():
        done = run_gateway_entrypoint(env, tmp_path)
        assert done.returncode == 1, expected
        assert expected in done.stderr, (expected, done.stderr)
    # a name the template uses but nobody set is not left in as a key
    template = tmp_path / "template.yml"
    template.write_text("consumers:\n  - keyauth_credentials:\n      - key: $NOT_SET_ANYWHERE\n")
    done = run_gateway_entrypoint(demo, tmp_path, template)
    assert done.returncode == 1 and "$NOT_SET_ANYWHERE, which is not set" in done.stderr
    # your own keys all round: accepted
    own = {
        **own_jwts,
        "SUPABASE_SECRET_KEY": "sb_secret_own",
        "SUPABASE_PUBLISHABLE_KEY": "sb_publishable_own",
    }
    config = render_gateway(kong_environment(compose, own), tmp_path)
    assert credentials(config)["service_role"] == {own_jwts["SERVICE_ROLE_KEY"], "sb_secret_own"}
    # no opaque keys at all: the legacy keys only, the opaque keys' credential lines dropped
    legacy = _without(demo, "SUPABASE_SECRET_KEY", "SUPABASE_PUBLISHABLE_KEY")
    config = render_gateway(legacy, tmp_path)
    assert credentials(config) == {
        "service_role": {demo["SUPABASE_SERVICE_KEY"]},
        "anon": {demo["SUPABASE_ANON_KEY"]},
    }
    (header,) = plugins_of(config, "rest-v1")["request-transformer"]["add"]["headers"]
    authorization = lua_authorization(header.partition(": ")[2])
    secret = demo["SUPABASE_SECRET_KEY"]
    assert authorization({"apikey": secret}) == f"Bearer {secret}"


def test_gateway_entrypoint_knows_the_demo_keys() -> None:
    text = KONG_ENTRYPOINT.read_text()
    constants = dict(re.findall(r"^(DEMO_[A-Z_]+)=(\S+)$", text, re.MULTILINE))
    defaults = demo_defaults()
    assert constants == {
        "DEMO_PUBLISHABLE_KEY": defaults["SUPABASE_PUBLISHABLE_KEY"],
        "DEMO_SECRET_KEY": defaults["SUPABASE_SECRET_KEY"],
        "DEMO_ANON_SIGNATURE": defaults["ANON_KEY"].rsplit(".", 1)[1],
        "DEMO_SERVICE_SIGNATURE": defaults["SERVICE_ROLE_KEY"].rsplit(".", 1)[1],
    }


def test_dockerfile(dockerfile: Dockerfile) -> None:
    assert dockerfile_problems(dockerfile) == []


def test_dockerfile_cmd_runs_the_app(dockerfile: Dockerfile) -> None:
    assert cmd_problems(dockerfile) == []


def test_dockerfile_build_args(dockerfile: Dockerfile) -> None:
    assert build_arg_problems(dockerfile) == []


def test_dockerfile_what_the_first_build_found(dockerfile: Dockerfile) -> None:
    assert image_problems_of(dockerfile) == []
    link = ROOT / "app" / "migrations"  # the package carries the migrations (package data)
    assert link.is_symlink() and link.resolve() == (ROOT / "migrations").resolve()


def test_dockerignore() -> None:
    patterns = dockerignore_patterns()
    for path in (".venv", ".venv/bin/python", ".git", ".env", "app/__pycache__/x.pyc"):
        assert is_ignored(path, patterns), path
    for path in ("app/main.py", "migrations/20261121000001_image_caption.sql", "pyproject.toml"):
        assert not is_ignored(path, patterns), path


def test_env_example_lists_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    assert SETTING_NAMES - listed == set()
    compose_vars = {u.name for u in variable_uses(COMPOSE_FILE.read_text())}
    assert listed - SETTING_NAMES - compose_vars == set()
    for name in REQUIRED_SETTINGS:
        assert re.search(rf"^{name}=", text, re.MULTILINE), f"{name} is required: uncommented"


# ---------------------------------------------------------------------------------------------
# Tests: each check fails on a broken input


def _broken(compose: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(compose)


def test_checks_catch_broken_compose_files(compose: dict[str, Any]) -> None:
    doc = _broken(compose)
    doc["services"]["captioner"]["restart_policy"] = "always"
    assert schema_problems(doc)

    doc = _broken(compose)
    doc["services"]["rest"]["image"] = "postgrest/postgrest:latest"
    doc["services"]["db"]["image"] = "supabase/postgres"
    assert len(image_problems(doc)) == 2
    assert split_image("localhost:5000/x/y:1.2") == ("localhost:5000/x/y", "1.2", None)
    assert split_image("localhost:5000/x/y") == ("localhost:5000/x/y", None, None)

    doc = _broken(compose)
    doc["services"]["captioner"]["build"]["context"] = "./nowhere"
    assert build_problems(doc)
    doc = _broken(compose)
    doc["services"]["captioner"]["build"]["args"]["NOT_AN_ARG"] = "1"
    assert build_problems(doc)

    doc = _broken(compose)
    doc["services"]["migrate"]["volumes"].append("./docker/missing.sql:/x.sql:ro")
    doc["services"]["db"]["volumes"].append("undeclared:/data")
    assert len(mount_problems(doc)) == 2

    doc = _broken(compose)
    doc["services"]["rest"]["ports"] = ["${KONG_HTTP_PORT:-8000}:3000", "70000:1", "3000"]
    assert len(port_problems(doc)) == 3

    doc = _broken(compose)
    doc["services"]["captioner"]["depends_on"]["nosuch"] = {"condition": "service_started"}
    doc["services"]["storage"]["depends_on"]["captioner"] = {"condition": "service_started"}
    doc["services"]["captioner"]["depends_on"]["db"] = {
        "condition": "service_completed_successfully"
    }
    del doc["services"]["kong"]["healthcheck"]
    assert len(depends_on_problems(doc)) >= 4

    assert variable_default_problems("a: ${X}\nb: ${Y:-1}\nc: ${Y:-2}\nd: $$HOME") == [
        "${X} has no default",
        "${Y} has different defaults: ['1', '2']",
    ]

    doc = _broken(compose)
    env = doc["services"]["captioner"]["environment"]
    env["NOT_A_SETTING"] = "1"
    del env["WEBHOOK_SECRET"]
    env["SUPABASE_URL"] = "${UNSET_VARIABLE:-}"
    assert len(captioner_env_problems(doc)) == 3

    doc = _broken(compose)
    doc["services"]["migrate"]["volumes"] = ["./docker/db/seed.sql:/seed/seed.sql:ro"]
    doc["services"]["migrate"]["depends_on"].pop("storage")
    assert len(migrate_problems(doc)) == 2


def test_checks_catch_broken_dockerfiles() -> None:
    single = parse_dockerfile('FROM python:3.11-slim\nCMD ["captioner", "serve"]\n')
    assert dockerfile_problems(single)

    text = DOCKERFILE.read_text()
    assert dockerfile_problems(parse_dockerfile(text.replace("USER app:app", "USER root")))
    assert dockerfile_problems(parse_dockerfile(re.sub(r"(?m)^USER .*$", "", text)))
    no_check = re.sub(r"(?ms)^HEALTHCHECK .*?\n\n", "", text)
    assert any("HEALTHCHECK" in p for p in dockerfile_problems(parse_dockerfile(no_check)))
    compilers = text.replace(
        "COPY --from=builder /opt/venv /opt/venv",
        "RUN apt-get install -y gcc\nCOPY --from=builder /opt/venv /opt/venv",
    )
    assert any("build tools" in p for p in dockerfile_problems(parse_dockerfile(compilers)))
    missing = text.replace("COPY migrations ./migrations", "COPY sql ./migrations")
    assert any("does not exist" in p for p in dockerfile_problems(parse_dockerfile(missing)))
    bad_stage = text.replace("--from=builder", "--from=nosuch")
    assert any("no stage" in p for p in dockerfile_problems(parse_dockerfile(bad_stage)))

    not_serve = text.replace('"captioner", "serve"', '"captioner", "status"')
    assert cmd_problems(parse_dockerfile(not_serve))
    loopback = text.replace("HOST=0.0.0.0", "HOST=127.0.0.1")
    assert cmd_problems(parse_dockerfile(loopback))
    fixed_port = text.replace('"serve"]', '"serve", "--port", "8000"]')
    assert cmd_problems(parse_dockerfile(fixed_port))
    shell_form = re.sub(r"(?m)^CMD .*$", "CMD captioner serve", text)
    assert cmd_problems(parse_dockerfile(shell_form))
    fixed_check = text.replace("os.environ.get('PORT', '8000')", "'8000'")
    assert any("HEALTHCHECK" in p for p in dockerfile_problems(parse_dockerfile(fixed_check)))

    broken = {
        "UI_ENABLED": text.replace("UI_ENABLED=${WITH_UI}", "UI_ENABLED=true"),
        "+cpu": text.replace('"torch==${TORCH_VERSION}+cpu"', '"torch==${TORCH_VERSION}"'),
        "README.md": text.replace("constraints.txt README.md ./", "constraints.txt ./"),
        "COPY migrations": text.replace("COPY migrations ./migrations\n", ""),
        "above": text.replace("RUN apt-get update", "ARG WITH_UI=true\nRUN apt-get update"),
        "stay in the venv": text.replace(" \\\n && pip uninstall -y pip setuptools wheel", ""),
        "base image": text.replace("then python -m pip uninstall -y pip setuptools wheel", "then"),
    }
    for expected, variant in broken.items():
        assert variant != text, expected
        assert any(expected in p for p in image_problems_of(parse_dockerfile(variant))), expected

    no_arg = text.replace("ARG WITH_LOCAL_MODEL=false", "ARG WITH_LOCAL=false")
    assert build_arg_problems(parse_dockerfile(no_arg))


def test_dockerignore_check_can_fail() -> None:
    assert not is_ignored(".venv", ["*.pyc", ".git"])
    assert is_ignored("app/main.py", ["app"])
    assert not is_ignored(".env.example", [".env.*", "!.env.example"])
