"""The ``cocm`` command: ``cocm migrate`` and ``cocm serve`` (settings from COCM_* as the service)."""

from __future__ import annotations

import typer
import uvicorn

from app.settings import load_settings
from app.store.db import make_engine
from app.store.migrate import upgrade

cli = typer.Typer(help="cocm-api: Collaborative Care registry and billing service", no_args_is_help=True)


@cli.command()
def migrate() -> None:
    """Bring the database named by COCM_DATABASE_URL to the head migration."""
    settings = load_settings()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    engine.dispose()
    typer.echo(f"database at head ({settings.sqlalchemy_url.get_backend_name()})")


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8000, help="port to bind"),
    workers: int = typer.Option(1, help="uvicorn worker processes"),
) -> None:
    """Serve the API with uvicorn (docs at /docs)."""
    load_settings()  # refuse to start on a bad setting, with its one-line reason
    uvicorn.run(
        "app.main:app", host=host, port=port, workers=workers, proxy_headers=True, access_log=False
    )  # our own request log leaves out paths and query strings (patient identifiers)


def main() -> None:
    cli()
