"""A ``JtiStore`` for token-endpoint tests that run without a database (``app.state.jti_store``)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime


class MemoryJtiStore:
    """One process only: the used (client_id, jti) pairs in a dict until they expire."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()

    def remember(self, jti: str, client_id: str, expires_at: datetime) -> bool:
        now = datetime.now(UTC)
        with self._lock:
            for key in [k for k, until in self._seen.items() if until < now]:
                del self._seen[key]
            if (client_id, jti) in self._seen:
                return False
            self._seen[(client_id, jti)] = expires_at
            return True
