"""Generates ``localbatch/schema_data.json``: the installed SDK's models and enums, as data.

The server validates request bodies against the azure-batch SDK's models
(:mod:`localbatch.schema`), but never reads the SDK to do it: parsing the SDK's
generated ``_models.py`` (635 KB of source) costs ~20 MB of transient memory the
process keeps (peak RSS holding 100,000 tasks rose from 54 to 65 MB). This
module derives the tables once, from the installed SDK's source (read by
:mod:`localbatch.contract.spec`, never imported), and writes them as a compact,
sorted JSON file that :func:`localbatch.schema.load_tables` reads.

The file holds ``sdk`` (the azure-batch version it came from), ``enums`` (enum
name -> sorted values) and ``models`` (model name -> ``{"required": [wire
names], "properties": {wire name: type}}``, properties in the SDK's order) where a type is ``str``, ``int``,
``float``, ``bool``, ``bytes``, ``Any``, ``duration``, ``datetime``,
``enum:Name``, ``model:Name``, ``list:<type>`` or ``dict:<type>``.

``python -m localbatch.schemagen --write`` regenerates it after an SDK upgrade;
``--check`` exits 1 when the committed file differs from what the installed
SDK gives (tests/localbatch/test_schema.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

from localbatch.contract.spec import TypeRef, load_enums, load_models

DATA_FILE = Path(__file__).with_name("schema_data.json")


def type_code(t: TypeRef) -> str:
    """The file's spelling of a type (see the module docstring)."""
    if t.kind in ("list", "dict"):
        assert t.item is not None
        return f"{t.kind}:{type_code(t.item)}"
    if t.kind in ("enum", "model"):
        return f"{t.kind}:{t.name}"
    return t.kind


def generate() -> str:
    """The text ``schema_data.json`` must hold for the installed SDK (deterministic).

    Models and enum values are sorted; a model's properties keep the SDK's order (the order the
    validator reports missing required properties in).
    """
    models = {
        name: {
            "required": [wire for wire, p in props.items() if p.required],
            "properties": {wire: type_code(p.type) for wire, p in props.items()},
        }
        for name, props in sorted(load_models().items())
    }
    enums = {name: sorted(values) for name, values in sorted(load_enums().items())}
    data = {"sdk": f"azure-batch {metadata.version('azure-batch')}", "enums": enums, "models": models}
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``--write``: regenerate the file; ``--check``: 0 if it is current, 1 (and why) if stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help=f"regenerate {DATA_FILE.name}")
    group.add_argument("--check", action="store_true", help=f"exit 1 if {DATA_FILE.name} is stale")
    args = parser.parse_args(argv)
    text = generate()
    if args.write:
        DATA_FILE.write_text(text, encoding="utf-8")
        return 0
    current = DATA_FILE.read_text(encoding="utf-8") if DATA_FILE.exists() else ""
    if current != text:
        sys.stderr.write(f"{DATA_FILE} is stale: run `python -m localbatch.schemagen --write`\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
