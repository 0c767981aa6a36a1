"""No credential leaves Polo: canaries in every credential, every source and channel pointed at a hostile server that
echoes what it was sent, every collector, the inventory and the rules run through Dagster, then every file of the
Polo and Dagster homes, every table of the store and every command's output searched for every encoding of them."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets as token_source
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import yaml
from werkzeug import Request, Response

from polo_pipelines.hierarchy import ancestry as hy
from polo_pipelines.sources import SOURCES
from polo_pipelines.sources.http import encodings
from polo_pipelines.sources.secrets import secret_env
from polo_pipelines.store import forget_migrations, polo_store

from .test_rules import HIERARCHIES, NOW, write_costs

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = "2026-11-10"
SOURCE_NAMES = [spec.name for spec in SOURCES]
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def canary(name: str) -> str:
    """A value no one else writes, with the characters form and URL encoding change."""
    return f"cnry{token_source.token_hex(6)}{name}+A/b=c~d"


class Hostile:
    """Every HTTP request answered with an error that quotes it whole (its path alone, as a router says it has no route
    for it, then method, URL, headers and body), in the error shape the
    caller's client parses: 500 twice for each path (the clients retry), then 401/403. GCP's token endpoint answers with
    a token, so the BigQuery call carries it and gets it echoed back."""

    def __init__(self):
        self.seen: list[str] = []
        self.counts: dict[str, int] = {}
        self.issued_token = f"ya29.cnry{token_source.token_hex(12)}"
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        body = request.get_data(as_text=True, cache=True)
        echo = "\n".join(
            [
                f"no route for {request.full_path}",
                f"{request.method} {request.url}",
                *(f"{k}: {v}" for k, v in request.headers.items()),
                body,
            ]
        )
        with self.lock:
            self.seen.append(echo)
            count = self.counts[request.path] = self.counts.get(request.path, 0) + 1
        if request.path == "/gcp/token" and count > 2:
            return Response(json.dumps({"access_token": self.issued_token, "expires_in": 3600, "token_type": "Bearer"}), 200)
        status = 500 if count <= 2 else 401
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("AWS4-HMAC-SHA256"):
            service = authorization.split("Credential=", 1)[1].split("/")[3]
            status = 500 if count <= 2 else 403
            if request.headers.get("X-Amz-Target"):  # the JSON protocols (Cost Explorer)
                doc = {"__type": "AccessDeniedException", "message": echo}
                return Response(json.dumps(doc), status, content_type="application/x-amz-json-1.1")
            if service == "s3":
                xml = f"<Error><Code>AccessDenied</Code><Message>{escape(echo)}</Message><RequestId>1</RequestId></Error>"
            else:  # the query protocols (STS, EC2)
                xml = (
                    f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{escape(echo)}</Message>"
                    "</Error><RequestId>1</RequestId></ErrorResponse>"
                )
            return Response(xml, status, content_type="text/xml")
        if request.path.startswith("/gcp/") or request.path.startswith("/azure/"):  # Google's and Microsoft's error documents
            doc = {"error": {"code": status, "message": echo, "status": "UNAUTHENTICATED"}}
            if request.path.endswith("/token"):
                doc = {"error": "invalid_client", "error_description": echo}
            return Response(json.dumps(doc), status, content_type="application/json")
        return Response(json.dumps({"message": echo, "errors": [{"message": echo}]}), status, content_type="application/json")


class HostileSmtp(socketserver.StreamRequestHandler):
    """An SMTP server that offers AUTH and refuses every credential, quoting what it was sent, raw and decoded."""

    seen: list[str] = []

    def handle(self):
        self.wfile.write(b"220 hostile ESMTP\r\n")
        while line := self.rfile.readline():
            text = line.decode("latin-1").rstrip("\r\n")
            self.seen.append(text)
            verb = text.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250-hostile\r\n250 AUTH PLAIN LOGIN\r\n")
            elif verb == "AUTH" and text.upper().startswith("AUTH LOGIN"):
                self.wfile.write(b"334 UGFzc3dvcmQ6\r\n")
                answer = self.rfile.readline().decode("latin-1").strip()
                self.seen.append(answer)
                self.wfile.write(f"535 5.7.8 refused {text} {answer} = {_decoded(answer)}\r\n".encode("latin-1"))
            elif verb == "AUTH":
                blob = text.split(" ")[-1]
                self.wfile.write(f"535 5.7.8 refused {blob} = {_decoded(blob)}\r\n".encode("latin-1"))
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(f"530 5.7.0 authenticate first: {text}\r\n".encode("latin-1"))


def _decoded(blob: str) -> str:
    try:
        return base64.b64decode(blob).decode("latin-1").replace("\0", " ")
    except ValueError:
        return blob


def service_account_key(token_uri: str) -> tuple[str, list[str]]:
    """A real service-account key (a fresh RSA key) whose token endpoint is the hostile server; and the parts that
    would give it away: its key id and every line of the private key's body."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    key_id = f"cnry{token_source.token_hex(8)}"
    doc = {
        "type": "service_account",
        "project_id": "polo-canary",
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": "polo@polo-canary.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return json.dumps(doc), [key_id, *body[1:-1]]


def needles(values: list[str]) -> set[bytes]:
    """Every form a secret may be written in; a secret's distinctive ``cnry…`` core alone, too."""
    out: set[bytes] = set()
    for value in values:
        for form in encodings(value):
            out.add(form.encode())
        core = re.search(r"cnry[0-9a-f]+\w*", value)
        if core:
            out.add(core.group(0).encode())
    return out


def scan(blobs: dict[str, bytes], forms: set[bytes]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for where, data in blobs.items():
        hits = [form.decode() for form in forms if form in data]
        if JWT.search(data):
            hits.append("a JWT")
        if hits:
            found[where] = sorted(hits)
    return found


def home_files(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def store_tables(dsn: str) -> dict[str, bytes]:
    """Every table of the store as text (its files on disk are compressed, so they are read through the engine)."""
    out = {}
    with polo_store(dsn, reader=True) as store:
        tables = store.query_df("SELECT name FROM system.tables WHERE database = 'polo' AND engine NOT LIKE '%View%'")["name"]
        for table in tables:
            frame = store.query_df(f"SELECT * FROM polo.`{table}`")
            out[f"polo.{table}"] = frame.to_csv(index=False).encode()
    return out


@pytest.fixture
def hostile_smtp():
    HostileSmtp.seen = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), HostileSmtp)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.e2e
def test_no_credential_in_any_encoding_leaves_polo_when_every_server_is_hostile(tmp_path, httpserver, hostile_smtp, monkeypatch):
    hostile = Hostile()
    httpserver.expect_request(re.compile(".*")).respond_with_handler(hostile)
    base = httpserver.url_for("").rstrip("/")

    home = tmp_path / "polo"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(ROOT / "config" / "dagster.yaml", dagster_home / "dagster.yaml")
    dsn = f"chdb://{home / 'clickhouse'}"

    credential, key_parts = service_account_key(f"{base}/gcp/token")
    planted = {env: canary(env.removeprefix("POLO_").lower()) for env in secret_env().values()}
    planted["POLO_SLACK_WEBHOOK_URL"] = f"{base}/slack/services/T0/B0/cnry{token_source.token_hex(8)}"
    planted["POLO_GCP_CREDENTIALS"] = credential
    planted["AWS_SECRET_ACCESS_KEY"] = canary("aws_secret")
    planted["AWS_SESSION_TOKEN"] = canary("aws_session")
    assert set(secret_env().values()) <= set(planted), "a credential of a source has no canary"

    rules_file = tmp_path / "rules.yaml"
    budget = {"type": "budget", "scope": {"filters": {"untagged": True}}, "severity": "warning"}
    condition = {"max_usd": 1, "period": "day", "per": "resource"}
    rules_file.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {**budget, "id": "canary-slack", "name": "to Slack", "condition": condition, "channel": "slack"},
                    {**budget, "id": "canary-email", "name": "by email", "condition": condition, "channel": "email"},
                ]
            }
        )
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POLO_", "AWS_", "DAGSTER_"))},
        **planted,
        "POLO_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "POLO_RULES_FILE": str(rules_file),
        "POLO_HTTP_MAX_WAIT_SECONDS": "20",
        "AWS_ACCESS_KEY_ID": "AKIAPOLOCANARY000000",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"{base.replace('localhost', '127.0.0.1')}/aws",  # an IP: S3 is asked path-style
        "AWS_MAX_ATTEMPTS": "3",
        "POLO_AWS_CUR_URI": "s3://polo-bills/cur/polo-export",
        "POLO_AWS_INVENTORY_TARGETS": json.dumps(
            [{"account_id": "111111111111", "role_arn": "arn:aws:iam::111111111111:role/polo-inventory", "regions": ["us-east-1"]}]
        ),
        "POLO_FOCUS_URI": "s3://polo-bills/focus",
        "POLO_CLOUDTRAIL_URI": "s3://polo-bills/trail",
        "POLO_CLOUDWATCH": "1",
        "POLO_OTEL": "1",  # the Price List, asked at AWS_ENDPOINT_URL
        "POLO_GITHUB_ORG": "polo",
        "POLO_GITHUB_API_URL": f"{base}/github",
        "POLO_CLOUDFLARE_ACCOUNT_ID": "acct",
        "POLO_CLOUDFLARE_API_URL": f"{base}/cloudflare",
        "POLO_DATADOG_SITE": "datadoghq.com",
        "POLO_DATADOG_API_URL": f"{base}/datadog",
        "POLO_GCP_BILLING_TABLE": "polo-canary.billing.gcp_billing_export_resource_v1_X",
        "POLO_GCP_BIGQUERY_URL": f"{base}/gcp",
        "POLO_AZURE_SCOPES": "subscriptions/s1",
        "POLO_AZURE_TENANT_ID": "tenant",
        "POLO_AZURE_CLIENT_ID": "client",
        "POLO_AZURE_MANAGEMENT_URL": f"{base}/azure",
        "POLO_AZURE_AUTHORITY_URL": f"{base}/azure/login",
        "POLO_SMTP_HOST": "127.0.0.1",
        "POLO_SMTP_PORT": str(hostile_smtp),
        "POLO_SMTP_USER": "polo",
        "POLO_SMTP_STARTTLS": "0",
        "POLO_ALERT_EMAIL_TO": "ops@example.com",
    }

    # violations to notify: a resource with no tags over $1 a day, in a store of this home
    monkeypatch.setenv("POLO_HOME", str(home))
    forget_migrations()
    with polo_store(dsn) as store:
        write_costs(store)
        hy.refresh(store, HIERARCHIES)
    forget_migrations()

    def run(*argv: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=ROOT, env={**env, **extra}, capture_output=True, timeout=600)

    def materialize(selection: str, *more: str, **extra: str) -> subprocess.CompletedProcess:
        return run(str(BIN / "dagster"), "asset", "materialize", "-m", "polo_pipelines.definitions", "--select", selection, *more, **extra)

    collectors = ",".join(spec.asset_name for spec in SOURCES)
    as_of = json.dumps({"ops": {"rule_violations": {"config": {"as_of": NOW.isoformat()}}}})
    outputs = {
        "collectors": materialize(collectors, "--partition", DAY),
        "inventory and rules": materialize("aws_inventory_events,budget_rules,rule_violations", "--config-json", as_of),
        "check-connections": run(str(BIN / "polo"), "check-connections"),
        "AWS from Cost Explorer": materialize("aws_cost_events", "--partition", DAY, POLO_AWS_MODE="cost_explorer"),
        "check-connections --json": run(str(BIN / "polo"), "check-connections", "--json"),
    }

    # the probes really reached every hostile server and carried the canaries there
    reached = "\n".join(hostile.seen)
    for path in ("/github/", "/cloudflare/", "/datadog/", "/gcp/token", "/gcp/bigquery/", "/azure/login/", "/aws/", "/slack/"):
        assert f":{httpserver.port}{path}" in reached, f"nothing asked {path}"
    for service in ("/s3/", "/sts/", "/ce/"):
        assert service in reached, f"no AWS {service.strip('/')} request"
    assert hostile.issued_token in reached, "BigQuery was never asked with the issued token"
    smtp_seen = "\n".join(HostileSmtp.seen)
    assert "AUTH" in smtp_seen, "the SMTP server was never asked to authenticate"
    travelled = reached + smtp_seen + "".join(_decoded(line.split(" ")[-1]) for line in HostileSmtp.seen)
    for env_name, value in planted.items():
        if env_name not in ("POLO_GCP_CREDENTIALS", "AWS_SECRET_ACCESS_KEY"):  # these two sign requests, they never travel
            assert any(form in travelled for form in encodings(value)), f"{env_name} never reached a server: the probe proves nothing"

    # every command failed on the hostile servers, and said which source and why
    texts = {name: (done.stdout + done.stderr).decode(errors="replace") for name, done in outputs.items()}
    assert outputs["collectors"].returncode != 0 and outputs["check-connections"].returncode == 1
    connections = texts["check-connections"]
    for name in SOURCE_NAMES:
        assert re.search(rf"{name}\s+failed", connections), f"check-connections did not report {name} failing:\n{connections}"

    forms = needles([*planted.values(), *key_parts, hostile.issued_token])
    blobs = {f"output of {name}": text.encode() for name, text in texts.items()}
    blobs.update(home_files(home))
    blobs.update(store_tables(dsn))
    assert len([p for p in blobs if "compute_logs" in p]) >= len(SOURCE_NAMES), "the steps' compute logs were not kept"
    assert any(p.endswith(".db") for p in blobs), "the event log was not found"
    leaks = scan(blobs, forms)
    assert not leaks, "credentials leaked:\n" + "\n".join(f"{where}: {', '.join(hits)}" for where, hits in leaks.items())
