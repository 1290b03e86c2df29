"""Group commit (``app.services.uow.WriteGroup``): concurrent requests share one transaction and
one commit, each answers for itself, and a failing one costs the others nothing but a rerun.

Each test holds the writer lock while its requests queue, then lets go: the writer thread takes
every queued item into one group, so the grouping is certain, not a matter of timing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.errors import BusinessRuleViolation, Conflict
from app.notifications.subscriptions import MEASUREMENT_RECORDED
from app.services.resources import ResourceService
from app.services.uow import WriteGroup, transact, transact_async
from app.store.db import make_sessionmaker
from app.store.models import AuditEventRow, Resource, SubscriptionEventRow, SubscriptionStateRow
from tests.conftest import _empty_tables, load_fixture
from tests.notifications.support import subscription_body

Work = Callable[[ResourceService], Any]


@pytest.fixture
def engine(migrated_engine: Engine) -> Iterator[Engine]:
    _empty_tables(migrated_engine)
    yield migrated_engine


def _response(patient: str, identifier: str | None = None, authored: str = "2026-11-02") -> dict[str, Any]:
    body = load_fixture("us-core-phq9-questionnaireresponse.json")
    body.pop("id", None)
    body.update(subject={"reference": f"Patient/{patient}"}, status="completed", authored=authored)
    if identifier is not None:
        body["identifier"] = {"system": "urn:test", "value": identifier}
    return body


def _patient(engine: Engine, tenant: str, rid: str) -> None:
    with make_sessionmaker(engine)() as session:
        service = ResourceService(session, tenant, ZoneInfo("UTC"))
        transact(service, lambda: service.update("Patient", rid, {"resourceType": "Patient", "id": rid}))


def _group(engine: Engine) -> WriteGroup:
    """A ``WriteGroup`` as the app builds it: its writer on a connection of its own."""
    return WriteGroup(
        threading.Lock(), limit=64, connect=lambda: make_sessionmaker(engine)(bind=engine.connect())
    )


def _grouped(
    engine: Engine, jobs: list[tuple[str, Work]], group: WriteGroup | None = None
) -> tuple[list[Any], int]:
    """Run ``jobs`` (tenant, work on a service) as concurrent requests of one event loop through one
    ``WriteGroup`` (a new one unless given), all queued before any runs; answers each job's result
    (or exception) in order, and the commits made."""
    own = group is None
    group = group or _group(engine)
    lock = group.lock
    sessions = make_sessionmaker(engine)
    commits = [0]

    def count(_connection: Any) -> None:
        commits[0] += 1

    event.listen(engine, "commit", count)
    results: list[Any] = [None] * len(jobs)

    async def one(index: int, tenant: str, work: Work) -> None:
        with sessions() as session:
            service = ResourceService(session, tenant, ZoneInfo("UTC"), group=group)
            try:
                results[index] = await transact_async(service, lambda: work(service))
            except Exception as exc:
                results[index] = exc

    async def requests() -> None:
        await asyncio.gather(*(one(i, *job) for i, job in enumerate(jobs)))

    loop = threading.Thread(target=asyncio.run, args=(requests(),))  # the server's event loop
    try:
        with lock:  # nothing runs until every job is queued
            loop.start()
            deadline = time.monotonic() + 10
            while len(group.queue) < len(jobs) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(group.queue) == len(jobs)
        loop.join(30)
    finally:
        event.remove(engine, "commit", count)
        if own:
            group.close()
    return results, commits[0]


def _count(engine: Engine, rtype: str, tenant: str = "default") -> int:
    with make_sessionmaker(engine)() as session:
        query = select(func.count()).where(
            Resource.tenant == tenant, Resource.type == rtype, Resource.deleted.is_(False)
        )
        return session.scalar(query) or 0


def _trail(engine: Engine) -> Counter[tuple[str, str]]:
    with make_sessionmaker(engine)() as session:
        return Counter((r.interaction, r.outcome) for r in session.scalars(select(AuditEventRow)))


def _create(body: dict[str, Any]) -> Work:
    return lambda service: service.create("QuestionnaireResponse", body)


def test_a_group_is_one_commit_and_each_request_gets_its_own_answer(engine: Engine) -> None:
    _patient(engine, "default", "p1")
    results, commits = _grouped(engine, [("default", _create(_response("p1"))) for _ in range(8)])
    assert commits == 1
    assert all(r.created for r in results) and len({r.stored.id for r in results}) == 8
    assert _count(engine, "QuestionnaireResponse") == 8
    assert _count(engine, "Observation") == 8  # each scored once
    assert _trail(engine)[("create", "0")] == 8


def test_a_failing_request_fails_alone_and_the_others_are_written_once(engine: Engine) -> None:
    _patient(engine, "default", "p1")
    jobs = [("default", _create(_response("p1"))) for _ in range(5)]
    jobs.insert(2, ("default", _create(_response("nobody"))))  # 422: not a patient here
    jobs.insert(4, ("default", _create(_response("p1", identifier="x"))))
    jobs.append(
        ("default", _create(_response("p1", identifier="x", authored="2026-11-03")))
    )  # same identifier, other content
    results, commits = _grouped(engine, jobs)
    assert commits > 1  # the group was rolled back and its requests run alone
    assert isinstance(results[2], BusinessRuleViolation)
    assert isinstance(results[-1], Conflict)
    written = [r for i, r in enumerate(results) if i not in (2, len(results) - 1)]
    assert all(r.created for r in written)
    assert _count(engine, "QuestionnaireResponse") == 6
    assert _count(engine, "Observation") == 6
    trail = _trail(engine)
    assert (trail[("create", "0")], trail[("failed", "4")]) == (6, 2)


def test_a_retry_in_the_same_group_is_counted_once(engine: Engine) -> None:
    _patient(engine, "default", "p1")
    body = _response("p1", identifier="retry-1")
    results, commits = _grouped(engine, [("default", _create(dict(body))) for _ in range(4)])
    assert commits == 1
    assert [r.created for r in results] == [True, False, False, False]
    assert len({r.stored.id for r in results}) == 1
    assert _count(engine, "QuestionnaireResponse") == 1 and _count(engine, "Observation") == 1


def test_tenants_in_one_group_share_nothing(engine: Engine) -> None:
    """Tenant a's live patient p1, cached by a's request, is no patient of tenant b's."""
    _patient(engine, "a", "p1")
    results, _ = _grouped(
        engine,
        [("a", _create(_response("p1"))), ("b", _create(_response("p1"))), ("a", _create(_response("p1")))],
    )
    assert results[0].created and results[2].created
    assert isinstance(results[1], BusinessRuleViolation)
    assert (_count(engine, "QuestionnaireResponse", "a"), _count(engine, "QuestionnaireResponse", "b")) == (
        2,
        0,
    )


def test_a_groups_events_are_numbered_without_gaps(engine: Engine) -> None:
    """Each write of a group raises its event on the subscription rows the group locked once."""
    _patient(engine, "default", "p1")
    with make_sessionmaker(engine)() as session:
        service = ResourceService(session, "default", ZoneInfo("UTC"), allowed_hosts=frozenset({"127.0.0.1"}))
        body = subscription_body("http://127.0.0.1:9/hook", topic=MEASUREMENT_RECORDED)
        sub = transact(service, lambda: service.create("Subscription", body)).stored.id
    results, commits = _grouped(engine, [("default", _create(_response("p1"))) for _ in range(6)])
    assert commits == 1 and all(r.created for r in results)
    with make_sessionmaker(engine)() as session:
        state = session.get(SubscriptionStateRow, ("default", sub))
        numbers = session.scalars(
            select(SubscriptionEventRow.number).where(SubscriptionEventRow.subscription_id == sub)
        ).all()
        assert state is not None and state.events == 6
        assert sorted(numbers) == [1, 2, 3, 4, 5, 6]


def test_a_failed_commit_fails_its_group_and_is_not_run_again(engine: Engine) -> None:
    """A COMMIT that fails may have been applied (a connection lost after the server committed):
    every request of the group gets the error, and none is run again (no second copy)."""
    _patient(engine, "default", "p1")
    attempts = [0]

    def refuse(_connection: Any) -> None:
        attempts[0] += 1
        raise RuntimeError("the connection was lost during COMMIT")

    event.listen(engine, "commit", refuse)
    try:
        results, _ = _grouped(engine, [("default", _create(_response("p1"))) for _ in range(3)])
    finally:
        event.remove(engine, "commit", refuse)
    assert attempts[0] == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    assert _count(engine, "QuestionnaireResponse") == 0


def test_the_writer_keeps_its_connection_from_one_group_to_the_next(engine: Engine) -> None:
    _patient(engine, "default", "p1")
    checkouts = [0]

    def count(*_: Any) -> None:
        checkouts[0] += 1

    group = _group(engine)
    event.listen(engine, "checkout", count)
    try:
        for _ in range(3):
            results, commits = _grouped(
                engine, [("default", _create(_response("p1"))) for _ in range(4)], group
            )
            assert commits == 1 and all(r.created for r in results)
        assert checkouts[0] == 1  # one connection for three groups; the requests' sessions took none
    finally:
        event.remove(engine, "checkout", count)
        group.close()
    assert group.held is None and group.writer is None
    assert _count(engine, "QuestionnaireResponse") == 12


def _writer_connection(group: WriteGroup) -> Any:
    assert group.held is not None and isinstance(group.held.bind, Connection)
    return group.held.bind.connection.driver_connection


def test_a_lost_writer_connection_costs_one_group_a_rerun(engine: Engine) -> None:
    """The writer's connection is lost between two groups (PostgreSQL ends it; on SQLite it is
    closed under the writer): the next group fails on it and is run again request by request on
    their own connections, and the writer takes a fresh connection for the group after."""
    _patient(engine, "default", "p1")
    group = _group(engine)
    try:
        _grouped(engine, [("default", _create(_response("p1"))) for _ in range(3)], group)
        lost = _writer_connection(group)
        if engine.dialect.name == "postgresql":
            with engine.connect() as admin:
                admin.exec_driver_sql(f"SELECT pg_terminate_backend({lost.info.backend_pid})")
        else:
            lost.close()
        results, _ = _grouped(engine, [("default", _create(_response("p1"))) for _ in range(3)], group)
        assert all(r.created for r in results)
        assert _count(engine, "QuestionnaireResponse") == 6
        results, commits = _grouped(engine, [("default", _create(_response("p1"))) for _ in range(3)], group)
        assert commits == 1 and all(r.created for r in results)
        assert _writer_connection(group) is not lost
        assert _count(engine, "QuestionnaireResponse") == 9
    finally:
        group.close()


def test_a_requests_own_error_leaves_the_writer_its_connection(engine: Engine) -> None:
    """A group rolled back for a client's error (here a patient of no one) is rerun request by
    request; the writer keeps the connection it had, which nothing was wrong with."""
    _patient(engine, "default", "p1")
    group = _group(engine)
    try:
        _grouped(engine, [("default", _create(_response("p1"))) for _ in range(2)], group)
        kept = _writer_connection(group)
        jobs = [("default", _create(_response("p1"))), ("default", _create(_response("nobody")))]
        results, _ = _grouped(engine, jobs, group)
        assert results[0].created and isinstance(results[1], BusinessRuleViolation)
        assert _writer_connection(group) is kept
    finally:
        group.close()


def test_a_writer_without_a_connection_runs_its_group_request_by_request(engine: Engine) -> None:
    """The writer cannot get its connection (the database restarting, the pool exhausted): the
    group is run request by request on the requests' own sessions, and the next group connects."""
    _patient(engine, "default", "p1")
    attempts = [0]

    def connect() -> Session:
        attempts[0] += 1
        if attempts[0] == 1:
            raise OperationalError("connect", {}, Exception("the database system is starting up"))
        return make_sessionmaker(engine)(bind=engine.connect())

    group = WriteGroup(threading.Lock(), limit=64, connect=connect)
    try:
        results, commits = _grouped(engine, [("default", _create(_response("p1"))) for _ in range(3)], group)
        assert all(r.created for r in results) and commits == 3
        results, commits = _grouped(engine, [("default", _create(_response("p1"))) for _ in range(3)], group)
        assert all(r.created for r in results) and commits == 1 and attempts[0] == 2
    finally:
        group.close()
    assert _count(engine, "QuestionnaireResponse") == 6
