"""ID-token verification (adapters/idtokens.py, google-auth's `verify_token` / `verify_oauth2_token`) against the
local stack's token issuer served over HTTP: what is accepted, what is refused and why, and that the signing keys
are fetched once, not per call. A production verifier refuses a local token before it fetches any keys."""

from __future__ import annotations

import threading
import time

import pytest
from registrar.adapters.idtokens import IAP_ISSUER, IdTokenVerifier
from registrar.config import LOCAL_ISSUER
from registrar.kernel.ports import IdentityRefused
from werkzeug.serving import make_server

from localcloud.identity.app import create_app
from localcloud.identity.tokens import load_or_create, mint, new_key

AUDIENCE = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    state = tmp_path_factory.mktemp("identity") / "identity-state.json"
    app = create_app(state, "p", "us-central1")
    served = []
    app.before_request(lambda: served.append(1))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"key": load_or_create(state), "certs": f"http://127.0.0.1:{server.server_port}/certs", "served": served}
    server.shutdown()


def local_verifier(issuer) -> IdTokenVerifier:
    return IdTokenVerifier([AUDIENCE], certs_url=issuer["certs"], issuers=(LOCAL_ISSUER,))


def test_a_token_of_the_issuer_names_its_email_and_the_keys_are_fetched_once(issuer):
    verifier = local_verifier(issuer)
    before = len(issuer["served"])
    for email in ("Alice@Example.com", "bob@example.com", "carol@example.com"):
        caller = verifier.verify(mint(issuer["key"], email, AUDIENCE))
        assert (caller.email, caller.issuer) == (email.lower(), LOCAL_ISSUER)
    assert len(issuer["served"]) - before == 1


@pytest.mark.parametrize("change, reason", [
    (lambda key: mint(key, "a@example.com", "http://elsewhere"), "audience"),
    (lambda key: mint(key, "a@example.com", AUDIENCE, now=time.time() - 7200, lifetime=60), "expired"),
    (lambda key: mint(new_key(), "a@example.com", AUDIENCE), "(?i)certificate"),
    (lambda key: mint(key, "a@example.com", AUDIENCE, iss="https://accounts.google.com"), "issuer"),
    (lambda key: mint(key, "a@example.com", AUDIENCE, email_verified=False), "not verified"),
    (lambda key: "not.a.jwt", "JWT"),
])
def test_what_is_refused_says_why(issuer, change, reason):
    with pytest.raises(IdentityRefused, match=reason):
        local_verifier(issuer).verify(change(issuer["key"]))


def test_a_production_verifier_refuses_a_local_token_without_fetching_any_keys(issuer):
    class NoNetwork:
        def __call__(self, *args, **kwargs):
            raise AssertionError("no keys may be fetched for a token of a foreign issuer")

    google = IdTokenVerifier([AUDIENCE], request=NoNetwork())
    with pytest.raises(IdentityRefused, match="registrar-local"):
        google.verify(mint(issuer["key"], "a@example.com", AUDIENCE))
    with pytest.raises(IdentityRefused, match="no audience"):
        IdTokenVerifier([]).verify(mint(issuer["key"], "a@example.com", AUDIENCE))


IAP_PREFIX = "/projects/123456/global/backendServices/"


def iap_verifier(issuer, prefix: str = IAP_PREFIX) -> IdTokenVerifier:
    """Verifies IAP assertions against the local issuer's keys (IAP's own are Google's, not reachable here)."""
    return IdTokenVerifier([AUDIENCE], iap_audience_prefix=prefix, iap_certs_url=issuer["certs"])


def test_an_iap_assertion_names_the_user_iap_let_through(issuer):
    assertion = mint(issuer["key"], "Dana@Example.com", IAP_PREFIX + "987", iss=IAP_ISSUER)
    caller = iap_verifier(issuer).verify_iap(assertion)
    assert (caller.email, caller.issuer) == ("dana@example.com", IAP_ISSUER)


@pytest.mark.parametrize("change, reason", [
    (lambda key: mint(key, "a@example.com", "/projects/999/global/backendServices/1", iss=IAP_ISSUER),
     "not a backend service of this project"),
    (lambda key: mint(key, "a@example.com", IAP_PREFIX + "1"), "not IAP's"),  # an ID token is not an assertion
    (lambda key: mint(new_key(), "a@example.com", IAP_PREFIX + "1", iss=IAP_ISSUER), "(?i)certificate"),
    (lambda key: mint(key, "a@example.com", IAP_PREFIX + "1", iss=IAP_ISSUER, now=time.time() - 7200, lifetime=60),
     "expired"),
])
def test_an_iap_assertion_that_is_not_for_this_project_or_not_iaps_is_refused(issuer, change, reason):
    with pytest.raises(IdentityRefused, match=reason):
        iap_verifier(issuer).verify_iap(change(issuer["key"]))


def test_without_iap_configured_no_assertion_is_accepted(issuer):
    assertion = mint(issuer["key"], "a@example.com", IAP_PREFIX + "1", iss=IAP_ISSUER)
    with pytest.raises(IdentityRefused, match="no Identity-Aware Proxy"):
        iap_verifier(issuer, prefix="").verify_iap(assertion)
