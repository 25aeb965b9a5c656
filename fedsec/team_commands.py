"""Model team and operator commands: `fedsec certs`, `connection`, `node`, `app`, `report`.

`node keygen` is the one command of the `node` group a data holder runs (on its own host);
`node register` is the model team's side of the same hand-over. In the `app` group, the
model team names (`hash`) or signs (`keygen`, `sign`) an app and each data holder approves
it (`approve`) for its own node.

Registered on the app in `fedsec.cli`; each imports its heavy modules when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def certs(
    out: Annotated[Path, typer.Option(help="folder for the CA and the server certificate")],
    host: Annotated[
        list[str] | None, typer.Option(help="extra SuperLink DNS name or IP (repeatable)")
    ] = None,
    node: Annotated[
        list[str] | None,
        typer.Option(hidden=True, help="removed: data holders run `fedsec node keygen`"),
    ] = None,
) -> None:
    """A development PKI: the CA and the SuperLink's TLS certificate with these SANs.

    Node keys are not made here: each data holder runs `fedsec node keygen` on its own host.
    """
    from deploy.certs import NODE_FLAG_REMOVED, certs_command
    from fedsec.cli import fail

    if node:
        fail(NODE_FLAG_REMOVED)
    raise typer.Exit(code=certs_command(out, hosts=host or []))


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


@node_app.command("keygen")
def node_keygen(
    out: Annotated[Path, typer.Option(help="folder for NAME.key and NAME.pub (on this host)")],
    name: Annotated[str, typer.Option(help="the data holder's name, e.g. site-00")],
) -> None:
    """Make this data holder's node key pair (data-holder side); hand over only NAME.pub."""
    from deploy.node_keys import keygen_command

    raise typer.Exit(code=keygen_command(out, name=name))


@node_app.command("register")
def node_register(
    public_key: Annotated[
        Path, typer.Argument(help="NAME.pub a data holder made with `fedsec node keygen`")
    ],
    connection: Annotated[str, typer.Option(help="the connection to the SuperLink")],
    fingerprint: Annotated[
        str | None,
        typer.Option(help="SHA256:... the data holder read out to you; refuse any other key"),
    ] = None,
    flwr_home: Annotated[Path | None, typer.Option(help="default: $FLWR_HOME or ~/.flwr")] = None,
) -> None:
    """Register a data holder's public key with the SuperLink (model-team side).

    Prints the key's fingerprint: compare it with the one the data holder gives you by
    another channel (or pass it as --fingerprint) before you trust the key.
    """
    from deploy.compose import node_register_command

    raise typer.Exit(
        code=node_register_command(
            public_key,
            connection=connection,
            flwr_home=flwr_home,
            expected_fingerprint=fingerprint,
        )
    )


app_app = typer.Typer(
    no_args_is_help=True,
    help="Which app may run on a data holder's node: hash or sign it, approve it.",
)
_APP_DIR = typer.Argument(help="the app folder you give to `flwr run` (default: .)")


@app_app.command("hash")
def app_hash(app_dir: Annotated[Path, _APP_DIR] = Path(".")) -> None:
    """Print the SHA-256 `flwr run APP_DIR` computes for the app (model-team side)."""
    from deploy.app_approval import hash_command

    raise typer.Exit(code=hash_command(app_dir))


@app_app.command("keygen")
def app_keygen(
    out: Annotated[Path, typer.Option(help="folder for NAME.key and NAME.pub")],
    name: Annotated[str, typer.Option(help="the key's name, e.g. model-team")],
) -> None:
    """Make the model team's ed25519 signing key; data holders approve its public key."""
    from deploy.app_approval import keygen_command

    raise typer.Exit(code=keygen_command(out, name=name))


@app_app.command("sign")
def app_sign(
    key: Annotated[Path, typer.Option(help="NAME.key from `fedsec app keygen`")],
    app_dir: Annotated[Path, _APP_DIR] = Path("."),
) -> None:
    """Sign the app's hash; prints the `--run-config` option to add to `flwr run`."""
    from deploy.app_approval import sign_command

    raise typer.Exit(code=sign_command(key, app_dir))


@app_app.command("approve")
def app_approve(
    file: Annotated[
        Path, typer.Option(help="the data holder's approval file (FEDSEC_APPROVED_APPS)")
    ],
    hash_: Annotated[
        list[str] | None,
        typer.Option("--hash", help="an app's SHA-256 from `fedsec app hash` (repeatable)"),
    ] = None,
    signer: Annotated[
        list[str] | None,
        typer.Option(help="the model team's public key: base64 or a NAME.pub file (repeatable)"),
    ] = None,
    require_signature: Annotated[
        bool | None,
        typer.Option(
            "--require-signature/--allow-unsigned",
            help="only signed apps run (or: listed hashes run unsigned); default: unchanged",
        ),
    ] = None,
) -> None:
    """Approve apps for this data holder's node (data-holder side); creates or edits FILE.

    The file is TOML: `hashes = [...]`, `signers = [...]`, `require_signature = false`.
    fedsec-clientapp reads it for every message, before any of the app's code runs.
    """
    from deploy.app_approval import approve_command

    raise typer.Exit(
        code=approve_command(
            file,
            hashes=hash_ or [],
            signers=signer or [],
            require_signature=require_signature,
        )
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
