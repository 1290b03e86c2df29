"""The ``cocm`` command (settings from COCM_* as the service):

- ``cocm migrate``: the database to the head migration;
- ``cocm serve``: the API with uvicorn;
- ``cocm demo``: a synthetic clinic (``app.demo``) loaded into the database, idempotent;
  ``--if-empty`` loads it only into a tenant without patients (for ``make run``);
- ``cocm billing --month YYYY-MM [--csv]``: the month-end billing run, a table and totals (or the
  API's CSV) on stdout, progress on stderr;
- ``cocm export [--type] [--since] [--patients] --out DIR``: Bulk Data export to a folder (NDJSON and
  manifest.json); ``cocm export-worker`` runs $export jobs in a process of its own;
- ``cocm quality --period-start --period-end [--csv]``: the quality measures (``app.quality``), a
  table or one CSV row per measure, group and population;
- ``cocm import FILE``: an NDJSON or Bundle file loaded in batches, resumable (``app.bulk``);
- ``cocm notify``: Subscription notifications delivered in a process of their own
  (``app.services.notify``).

Thin on purpose: the work is in ``app.demo``, ``app.bulk`` and ``app.services.reports``. Progress bars
and messages go to stderr, results to stdout, so ``cocm billing --csv > month.csv`` is clean.
"""

from __future__ import annotations

import asyncio
import csv as csv_module
import logging
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.api.render import billing_csv_rows
from app.bulk import Failure, ImportAborted, import_file, import_service, progress_path
from app.domain import Actor, BillingMonth, Month
from app.errors import InvalidInput
from app.observability import configure_logging
from app.quality.measures import MEASURES, POPULATIONS
from app.services.export import Runner as ExportRunner
from app.services.export import export_to_folder, parse_kickoff
from app.services.notify import Dispatcher
from app.services.quality import evaluate_measures, parse_period, this_year
from app.services.reports import month_billing, today
from app.services.resources import ResourceService
from app.services.uow import transact
from app.settings import DEFAULT_TENANT, Settings, load_settings
from app.store.db import analyze, make_engine, make_sessionmaker, write_lock
from app.store.migrate import upgrade
from app.store.models import Resource
from app.store.reads import FactReader

cli = typer.Typer(help="cocm-api: Collaborative Care registry and billing service", no_args_is_help=True)

TenantOption = typer.Option(DEFAULT_TENANT, help="tenant to read or write")


def _stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _stdout() -> Console:
    return Console(width=None if sys.stdout.isatty() else 200)


@contextmanager
def _session(settings: Settings) -> Iterator[tuple[Engine, Session]]:
    engine = make_engine(settings.sqlalchemy_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        with make_sessionmaker(engine)() as session:
            yield engine, session
    except OperationalError:
        _stderr().print("[red]the database is unavailable[/red] (COCM_DATABASE_URL)")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


@cli.command()
def migrate() -> None:
    """Bring the database named by COCM_DATABASE_URL to the head migration."""
    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url, sqlite_synchronous=settings.sqlite_synchronous)
    upgrade(engine)
    engine.dispose()
    typer.echo(f"database at head ({settings.sqlalchemy_url.get_backend_name()})")


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8000, help="port to bind"),
    workers: int = typer.Option(1, help="uvicorn worker processes"),
) -> None:
    """Serve the API with uvicorn (docs at /docs). Without credentials only on a loopback address,
    unless COCM_ALLOW_ANONYMOUS=true."""
    settings = load_settings()  # refuse to start on a bad setting, with its one-line reason
    warning = settings.open_access_warning(host)  # SettingsError: open on the network
    if warning is not None:
        configure_logging()
        logging.getLogger("cocm").warning(warning)
    uvicorn.run(
        "app.main:app", host=host, port=port, workers=workers, proxy_headers=True, access_log=False
    )  # our own request log leaves out paths and query strings (patient identifiers)


@cli.command()
def notify() -> None:
    """Deliver FHIR Subscription notifications until stopped (Ctrl-C, SIGTERM): for deployments
    that run delivery in its own process (then set COCM_NOTIFY_IN_PROCESS=false for the servers).
    Several may run against one PostgreSQL database; they share the work."""
    settings = load_settings()
    configure_logging()
    engine = make_engine(settings.sqlalchemy_url, sqlite_synchronous=settings.sqlite_synchronous)
    dispatcher = Dispatcher(make_sessionmaker(engine), settings, write_lock=write_lock(engine))

    async def deliver() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await dispatcher.run(stop)

    try:
        asyncio.run(deliver())
    finally:
        engine.dispose()


@cli.command()
def demo(
    patients: int = typer.Option(200, min=1, help="number of patients"),
    months: int = typer.Option(6, min=1, max=24, help="months of history, ending today"),
    seed: int = typer.Option(7, help="random seed: the same seed is the same clinic"),
    alumni: int | None = typer.Option(
        None,
        min=0,
        help="patients treated 13-26 months ago (quality history); default a quarter of --patients",
    ),
    tenant: str = TenantOption,
    if_empty: bool = typer.Option(False, "--if-empty", help="load only when the tenant has no patient"),
) -> None:
    """Load a synthetic clinic (scores, care-manager time, consents, visits, discharges) dated over
    the last months in the clinic time zone. Idempotent: patients already loaded are skipped."""
    from app.demo import clinic, demo_service, load  # noqa: PLC0415 (only this command needs it)

    settings = load_settings()
    with _session(settings) as (engine, session):
        upgrade(engine)
        if if_empty:
            with session.begin():
                has_patient = session.scalar(
                    select(Resource.id)
                    .where(Resource.tenant == tenant, Resource.type == "Patient", Resource.deleted.is_(False))
                    .limit(1)
                )
            if has_patient is not None:
                typer.echo(f"tenant {tenant!r} has patients already: demo not loaded")
                return
        past = patients // 4 if alumni is None else alumni
        bundles = clinic(
            today(settings), settings.zone, patients=patients, months=months, seed=seed, alumni=past
        )
        service = demo_service(session, settings, tenant)
        with _bar() as progress:
            task = progress.add_task("demo clinic", total=len(bundles))
            result = load(service, settings, bundles, lambda n: progress.advance(task, n))
    typer.echo(
        f"demo clinic (seed {seed}): {result.loaded} patients loaded, "
        f"{result.present} already there (tenant {tenant!r})"
    )


@cli.command()
def billing(
    month: str | None = typer.Option(
        None, help="YYYY-MM in the clinic time zone; default the last full month"
    ),
    csv: bool = typer.Option(False, "--csv", help="the API's billing.csv rows instead of a table"),
    tenant: str = TenantOption,
) -> None:
    """Month-end billing run: every patient with counted minutes in the month, their codes, whether
    the month is billable and what blocks it, and the totals per code."""
    settings = load_settings()
    try:
        parsed = Month.parse(month) if month else Month.of(today(settings)).previous()
    except ValueError:
        raise typer.BadParameter("month must be YYYY-MM", param_hint="--month") from None
    with _session(settings) as (_, session):
        service = ResourceService(session, tenant, settings.zone, Actor("cli:billing"))
        with _bar() as progress:
            progress.add_task(f"billing {parsed}", total=None)
            months = transact(service, lambda: month_billing(service, settings, parsed))
            with session.begin():
                names = FactReader(session, tenant).patient_names([m.patient_id for m in months])
    if csv:
        for chunk in billing_csv_rows(months):
            sys.stdout.write(chunk)
        sys.stdout.flush()
        return
    _print_billing(parsed, months, names)


@cli.command("export")
def export_(
    out: Annotated[Path, typer.Option("--out", help="the folder for the NDJSON files and manifest.json")],
    types: str | None = typer.Option(
        None, "--type", help="comma-separated resource types; default all exportable"
    ),
    since: str | None = typer.Option(None, help="only resources changed after this FHIR instant"),
    patients: bool = typer.Option(False, "--patients", help="the patient compartment only (Patient/$export)"),
    tenant: str = TenantOption,
) -> None:
    """Bulk Data export to a local folder: the same NDJSON files as $export (a snapshot as of now)
    and a manifest.json, with a progress bar."""
    settings = load_settings()
    params = {name: [value] for name, value in (("_type", types), ("_since", since)) if value}
    try:
        asked = parse_kickoff("patient" if patients else "system", params, False, settings.zone)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.issues[0].diagnostics) from None
    with _session(settings) as (engine, session):
        service = ResourceService(session, tenant, settings.zone, Actor("cli:export"))
        with _bar() as bar:
            tasks: dict[str, TaskID] = {}

            def progress(rtype: str, done: int, total: int) -> None:
                if rtype not in tasks:
                    tasks[rtype] = bar.add_task(rtype, total=total)
                bar.update(tasks[rtype], completed=done)

            try:
                manifest = export_to_folder(
                    make_sessionmaker(engine), settings, service, asked, out, progress
                )
            except InvalidInput as exc:
                raise typer.BadParameter(exc.issues[0].diagnostics, param_hint="--out") from None
    counted = ", ".join(f"{o['type']} {o['count']:,}" for o in manifest["output"]) or "nothing"
    typer.echo(f"exported as of {manifest['transactionTime']} to {out}: {counted}")


@cli.command("export-worker")
def export_worker() -> None:
    """Run Bulk Data export jobs until stopped (Ctrl-C, SIGTERM): for deployments that run exports
    in a process of their own (then set COCM_EXPORT_IN_PROCESS=false for the servers). Several may
    run against one PostgreSQL database; each job runs on one of them."""
    settings = load_settings()
    configure_logging()
    engine = make_engine(settings.sqlalchemy_url, sqlite_synchronous=settings.sqlite_synchronous)
    runner = ExportRunner(make_sessionmaker(engine), settings, write_lock=write_lock(engine))

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await runner.run(stop)

    try:
        asyncio.run(work())
    finally:
        engine.dispose()


@cli.command()
def quality(
    period_start: str | None = typer.Option(None, help="YYYY-MM-DD; default January 1 of this year"),
    period_end: str | None = typer.Option(None, help="YYYY-MM-DD; default December 31 of this year"),
    csv: bool = typer.Option(False, "--csv", help="one CSV row per measure, group and population"),
    tenant: str = TenantOption,
) -> None:
    """The quality measures (quality.md) for a period: each group's populations, rate and target."""
    settings = load_settings()
    try:
        period = parse_period(
            period_start, period_end, ("--period-start", "--period-end"), this_year(settings)
        )
    except InvalidInput as exc:
        raise typer.BadParameter(exc.issues[0].diagnostics) from None
    with _session(settings) as (_, session):
        service = ResourceService(session, tenant, settings.zone, Actor("cli:quality"))
        results, _ = transact(
            service, lambda: evaluate_measures(service, settings, [period], list(MEASURES.values()))
        )
    if csv:
        writer = csv_module.writer(sys.stdout, lineterminator="\n")
        writer.writerow(
            ["period_start", "period_end", "measure", "group", "population", "count", "score", "target"]
        )
        for result in results[0]:
            target = settings.target(result.measure.id)
            for group in result.groups:
                for code in POPULATIONS:
                    writer.writerow(
                        [
                            period.start.isoformat(),
                            period.end.isoformat(),
                            result.measure.id,
                            group.code or "",
                            code,
                            group.count(code),
                            "" if group.score is None else str(group.score),
                            "" if target is None else target,
                        ]
                    )
        sys.stdout.flush()
        return
    table = Table(title=f"CoCM program quality {period.start.isoformat()} to {period.end.isoformat()}")
    for name in ("measure", "group", "initial", "denominator", "exclusions", "numerator", "rate", "target"):
        table.add_column(name, justify="left" if name in {"measure", "group"} else "right")
    for result in results[0]:
        target = settings.target(result.measure.id)
        for group, definition in zip(result.groups, result.measure.groups, strict=True):
            table.add_row(
                result.measure.id,
                definition.title,
                *(str(group.count(code)) for code in POPULATIONS),
                "—" if group.score is None else f"{float(group.score) * 100:.1f}%",
                "—" if target is None else f"{target * 100:.0f}%",
            )
    _stdout().print(table)


def _print_billing(month: Month, months: list[BillingMonth], names: dict[str, str | None]) -> None:
    out = _stdout()
    table = Table(title=f"CoCM billing {month} ({len(months)} patients with minutes)")
    for name, justify in (
        ("patient", "left"),
        ("name", "left"),
        ("month", "left"),
        ("minutes", "right"),
        ("codes", "left"),
        ("billable", "center"),
        ("blockers", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=name in {"patient", "codes"})  # type: ignore[arg-type]
    totals: Counter[str] = Counter()
    billable: Counter[str] = Counter()
    for m in months:
        for code in m.codes:
            totals[code.code] += code.units
            if m.billable:
                billable[code.code] += code.units
        table.add_row(
            m.patient_id,
            names.get(m.patient_id) or "",
            m.month_kind or "",
            str(m.minutes),
            ", ".join(c.code if c.units == 1 else f"{c.code} x{c.units}" for c in m.codes) or "-",
            "yes" if m.billable else "no",
            ", ".join(m.blockers),
        )
    out.print(table)
    summary = Table(title="totals (units)", show_lines=False)
    summary.add_column("code")
    summary.add_column("all", justify="right")
    summary.add_column("billable", justify="right")
    for name in sorted(totals):
        summary.add_row(name, str(totals[name]), str(billable[name]))
    out.print(summary)
    ready = sum(1 for m in months if m.billable)
    out.print(f"{ready} of {len(months)} patient-months billable; minutes {sum(m.minutes for m in months)}")


# ``cocm import`` refreshes the planner's statistics after 1,000 items, then 2,000, 4,000...: until a
# table is analysed PostgreSQL plans it as empty, and the statements it prepared then (psycopg
# prepares a statement run five times) keep scanning it as it grows. With autovacuum off, 100,000
# patients' history went from 1,300 to under 400 resources/s before this (benchmarks/RESULTS.md).
ANALYZE_AFTER = 1_000


@cli.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="FILE.ndjson (or .jsonl), or a Bundle .json")],
    tenant: str = TenantOption,
    batch: int = typer.Option(100, min=1, max=10_000, help="items per transaction"),
    stop_on_error: bool = typer.Option(
        False, "--stop-on-error", help="stop at the first bad item (default: report it and go on)"
    ),
    restart: bool = typer.Option(False, "--restart", help="ignore FILE.progress and start from the top"),
) -> None:
    """Bulk load FHIR resources through the API's write path (validation, scoring, facts).
    Idempotent on identifiers and ids; resumable from FILE.progress after an interruption."""
    settings = load_settings()
    err = _stderr()
    with _session(settings) as (engine, session), _bar() as progress:
        task = progress.add_task(file.name, total=None)
        grown = [0, ANALYZE_AFTER]  # items committed by this run; when to refresh statistics next

        def advance(items: int) -> None:
            progress.advance(task, items)
            grown[0] += items
            if grown[0] >= grown[1]:
                analyze(engine)
                grown[1] *= 2

        def start(total: int, resumed: int) -> None:
            progress.update(task, total=total, completed=resumed)
            if resumed:
                progress.console.print(f"resuming {file.name} after {resumed} of {total} items")

        def failed(failure: Failure) -> None:
            progress.console.print(
                f"[red]{file.name}, {failure.label}:[/red] {failure.message}", highlight=False
            )

        try:
            report = import_file(
                file,
                import_service(session, settings, tenant),
                settings,
                batch=batch,
                stop_on_error=stop_on_error,
                restart=restart,
                on_start=start,
                on_advance=advance,
                on_failure=failed,
            )
        except ImportAborted as exc:
            err.print(f"[red]cannot import:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
        if (report.created or report.updated) and not analyze(engine):  # statistics for the new rows
            err.print("[yellow]could not refresh the planner statistics[/yellow]: run ANALYZE")
    typer.echo(
        f"{file.name}: {report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.failures)} failed (tenant {tenant!r})"
    )
    if report.stopped:
        err.print(
            f"stopped at {report.failures[-1].label}; fix it and run the same command to resume "
            f"({progress_path(file).name} kept)",
            highlight=False,
        )
    if report.failures:
        raise typer.Exit(1)


@contextmanager
def _bar() -> Iterator[Progress]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_stderr(),
        transient=True,
    ) as progress:
        yield progress


def main() -> None:
    cli()
