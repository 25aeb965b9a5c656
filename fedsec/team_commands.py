"""Model team and operator commands: `fedsec certs`, `connection`, `node register`, `report`.

Registered on the app in `fedsec.cli`; each imports its heavy modules when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def certs(
    out: Annotated[Path, typer.Option(help="folder for the CA, server certificate and node keys")],
    host: Annotated[
        list[str] | None, typer.Option(help="extra SuperLink DNS name or IP (repeatable)")
    ] = None,
    node: Annotated[list[str] | None, typer.Option(help="node key to create (repeatable)")] = None,
) -> None:
    """A development PKI: CA, SuperLink TLS certificate with these SANs, node ECDSA keys."""
    from deploy.certs import certs_command

    raise typer.Exit(code=certs_command(out, hosts=host or [], nodes=node or []))


def connection(
    name: Annotated[str, typer.Argument(help="connection name for `flwr run . NAME`")],
    address: Annotated[str, typer.Option(help="the SuperLink's Control API, host:port")],
    root_certificates: Annotated[Path, typer.Option(help="ca.crt from `fedsec certs`")],
    flwr_home: Annotated[Path | None, typer.Option(help="default: $FLWR_HOME or ~/.flwr")] = None,
) -> None:
    """Write the model team's TLS connection into $FLWR_HOME/config.toml."""
    from deploy.compose import connection_command

    raise typer.Exit(
        code=connection_command(
            name, address=address, root_certificates=root_certificates, flwr_home=flwr_home
        )
    )


node_app = typer.Typer(no_args_is_help=True, help="Data-holder nodes of a deployment.")


@node_app.command("register")
def node_register(
    public_key: Annotated[Path, typer.Argument(help="nodes/NAME.pub from `fedsec certs`")],
    connection: Annotated[str, typer.Option(help="the connection to the SuperLink")],
    flwr_home: Annotated[Path | None, typer.Option(help="default: $FLWR_HOME or ~/.flwr")] = None,
) -> None:
    """Register a data holder's public key with the SuperLink (coordinator side)."""
    from deploy.compose import node_register_command

    raise typer.Exit(
        code=node_register_command(public_key, connection=connection, flwr_home=flwr_home)
    )


def report(run_dir: Annotated[Path, typer.Argument(help="run folder with results.json")]) -> None:
    """Rebuild the federation report (report.json, report.html) from results.json alone."""
    from fedsec.cli import fail
    from server.report import write_federation_report

    try:
        json_path, html_path = write_federation_report(run_dir)
    except ValueError as error:
        fail(str(error))
    typer.echo(f"federation report: {html_path} (data: {json_path})")
