"""A real OAuth client library against remit's token endpoint.

Run by crates/remit-gateway/tests/gateway/token.rs:

    python3 e2e/authlib_client.py TOKEN_URL HUMAN_TOKEN

It performs, with authlib's OAuth2Session (client authentication by HTTP Basic, as the
library does by default):
  1. client_credentials as the support assistant (its API key is its client secret);
  2. an RFC 8693 token exchange: alice's token as subject_token, the assistant's key as
     actor_token;
and prints one JSON object with both token responses, so the test can use the tokens.

Run by crates/remit-gateway/tests/gateway/client_assertion.rs:

    python3 e2e/authlib_client.py TOKEN_URL --private-key-jwt KEY_JWK_FILE KID AUDIENCE

it authenticates the support assistant with authlib's PrivateKeyJWT (RFC 7523 client
assertions signed with its Ed25519 key, `kid` KID, `aud` AUDIENCE — remit's token endpoint
as its metadata names it) for client_credentials, then sends one assertion twice (remit
must refuse the replay), and prints the results as one JSON object.
"""
import json
import sys
import time

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import OKPKey

CLIENT = "support-assistant"


class ShortLivedPrivateKeyJWT(PrivateKeyJWT):
    """authlib's PrivateKeyJWT, with a fresh one-minute assertion per request: authlib's
    default assertion lives an hour, longer than remit accepts (five minutes)."""

    def sign(self, auth, token_endpoint):
        self.claims = {"exp": int(time.time()) + 60}
        return super().sign(auth, token_endpoint)


def session(key, kid, audience, auth):
    s = OAuth2Session(
        client_id=CLIENT,
        client_secret=key,
        token_endpoint_auth_method="private_key_jwt",
        scope="tickets.read",
    )
    s.register_client_auth_method(auth(audience, headers={"kid": kid}, alg="EdDSA"))
    return s


def private_key_jwt(token_url, jwk_path, kid, audience):
    with open(jwk_path, encoding="utf-8") as f:
        key = OKPKey.import_key(json.load(f))
    fresh = session(key, kid, audience, ShortLivedPrivateKeyJWT)
    cc = fresh.fetch_token(
        token_url, grant_type="client_credentials", purpose="case-summary"
    )
    # One assertion (fixed claims, so authlib signs the same `jti` again), sent twice.
    fixed = {"exp": int(time.time()) + 60, "jti": "authlib-replay-%d" % time.time_ns()}
    replayed = session(
        key, kid, audience, lambda aud, **kw: PrivateKeyJWT(aud, claims=fixed, **kw)
    )
    first = replayed.fetch_token(token_url, grant_type="client_credentials")
    try:
        replayed.fetch_token(token_url, grant_type="client_credentials")
        second = "issued"
    except OAuthError as e:
        second = e.error
    return {
        "private_key_jwt": dict(cc),
        "replay": {"first": first.get("scope"), "second": second},
    }

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def main():
    if len(sys.argv) == 6 and sys.argv[2] == "--private-key-jwt":
        print(json.dumps(private_key_jwt(sys.argv[1], *sys.argv[3:6])))
        return
    token_url, human_token = sys.argv[1], sys.argv[2]
    client = OAuth2Session(
        client_id="support-assistant",
        client_secret="rk_demo_support_assistant",
        scope="tickets.read",
    )
    cc = client.fetch_token(
        token_url, grant_type="client_credentials", purpose="case-summary"
    )
    # The exchange authenticates the actor by its token, not as an OAuth client.
    public = OAuth2Session(token_endpoint_auth_method="none")
    exchanged = public.fetch_token(
        token_url,
        grant_type=EXCHANGE,
        subject_token=human_token,
        subject_token_type="urn:ietf:params:oauth:token-type:jwt",
        actor_token="rk_demo_support_assistant",
        actor_token_type="urn:remit:params:oauth:token-type:api_key",
        purpose="case-summary",
    )
    print(json.dumps({"client_credentials": dict(cc), "exchange": dict(exchanged)}))


if __name__ == "__main__":
    main()
