"""Account commands: `genapi create-admin`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import typer
from pydantic import BaseModel, ValidationError

from app.cli.base import cli, configure_logging, load_settings
from app.core.auth import service
from app.core.config import Settings
from app.core.errors import AppError
from app.db.migrate import upgrade_to_head
from app.db.session import Database
from app.models.schemas.auth import NewPassword, RegisterRequest, Username


class _PromotionInput(BaseModel):
    username: Username
    password: NewPassword | None = None


def _prompt_password() -> str:
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


async def _create_admin(
    settings: Settings,
    *,
    username: str,
    email: str | None,
    password: str | None,
    ask_password: Callable[[], str],
) -> service.AdminResult:
    database = Database.for_settings(settings)
    try:
        async with database.session() as db:
            existing = await service.find_user_by_login(db, username)
        if existing is None:
            if email is None:
                raise typer.BadParameter("--email is required to create a new user")
            if password is None:
                password = ask_password()
            checked = RegisterRequest(username=username, email=email, password=password)
            username, email, password = checked.username, checked.email, checked.password
        elif password is not None:
            _PromotionInput(username=username, password=password)
        async with database.session() as db:
            return await service.create_admin(
                db, settings, username=username, email=email, password=password
            )
    finally:
        await database.dispose()


@cli.command("create-admin")
def create_admin(
    username: str = typer.Option(..., "--username", "-u", help="Username of the administrator."),
    email: str = typer.Option(
        None, "--email", "-e", help="E-mail address (required when the user does not exist yet)."
    ),
    password: str = typer.Option(
        None,
        "--password",
        "-p",
        help="Password (asked for, hidden, when a new user is created without it). For an "
        "existing user it replaces the password and signs out every session.",
    ),
) -> None:
    """Create an administrator, or make an existing user one."""
    configure_logging()
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Idempotent, and saves a "no such table" on a fresh install.
    upgrade_to_head(settings.resolved_database_url)
    try:
        result = asyncio.run(
            _create_admin(
                settings,
                username=username,
                email=email,
                password=password,
                ask_password=_prompt_password,
            )
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        typer.echo(f"genapi: invalid input: {problems}", err=True)
        sys.exit(2)
    except AppError as exc:
        typer.echo(f"genapi: {exc.message}", err=True)
        sys.exit(1)
    verb = "created administrator" if result.created else "promoted to administrator"
    typer.echo(f"{verb}: {result.user.username} <{result.user.email}> (id {result.user.id})")
