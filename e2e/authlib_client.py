"""A real OAuth client library against remit's token endpoint.

Run by crates/remit-gateway/tests/gateway/token.rs:

    python3 e2e/authlib_client.py TOKEN_URL HUMAN_TOKEN

It performs, with authlib's OAuth2Session (client authentication by HTTP Basic, as the
library does by default):
  1. client_credentials as the support assistant (its API key is its client secret);
  2. an RFC 8693 token exchange: alice's token as subject_token, the assistant's key as
     actor_token;
and prints one JSON object with both token responses, so the test can use the tokens.
"""
import json
import sys

from authlib.integrations.requests_client import OAuth2Session

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def main():
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
