"""Test ID tokens of the local stack, signed with a key the stack generates for itself.

The registry API verifies them with google-auth's `verify_token` against this issuer's certificates (served by
`python -m localcloud.identity`), exactly as it verifies Google's tokens against Google's — and only in local mode:
on Cloud Run / Cloud Functions the API verifies Google-issued tokens alone, so these are worthless there. The
issuer (`iss`) is `registrar-local`, never Google's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from registrar.config import LOCAL_ISSUER

KEY_BITS = 2048
LIFETIME_SECONDS = 3600


def new_key() -> dict[str, str]:
    """A fresh RSA key: its id, the private key and the public key (PEM)."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return {"kid": hashlib.sha256(public.encode()).hexdigest()[:16], "private_key": private, "public_key": public}


def load_or_create(state: Path) -> dict[str, str]:
    """The issuer's key, kept in `state` (created on first use) so tokens survive a restart of the issuer."""
    state = Path(state)
    if state.exists():
        return json.loads(state.read_text())
    key = new_key()
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(key))
    state.chmod(0o600)
    return key


def certs(key: dict[str, str]) -> dict[str, str]:
    """What the certificates URL answers: key id → public key (PEM), the format google-auth's verify_token reads."""
    return {key["kid"]: key["public_key"]}


def mint(key: dict[str, str], email: str, audience: str, *, lifetime: int = LIFETIME_SECONDS,
         now: float | None = None, **claims: Any) -> str:
    """A signed ID token for `email`, meant for `audience` (the registry API's URL)."""
    from google.auth import crypt, jwt

    issued = int(now if now is not None else time.time())
    payload = {"iss": LOCAL_ISSUER, "aud": audience, "sub": email, "email": email, "email_verified": True,
               "iat": issued, "exp": issued + lifetime, **claims}
    signer = crypt.RSASigner.from_string(key["private_key"], key_id=key["kid"])
    return jwt.encode(signer, payload).decode()


def mint_for_stack(state_dir: Path, email: str, *, lifetime: int = LIFETIME_SECONDS) -> str:
    """A token for the local stack running from `state_dir` (its issuer key, its API's URL)."""
    from localcloud import stack

    env = stack.read_env(state_dir)
    if not env.get("REGISTRAR_API_URL"):
        raise RuntimeError(f"the local stack is not running from {state_dir}: run `registrar local up` first")
    key_path = Path(state_dir) / STATE_FILE
    if not key_path.exists():
        raise RuntimeError(f"the local stack in {state_dir} has no token issuer ({key_path} is missing)")
    return mint(load_or_create(key_path), email, env["REGISTRAR_API_URL"], lifetime=lifetime)


STATE_FILE = "identity-state.json"
