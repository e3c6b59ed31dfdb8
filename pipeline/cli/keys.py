"""``edgemed keys generate``: an Ed25519 key that signs published bundles, and its public key for devices;
``edgemed keys revoke``: list a key id as revoked in a trust store.

Usage errors (a key already there, a private key that would land in a bundle or at a committable path
in the repository) exit 2; messages go to stderr.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.build.signing import (
    DEVELOPMENT_KEY_FOLDER,
    TRUST_STORE_FOLDER,
    SigningKey,
    generate_keys,
    revoke_key,
)
from pipeline.errors import UsageError
from runtime.contract import KeyPurpose

DEVELOPMENT_BANNER = "DEVELOPMENT KEY — bundles it signs are for development only, NOT FOR CLINICAL USE"


@click.group("keys")
def keys_command() -> None:
    """Signing keys for bundles (Ed25519)."""


@keys_command.command("generate")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Key folder; inside this repository only a git-ignored one (e.g. {DEVELOPMENT_KEY_FOLDER}).",
)
@click.option(
    "--purpose",
    required=True,
    type=click.Choice([purpose.value for purpose in KeyPurpose]),
    help="Recorded with the key and in every bundle it signs; devices log development keys loudly.",
)
@click.option("--force", is_flag=True, help="Replace the key already in --out (its bundles stop verifying).")
def generate_command(out: Path, purpose: str, force: bool) -> None:
    """Write signing-key.pem (0600), key.json and trust-store/<key id>.pem into --out."""
    try:
        files = generate_keys(out, KeyPurpose(purpose), force=force)
    except UsageError as error:
        raise click.UsageError(str(error)) from error
    click.echo(f"key {files.key_id} ({files.purpose.value})")
    click.echo(f"  private key  {files.private_key}   (mode 0600: keep it on the build machine, never on a device)")
    click.echo(f"  public key   {files.public_key}")
    click.echo(f"  sign with    edgemed build --sign-key {files.private_key}")
    click.echo(f"  on a device  copy {files.public_key.parent}/ (the {TRUST_STORE_FOLDER}) and run with "
               f"--trust-store DIR")
    if files.purpose is KeyPurpose.DEVELOPMENT:
        click.echo(f"!!! {DEVELOPMENT_BANNER}", err=True)


@keys_command.command("revoke")
@click.argument("key_id")
@click.option("--trust-store", "trust_store", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The trust-store folder devices are provisioned from.")
@click.option("--reason", default="", help="Why (kept as a comment in the file; no patient data).")
def revoke_command(key_id: str, trust_store: Path, reason: str) -> None:
    """List KEY_ID in the trust store's revoked file: devices given it refuse every bundle that key signed."""
    try:
        path = revoke_key(trust_store, key_id, reason)
    except UsageError as error:
        raise click.UsageError(str(error)) from error
    click.echo(f"key {key_id} revoked in {path}: copy it to every device's trust store (the .pem may stay; "
               "a revoked key is refused whatever else the store holds)")


def sign_key_option(function):
    """``--sign-key PATH`` for the commands that publish a bundle."""
    return click.option(
        "--sign-key",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Sign the published bundle with this private key (from 'edgemed keys generate'); without it the "
        "bundle is published unsigned and devices refuse it unless run with --allow-unsigned.",
    )(function)


def load_sign_key(path: Path | None) -> SigningKey | None:
    """The key ``--sign-key`` names (a development key announced loudly), or None."""
    if path is None:
        return None
    key = SigningKey.load(path)
    if key.purpose is KeyPurpose.DEVELOPMENT:
        click.echo(f"!!! signing with {key.key_id} from {path}: {DEVELOPMENT_BANNER}", err=True)
    return key


def report_signing(bundle: Path | None, key: SigningKey | None) -> None:
    """One line after a build: how the published bundle is signed (loud for development keys and unsigned)."""
    if bundle is None:
        return
    if key is None:
        click.echo(f"  !!! {bundle} is UNSIGNED: devices refuse it unless run with --allow-unsigned "
                   "(publish with --sign-key KEY)", err=True)
    elif key.purpose is KeyPurpose.DEVELOPMENT:
        click.echo(f"  !!! {bundle} is signed with DEVELOPMENT key {key.key_id}: NOT FOR CLINICAL USE", err=True)
    else:
        click.echo(f"  signed: {key.purpose.value} key {key.key_id}")
