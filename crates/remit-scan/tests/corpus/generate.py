#!/usr/bin/env python3
"""Writes remit-scan's labelled corpus (corpus.jsonl) and the 4 KB benchmark set
(bench4k.jsonl) next to this file.

Every secret is fake: random characters in the public shape of each credential type, from a
fixed seed, so the files are the same on every run. Rerun after changing this script:

    python3 crates/remit-scan/tests/corpus/generate.py

corpus.jsonl, one object a line:
  name      a unique name: rule, wrapper, index
  body      the body as text (for `identity` bodies), or
  body_b64  the body's bytes, base64 (for compressed bodies)
  encoding  identity | gzip
  chunks    for SSE entries: the stream's chunk sizes (the body is the whole stream)
  expect    rule ids that must be found (empty: a negative, nothing may be found)
"""

import base64
import gzip
import json
import math
import os
import random
import string
import urllib.parse
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20260601)

UPPER = string.ascii_uppercase
ALNUM = string.ascii_letters + string.digits
B32 = UPPER + "234567"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


def rand(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def entropy(s):
    c = Counter(s)
    return -sum(v / len(s) * math.log2(v / len(s)) for v in c.values())


def strong(alphabet, n, minimum=3.6):
    while True:
        s = rand(alphabet, n)
        low = s.lower()
        if entropy(s) >= minimum and not any(w in low for w in ("example", "dummy", "lorem", "sample", "xxxx")):
            return s


def uuid():
    h = rand(HEX, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def pem(kind="PRIVATE KEY"):
    body = base64.b64encode(rng.randbytes(rng.choice([600, 900, 1200]))).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}-----\n{lines}\n-----END {kind}-----\n"


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt():
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": uuid(), "iat": rng.randint(1.6e9, 1.8e9), "scope": "read write"}).encode())
    return f"{header}.{payload}.{b64url(rng.randbytes(32))}"


# Each rule: a generator of (field name, value, expected ids). The field name is the JSON key
# or assignment name the value is written under.
def r_aws_id():
    return "access_key_id", "AKIA" + strong(B32, 16, 3.0), ["aws-access-key-id"]


def r_aws_secret():
    return rng.choice(["aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "SecretAccessKey"]), strong(B64, 40, 4.0), ["aws-secret-access-key"]


def r_gcp_key():
    return "key", "AIza" + strong(ALNUM + "-_", 35, 3.5), ["gcp-api-key"]


def r_gcp_sa():
    sa = {
        "type": "service_account",
        "project_id": "acme-" + rand(string.ascii_lowercase, 6),
        "private_key_id": rand(HEX, 40),
        "private_key": pem(),
        "client_email": "svc@acme.iam.gserviceaccount.com",
    }
    return "credentials", sa, ["gcp-service-account-key", "private-key"]


def r_azure():
    key = base64.b64encode(rng.randbytes(64)).decode()
    cs = f"DefaultEndpointsProtocol=https;AccountName=acme{rand(string.ascii_lowercase, 4)};AccountKey={key};EndpointSuffix=core.windows.net"
    return "connection_string", cs, ["azure-storage-key"]


def prefixed(field, prefix, alphabet, n, rule):
    return lambda: (field, prefix + strong(alphabet, n, 3.5), [rule])


def r_github_fg():
    return "gh_token", "github_pat_" + strong(ALNUM, 22) + "_" + strong(ALNUM, 59), ["github-fine-grained-pat"]


def r_circleci():
    return "circle_token", "CCIPAT_" + strong(ALNUM, 22) + "_" + rand(HEX, 40), ["circleci-token"]


def r_slack():
    kind = rng.choice("bpa")
    return "slack", f"xox{kind}-{rand(string.digits, 12)}-{rand(string.digits, 13)}-{strong(ALNUM, 24)}", ["slack-token"]


def r_slack_webhook():
    return "webhook_url", f"https://hooks.slack.com/services/T{rand(UPPER + string.digits, 10)}/B{rand(UPPER + string.digits, 10)}/{strong(ALNUM, 24)}", ["slack-webhook"]


def r_stripe():
    return "stripe", rng.choice(["sk_live_", "rk_live_"]) + strong(ALNUM, rng.choice([24, 34, 99])), ["stripe-secret-key"]


def r_sendgrid():
    return "sendgrid", "SG." + strong(B64URL, 22) + "." + strong(B64URL, 43), ["sendgrid-api-key"]


def r_anthropic():
    return "x-api-key", "sk-ant-api03-" + strong(B64URL, 93) + "AA", ["anthropic-api-key"]


def r_openai():
    form = rng.choice(["proj", "legacy", "svcacct"])
    if form == "proj":
        v = "sk-proj-" + strong(B64URL, 156)
    elif form == "svcacct":
        v = "sk-svcacct-" + strong(B64URL, 74)
    else:
        v = "sk-" + strong(ALNUM, 20) + "T3BlbkFJ" + strong(ALNUM, 20)
    return "openai_key", v, ["openai-api-key"]


def r_private_key():
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"])
    return "key_pem", pem(kind), ["private-key"]


def r_jwt():
    return "id_token", jwt(), ["jwt"]


def r_db():
    scheme = rng.choice(["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "rediss", "amqp"])
    user = rng.choice(["app", "svc_orders", "reporting", ""] if scheme.startswith("redis") else ["app", "svc_orders", "reporting"])
    pw = strong(ALNUM + "!*~.-", 18, 3.5)
    host = rng.choice(["db.internal", "10.0.3.7:5432", "cluster0.ab1cd.mongodb.net", "cache.prod:6379"])
    return "database_url", f"{scheme}://{user}:{pw}@{host}/{rng.choice(['app', 'orders', '0'])}", ["database-url"]


def r_generic():
    field = rng.choice(["client_secret", "api_key", "password", "db_password", "signing_secret", "auth_token", "apiKey", "private_key"])
    alphabet = ALNUM + "!@#%^*" if "password" in field else ALNUM
    return field, strong(alphabet, rng.choice([20, 32, 40]), 3.9), ["generic-secret"]


def r_remit():
    while True:
        k = "rk_" + b64url(rng.randbytes(32))
        if not k.startswith(("rk_live_", "rk_test_")) and entropy(k) >= 3.6:
            return "remit_key", k, ["remit-api-key"]


RULES = {
    "aws-access-key-id": r_aws_id,
    "aws-secret-access-key": r_aws_secret,
    "gcp-api-key": r_gcp_key,
    "gcp-service-account-key": r_gcp_sa,
    "azure-storage-key": r_azure,
    "github-pat": prefixed("github_token", "ghp_", ALNUM, 36, "github-pat"),
    "github-oauth-token": prefixed("token", "gho_", ALNUM, 36, "github-oauth-token"),
    "github-app-token": lambda: ("installation_token", rng.choice(["ghu_", "ghs_"]) + strong(ALNUM, 36), ["github-app-token"]),
    "github-refresh-token": prefixed("refresh", "ghr_", ALNUM, 76, "github-refresh-token"),
    "github-fine-grained-pat": r_github_fg,
    "gitlab-pat": prefixed("gitlab_token", "glpat-", B64URL, 20, "gitlab-pat"),
    "gitlab-ci-token": lambda: ("runner_token", rng.choice(["glrt-", "glcbt-", "gldt-"]) + strong(B64URL, 20), ["gitlab-ci-token"]),
    "circleci-token": r_circleci,
    "buildkite-token": lambda: ("bk", "bkua_" + rand(HEX, 40), ["buildkite-token"]),
    "npm-token": prefixed("npm", "npm_", ALNUM, 36, "npm-token"),
    "pypi-token": lambda: ("pypi", "pypi-AgEIcHlwaS5vcmc" + strong(B64URL, 120), ["pypi-token"]),
    "slack-token": r_slack,
    "slack-webhook": r_slack_webhook,
    "stripe-secret-key": r_stripe,
    "sendgrid-api-key": r_sendgrid,
    "anthropic-api-key": r_anthropic,
    "openai-api-key": r_openai,
    "openrouter-api-key": lambda: ("or", "sk-or-v1-" + rand(HEX, 64), ["openrouter-api-key"]),
    "huggingface-token": prefixed("hf", "hf_", string.ascii_letters, 34, "huggingface-token"),
    "groq-api-key": prefixed("groq", "gsk_", ALNUM, 52, "groq-api-key"),
    "replicate-api-token": prefixed("replicate", "r8_", ALNUM, 37, "replicate-api-token"),
    "xai-api-key": prefixed("xai", "xai-", ALNUM, 80, "xai-api-key"),
    "perplexity-api-key": prefixed("pplx", "pplx-", ALNUM, 48, "perplexity-api-key"),
    "private-key": r_private_key,
    "jwt": r_jwt,
    "database-url": r_db,
    "generic-secret": r_generic,
    "remit-api-key": r_remit,
}

# Look-alikes that must not be reported: documented examples, placeholders, shapes that are
# close but wrong, and ordinary identifiers.
NEGATIVES = [
    ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws_secret_access_key", "${AWS_SECRET_ACCESS_KEY}"),
    ("access_key_id", "AKIA1234"),
    ("key", "AIzaSy-your-api-key-here"),
    ("github_token", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("github_token", "ghp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ("github_token", "ghp_" + "abc123"),
    ("gitlab_token", "glpat-xxxxxxxxxxxxxxxxxxxx"),
    ("slack", "xoxb-your-bot-token"),
    ("webhook_url", "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"),
    ("stripe", "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"),
    ("stripe", "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx"),
    ("openai_key", "sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("openai_key", "sk-proj-your-key-here"),
    ("openai_key", "sk-..."),
    ("anthropic", "sk-ant-api03-xxxxxxxx"),
    ("task", "task-1234-desk-5678"),
    ("key_pem", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n-----END PUBLIC KEY-----"),
    ("note", "Put your key between -----BEGIN PRIVATE KEY----- and the END line."),
    ("id_token", "eyJhbGciOiJIUzI1NiJ9"),
    ("database_url", "postgres://app:${DB_PASSWORD}@db.internal/app"),
    ("database_url", "postgres://postgres:password@localhost:5432/postgres"),
    ("database_url", "mysql://root@localhost/test"),
    ("database_url", "redis://cache.prod:6379/0"),
    ("database_url", "mongodb+srv://<user>:<password>@cluster0.example.mongodb.net/"),
    ("password", "${PASSWORD}"),
    ("password", "changeme"),
    ("password", "{{ vault_password }}"),
    ("api_key", "<your-api-key>"),
    ("api_key", "YOUR_API_KEY"),
    ("max_tokens", 4096),
    ("token_type", "Bearer"),
    ("tokenizer", "cl100k_base"),
    ("remit_key", "rk_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("remit_key", "rk_live_" + "x" * 20),
    ("note", "work_item_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"),
    ("password_hint", "the name of my first dog"),
]


def negative_generated():
    """Ordinary identifiers under ordinary and tempting keys."""
    choices = [
        ("request_id", uuid()),
        ("session_token", uuid()),
        ("sha256", rand(HEX, 64)),
        ("commit", rand(HEX, 40)),
        ("etag", '"' + rand(HEX, 32) + '"'),
        ("content_md5", base64.b64encode(rng.randbytes(16)).decode()),
        ("version", f"{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}"),
        ("image", f"ghcr.io/acme/api@sha256:{rand(HEX, 64)}"),
        ("created_at", f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T12:{rng.randint(10, 59)}:00Z"),
        ("key_file", "config/service-account.json"),
        ("thumbnail", base64.b64encode(rng.randbytes(60)).decode()),
    ]
    return rng.choice(choices)


WORDS = ("the deploy pipeline runs nightly and the report lists each failed job with its owner "
         "so that someone can look at the logs before the morning standup please summarise "
         "what changed in the billing service since last week and open a ticket if needed").split()


def prose(n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def as_text(field, value):
    if isinstance(value, dict):
        return json.dumps(value)
    return f"{field}={value}"


# Wrappers: (name, function(field, value) -> (body bytes, encoding, chunks or None))
def w_json(field, value):
    return json.dumps({"id": uuid(), "tool": "configure", "arguments": {field: value}, "note": prose(8)}).encode(), "identity", None


def w_prose(field, value):
    msg = f"{prose(10)} {as_text(field, value)} {prose(6)}"
    return json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": msg}], "max_tokens": 512}).encode(), "identity", None


def w_escaped(field, value):
    # OpenAI-style tool call: the arguments are a JSON string inside JSON.
    return json.dumps({"type": "function", "function": {"name": "set_config", "arguments": json.dumps({field: value})}}).encode(), "identity", None


def w_double(field, value):
    inner = json.dumps({"env": {field: value}})
    return json.dumps({"result": json.dumps({"content": [{"type": "text", "text": inner}]})}).encode(), "identity", None


def w_unicode(field, value):
    s = json.dumps({field: value}, ensure_ascii=True)
    s = s.replace("/", "\\u002f").replace("+", "\\u002b").replace(":", "\\u003a")
    return ('{"data":"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"}').encode(), "identity", None


def w_form(field, value):
    if isinstance(value, dict):
        value = json.dumps(value)
    return urllib.parse.urlencode({"grant_type": "client_credentials", field: value, "scope": "read"}).encode(), "identity", None


def w_base64(field, value):
    blob = base64.b64encode(as_text(field, value).encode()).decode()
    return json.dumps({"attachment": {"filename": "notes.txt", "content_base64": blob}}).encode(), "identity", None


def w_gzip(field, value):
    body, _, _ = w_json(field, value)
    return gzip.compress(body, mtime=0), "gzip", None


def w_sse(field, value):
    events = [
        'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n\n',
        "event: message\ndata: " + json.dumps({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": as_text(field, value)}]}}) + "\n\n",
        'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":2}}\n\n',
    ]
    stream = "".join(events).encode()
    # Cut the stream into chunks; one cut falls inside the secret's event.
    cuts = sorted(set([len(events[0]) + len(events[1]) // 2] + [rng.randint(1, len(stream) - 1) for _ in range(5)]))
    sizes, last = [], 0
    for c in cuts:
        sizes.append(c - last)
        last = c
    sizes.append(len(stream) - last)
    return stream, "identity", sizes


def w_env(field, value):
    if isinstance(value, dict):
        value = json.dumps(value)
    text = f"# deploy settings\nREGION=eu-west-1\n{field.upper()}={value}\nLOG_LEVEL=info\n"
    return json.dumps({"path": ".env", "content": text}).encode(), "identity", None


WRAPPERS = [w_json, w_prose, w_escaped, w_double, w_unicode, w_form, w_base64, w_gzip, w_sse, w_env]


def entry(name, body, encoding, chunks, expect):
    e = {"name": name}
    if encoding == "identity":
        e["body"] = body.decode()
    else:
        e["body_b64"] = base64.b64encode(body).decode()
    e["encoding"] = encoding
    if chunks:
        e["chunks"] = chunks
    e["expect"] = expect
    return e


def corpus():
    out = []
    for rule, gen in RULES.items():
        for w in WRAPPERS:
            for i in range(2):
                field, value, expect = gen()
                body, enc, chunks = w(field, value)
                out.append(entry(f"{rule}/{w.__name__[2:]}/{i}", body, enc, chunks, expect))
    for i, (field, value) in enumerate(NEGATIVES):
        for w in (w_json, w_prose, w_escaped, w_form, w_base64):
            body, enc, chunks = w(field, value)
            out.append(entry(f"negative/{field}/{w.__name__[2:]}/{i}", body, enc, chunks, []))
    for i in range(120):
        field, value = negative_generated()
        w = rng.choice([w_json, w_prose, w_escaped, w_sse, w_gzip])
        body, enc, chunks = w(field, value)
        out.append(entry(f"negative/{field}/{w.__name__[2:]}/g{i}", body, enc, chunks, []))
    return out


def filler_messages(target):
    msgs = []
    size = 0
    while size < target:
        m = {"role": rng.choice(["user", "assistant"]), "content": prose(rng.randint(15, 40))}
        if rng.random() < 0.3:
            m = {"role": "tool", "tool_call_id": "call_" + rand(ALNUM, 24), "content": json.dumps({"rows": rng.randint(1, 90), "next": uuid(), "sha256": rand(HEX, 64)})}
        msgs.append(m)
        size += len(json.dumps(m))
    return msgs


def bench4k():
    """~4 KB chat-completion bodies; half carry one secret in one of four forms."""
    out = []
    rules = list(RULES.items())
    for i in range(400):
        msgs = filler_messages(3600)
        expect = []
        if i % 2 == 0:
            rule, gen = rules[(i // 2) % len(rules)]
            field, value, expect = gen()
            form = (i // 2) % 4
            if form == 0:
                msgs.insert(len(msgs) // 2, {"role": "user", "content": f"{prose(6)} {as_text(field, value)}"})
            elif form == 1:
                msgs.append({"role": "assistant", "tool_calls": [{"id": "call_" + rand(ALNUM, 24), "type": "function", "function": {"name": "set_secret", "arguments": json.dumps({field: value})}}]})
            elif form == 2:
                msgs.append({"role": "user", "content": "attachment: " + base64.b64encode(as_text(field, value).encode()).decode()})
            else:
                msgs.append({"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"stdout": as_text(field, value) + "\n"})})
        else:
            field, value = negative_generated()
            msgs.append({"role": "tool", "tool_call_id": "call_2", "content": json.dumps({field: value})})
        body = json.dumps({"model": "gpt-4.1", "temperature": 0.2, "max_tokens": 1024, "messages": msgs})
        out.append({"name": f"bench/{i}", "body": body, "encoding": "identity", "expect": expect})
    return out


def write(name, rows):
    with open(os.path.join(HERE, name), "w") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")


if __name__ == "__main__":
    write("corpus.jsonl", corpus())
    write("bench4k.jsonl", bench4k())
