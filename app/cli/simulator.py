"""`genapi simulator`: the upstream simulator as a standalone server."""

from __future__ import annotations

import typer

from app.cli.base import cli, configure_logging


@cli.command()
def simulator(
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(8100, min=0, max=65535, help="Port (0 picks a free one)."),
    task_seconds: float = typer.Option(
        6.0, min=0, help="Seconds from submission to a finished task (0: done on first poll)."
    ),
    api_key: str = typer.Option(
        None,
        envvar="SIMULATOR_API_KEY",
        help="Bearer key to require (default: accept any non-empty key).",
        show_default=False,
    ),
    latency: float = typer.Option(0.0, min=0, help="Extra seconds on every API response."),
    result_ttl: float = typer.Option(
        None, min=0, help="Seconds media stays downloadable after completion (default: forever)."
    ),
    chunked: bool = typer.Option(False, help="Serve media with Transfer-Encoding: chunked."),
    special_ids: bool = typer.Option(False, help="Task ids containing ':' and '/'."),
    seed: int = typer.Option(0, help="Seed for random faults."),
    create_error_rate: float = typer.Option(0.0, min=0, max=1, help="Share of creates that fail."),
    poll_error_rate: float = typer.Option(0.0, min=0, max=1, help="Share of polls that fail."),
) -> None:
    """Run the upstream simulator (Sora, Veo, Seedance, images, OpenAI videos) on its own."""
    import uvicorn

    from app.simulator import SimulatorConfig, create_simulator_app

    configure_logging()
    config = SimulatorConfig(
        api_key=api_key,
        task_seconds=task_seconds,
        latency=latency,
        result_ttl=result_ttl,
        chunked=chunked,
        special_ids=special_ids,
        seed=seed,
        create_error_rate=create_error_rate,
        poll_error_rate=poll_error_rate,
    )
    uvicorn.run(create_simulator_app(config), host=host, port=port, log_level="info")
