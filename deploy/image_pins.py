"""Which registry images the deployment pulls, and whether each is pinned by digest.

    python -m deploy.image_pins [--strict] [--compose docker-compose.yml]

A tag (`nginx:1.27-alpine`) is a name the registry can point at other bytes at any time; a
digest (`nginx:1.27-alpine@sha256:<64 hex>`) names exactly one image. The compose file takes
every pulled image from a variable (FEDSEC_PYTHON_IMAGE, FEDSEC_DOCKERFILE_SYNTAX,
FEDSEC_NGINX_IMAGE), so an operator pins them in `.env` without editing any file
(docs/deployment.md, "Pinning images"). This check lists them; with `--strict` (or
FEDSEC_REQUIRE_PINNED_IMAGES=1) it exits 1 if any lacks a digest, for a release pipeline to
run before `docker compose build` / `up`.

Images built here (`build:` in the compose file: fedsec-client, fedsec-coordinator) are not
pulled and are not listed; their base images are.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.compose import COMPOSE_FILE, interpolate

STRICT_ENV = "FEDSEC_REQUIRE_PINNED_IMAGES"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
SYNTAX_ARG = "BUILDKIT_SYNTAX"
"""BuildKit's build argument that replaces a Dockerfile's `# syntax=` frontend image."""
_SYNTAX_LINE = re.compile(r"(?im)\A(?:#.*\n)*?#\s*syntax\s*=\s*(?P<image>\S+)")
_ARG = re.compile(r"(?m)^ARG\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:=(?P<default>\S*))?\s*$")
_FROM = re.compile(r"(?im)^FROM\s+(?:--\S+\s+)*(?P<image>\S+)(?:\s+AS\s+(?P<stage>\S+))?\s*$")
_ARG_REFERENCE = re.compile(r"\$\{?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}?")


@dataclass(frozen=True)
class ImageReference:
    """One image the deployment pulls: where it is set, and the reference it resolves to."""

    where: str  # e.g. "service fleet-proxy: image" or "Dockerfile (client): FROM"
    reference: str
    variable: str | None = None  # the compose variable that sets it, if any

    @property
    def pinned(self) -> bool:
        """True when the reference names one image by its sha256 digest."""
        return bool(DIGEST.search(self.reference))


def read_env_file(path: Path) -> dict[str, str]:
    """Compose's `.env` beside the compose file: KEY=VALUE lines, `#` comments, quotes."""
    if not path.is_file():
        return {}
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"{path}:{number}: not KEY=VALUE (fix: one assignment a line)")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip()] = value
    return values


def _variable(raw: str) -> str | None:
    match = re.fullmatch(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}", raw.strip())
    return match.group("name") if match else None


def _dockerfile_images(
    dockerfile: Path, build_args: Mapping[str, str], variables: Mapping[str, str | None], label: str
) -> list[ImageReference]:
    """The frontend and every FROM image a build of `dockerfile` pulls, build args applied."""
    text = dockerfile.read_text(encoding="utf-8")
    first_from = _FROM.search(text)
    preamble = text[: first_from.start()] if first_from else text
    args = {m.group("name"): m.group("default") or "" for m in _ARG.finditer(preamble)}
    args.update(build_args)
    found = []
    syntax = build_args.get(SYNTAX_ARG)
    if syntax is None and (line := _SYNTAX_LINE.search(text)):
        syntax = line.group("image")
    if syntax:
        found.append(
            ImageReference(f"{label}: # syntax", syntax, variables.get(SYNTAX_ARG) or None)
        )
    stages: set[str] = set()
    for match in _FROM.finditer(text):
        raw = match.group("image")
        image = _ARG_REFERENCE.sub(lambda m: args.get(m.group("name"), ""), raw)
        if image.lower() not in stages and image != "scratch":
            reference = _ARG_REFERENCE.search(raw)
            variable = variables.get(reference.group("name")) if reference else None
            found.append(ImageReference(f"{label}: FROM {raw}", image, variable))
        if match.group("stage"):
            stages.add(match.group("stage").lower())
    return found


def image_references(
    compose_file: Path = COMPOSE_FILE, *, env: Mapping[str, str] | None = None
) -> list[ImageReference]:
    """Every registry image the compose file's services and builds pull, deduplicated."""
    import yaml  # flwr depends on PyYAML

    if env is None:
        env = {**read_env_file(compose_file.parent / ".env"), **os.environ}
    document: dict[str, Any] = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    found: dict[tuple[str, str], ImageReference] = {}
    for name, spec in document.get("services", {}).items():
        build = spec.get("build")
        if build is None:
            raw = str(spec.get("image", ""))
            reference = ImageReference(
                f"service {name}: image", interpolate(raw, env), _variable(raw)
            )
            found.setdefault((reference.reference, reference.variable or ""), reference)
            continue
        build = {"context": build} if isinstance(build, str) else build
        raw_args = {str(k): str(v) for k, v in (build.get("args") or {}).items()}
        args = {key: interpolate(value, env) for key, value in raw_args.items()}
        variables = {key: _variable(value) for key, value in raw_args.items()}
        dockerfile = (
            compose_file.parent / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        )
        label = f"{dockerfile.name} ({build.get('target', 'last stage')})"
        for reference in _dockerfile_images(dockerfile, args, variables, label):
            key = (reference.reference, reference.variable or "")
            found.setdefault(key, reference)
    return list(found.values())


def _line(reference: ImageReference) -> str:
    if reference.pinned:
        return f"pinned      {reference.reference}  ({reference.where})"
    how = f"set {reference.variable}=" if reference.variable else "write "
    return (
        f"NOT PINNED  {reference.reference}  ({reference.where}; fix: {how}"
        f"{reference.reference.split('@')[0]}@sha256:<digest from `docker buildx imagetools "
        f"inspect {reference.reference.split('@')[0]}`>)"
    )


def main(argv: list[str] | None = None) -> int:
    """List the pulled images; exit 1 under --strict if any lacks a digest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compose", type=Path, default=COMPOSE_FILE)
    parser.add_argument(
        "--strict",
        action="store_true",
        default=os.environ.get(STRICT_ENV, "") not in ("", "0"),
        help=f"exit 1 if an image has no @sha256: digest (also: {STRICT_ENV}=1)",
    )
    args = parser.parse_args(argv)
    try:
        references = image_references(args.compose)
    except (OSError, ValueError) as error:
        print(f"fedsec: error: {error}", file=sys.stderr)
        return 2
    for reference in references:
        print(_line(reference))
    unpinned = [r for r in references if not r.pinned]
    if unpinned and args.strict:
        print(
            f"fedsec: error: {len(unpinned)} of {len(references)} images are not pinned by "
            "digest (fix: set the variables above in .env; docs/deployment.md, Pinning images)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
