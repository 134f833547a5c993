"""Lambda code and dependencies built on this machine for the Lambda platform: no Docker.

Dependencies are the project's own (pyproject `[project].dependencies`), installed as manylinux wheels for
arm64 and the runtime's Python version into `build/layer/<hash>/python`, which becomes a Lambda layer. The
directory is keyed by the requirement list and platform, so pip runs only when the requirements change.
The code asset is `shared/`, `functions/` and `migrations/` staged under `build/code/<hash>`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from infra.config import PYTHON_VERSION

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
CODE_DIRS = ("shared", "functions", "migrations")
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", "py.typed.bak")


def requirements() -> list[str]:
    """The runtime dependencies, exactly as pyproject declares them."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:20]


def _publish(staging: Path, target: Path) -> Path:
    # Build in a temporary sibling and rename: a concurrent synth never sees a half-written directory.
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process published the same content first
    return target


def dependencies_dir(*, bundle: bool = True) -> Path:
    """A layer directory (`python/` inside): the installed wheels, or an empty one when bundle is off (tests)."""
    if not bundle:
        empty = BUILD / "layer" / "empty"
        (empty / "python").mkdir(parents=True, exist_ok=True)
        return empty
    reqs = requirements()
    key = _digest([r.encode() for r in reqs] + [PYTHON_VERSION.encode(), *(p.encode() for p in PLATFORMS)])
    target = BUILD / "layer" / key
    if (target / "python").is_dir():
        return target
    (BUILD / "layer").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=BUILD / "layer"))
    platform_args = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *platform_args,
        "--implementation",
        "cp",
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--target",
        str(staging / "python"),
        *reqs,
    ]
    try:
        subprocess.run(command, check=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    except subprocess.CalledProcessError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _publish(staging, target)


def code_dir() -> Path:
    """The handler code staged on its own, so the asset hash changes only when the code does."""
    files = sorted(
        path
        for folder in CODE_DIRS
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    key = _digest([part for path in files for part in (str(path.relative_to(ROOT)).encode(), path.read_bytes())])
    target = BUILD / "code" / key
    if target.is_dir():
        return target
    (BUILD / "code").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=BUILD / "code"))
    for path in files:
        dest = staging / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return _publish(staging, target)
