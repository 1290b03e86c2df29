"""The table of client-assertion ids already used (SMART Backend Services: a ``jti`` is never
accepted twice for the same client within the assertion lifetime). Tenant-agnostic: a client
belongs to one tenant, and the check happens before the tenant is known.

``expires_at`` is when the row may be forgotten: the assertion's ``exp`` plus the maximum
assertion lifetime and the clock-skew allowance, so a reuse of the ``jti`` is refused for at least
that long (after it an assertion carrying it would be expired anyway). Rows past it are purged by
the next ``remember``; the index keeps that purge cheap.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.store.models import Base, UTCDateTime

CLIENT_ID = 255
JTI = 255


class SmartJti(Base):
    __tablename__ = "smart_jti"
    __table_args__ = (Index("ix_smart_jti_expires_at", "expires_at"),)

    client_id: Mapped[str] = mapped_column(String(CLIENT_ID), primary_key=True)
    jti: Mapped[str] = mapped_column(String(JTI), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
