"""Write or check ``openapi/openapi.json``: ``python -m app.openapi [--check] PATH``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.main import create_app
from app.settings import Settings


def render() -> str:
    spec = create_app(Settings(database_url="sqlite:///:memory:")).openapi()
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    target = Path(paths[0] if paths else "openapi/openapi.json")
    text = render()
    if check:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
