"""What every benchmark here ends with: its figures as JSON (``{"meta": ..., "results": ...}``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(path: str | Path, meta: dict[str, Any], results: dict[str, Any], **extra: Any) -> Path:
    """Write ``{"meta", "results", **extra}`` to ``path`` (parents created) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results, **extra}, indent=2))
    print(f"wrote {out}")
    return out
