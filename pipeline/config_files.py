"""The one reader of settings files: TOML (tomllib), YAML (PyYAML, where installed) and JSON, each a table.

Every problem is one ``ConfigFileError`` line naming the file (what the file is called for: ``what``), so a
grid file, a `train --config` file and a `scrape --queries` file fail the same way.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path


class ConfigFileError(ValueError):
    """A settings file that cannot be read as a table; the message names the file and what is wrong."""


def read_table(path: Path, what: str = "settings file", json_ok: bool = False) -> dict:
    """The file's top-level table; ``json_ok``: a .json file is accepted too (else .toml, .yaml, .yml)."""
    path = Path(path)
    label = f"{what} {path}"
    if not path.is_file():
        raise ConfigFileError(f"{label} does not exist")
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{label} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read {label}: {exc.strerror or exc}") from None
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{label} is not valid TOML: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigFileError(f"{label}: YAML needs PyYAML (pip install pyyaml); or write it as TOML") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            first = str(exc).strip().replace("\n", " ")
            raise ConfigFileError(f"{label} is not valid YAML: {first}") from None
    elif suffix == ".json" and json_ok:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigFileError(f"{label} is not valid JSON: {exc}") from None
    else:
        kinds = ".toml, .yaml, .yml" + (" or .json" if json_ok else "")
        raise ConfigFileError(f"{label}: use a {kinds} file")
    if not isinstance(data, dict):
        raise ConfigFileError(f"{label} must hold a table of options, not a {type(data).__name__}")
    return data
