"""Where a run's Content Credentials identity comes from (colorize_core/storage/credentials.py):
PEM files on the machine that runs the shards (`--c2pa-cert`, `--c2pa-key`), or, for
deployments whose workers hold no such files, a Prefect Secret block whose value is
`{"cert": "<PEM chain, signer first>", "key": "<PEM private key>", "tsa": "<optional URL>"}`
(`c2pa_secret`: the block's name). Either way a run's parameters name where the key is, never
the key itself, and every shard task reads it where it runs."""

from __future__ import annotations

import json
from typing import Any

from colorize_core.storage.credentials import CredentialsError, SigningFiles, SigningIdentity, identity_from_pem

SECRET_SHAPE = '{"cert": "<PEM chain>", "key": "<PEM key>", "tsa": "<optional URL>"}'


def secret_identity(name: str) -> SigningIdentity:
    """The identity in the Prefect Secret block `name`, checked (a CredentialsError in one line)."""
    from prefect.blocks.system import Secret

    try:
        value: Any = Secret.load(name).get()
    except ValueError:
        raise CredentialsError(f"no Prefect Secret block named {name!r}: create one holding {SECRET_SHAPE}") from None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict) or not isinstance(value.get("cert"), str) or not isinstance(value.get("key"), str):
        raise CredentialsError(f"the Prefect Secret block {name!r} does not hold {SECRET_SHAPE}")
    where = f"in the Prefect Secret block {name!r}"
    return identity_from_pem(value["cert"].encode(), value["key"].encode(), value.get("tsa") or None, cert_file=where, key_file=where)


def signing_identity(files: SigningFiles | None, secret: str | None) -> SigningIdentity | None:
    """The identity a run's parameters name (files or a secret, not both), read and checked; None: unsigned."""
    if files is not None and secret:
        raise CredentialsError("sign with the C2PA files or with a Prefect Secret block, not both (c2pa_cert/c2pa_key or c2pa_secret)")
    if files is not None:
        return files.load()
    return secret_identity(secret) if secret else None
