"""A day of an organisation trail for `make bench`: 1,000,000 CloudTrail records read and written (issue: <= 10 s,
peak RSS <= 1 GiB).

The delivery is generated first (not timed) in the documented layout, ``AWSLogs/<org>/<account>/CloudTrail/
<region>/YYYY/MM/DD/``, one gzip JSON file per account, region and half hour, the records in the documented shape
(identity with session context, source IP, user agent, request and response). The mix is an organisation's day as
CloudTrail logs it: most calls are reads (``Describe*``, ``Get*``, ``List*``), some fail, many writes are calls
Level 3 has no use for (tags, SSM heartbeats, parameters), and about one in eight changes a resource Polo maps
(instances launched, modified, stopped; volumes, routes, scaling groups, databases, services). The timed phase runs
in a fresh process: the CloudTrail collector's own ``collect`` over the local folder, then ``replace_days`` into a
fresh embedded store, with the process's peak RSS.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.memory import peak_rss_mib
from polo_pipelines.sources.cloudtrail.sample import instances_set, person, record, role_session

DAY = dt.date(2026, 11, 10)
RECORDS = 1_000_000
ORG = "o-bench00000"
ACCOUNTS = [f"{200000000000 + n:012d}" for n in range(25)]
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]
SLOTS = 48  # a file per account, region and half hour

READS = ["DescribeInstances", "DescribeVolumes", "GetCallerIdentity", "ListBuckets", "DescribeSecurityGroups", "GetParameter"]
UNMAPPED = ["CreateTags", "UpdateInstanceInformation", "PutParameter", "CreateLogStream"]


def one(rng: random.Random, at: dt.datetime, account: str, region: str) -> dict:
    """One call of the mix, with the identity and the request shaped as CloudTrail logs them."""
    who = person(account, f"dev{rng.randrange(300)}@example.com") if rng.random() < 0.3 else role_session(account, "deployer", "ci-run")
    n = rng.randrange(10**6)
    instance, subnet, table = f"i-{n:017x}", f"subnet-{n % 500:08x}", f"rtb-{n % 300:08x}"
    roll = rng.random()
    if roll < 0.62:
        name = rng.choice(READS)
        out = record(at, account, who, name, {"filterSet": {"items": [{"name": "tag:team", "valueSet": {"items": [{"value": "web"}]}}]}})
    elif roll < 0.67:
        out = record(at, account, who, "RunInstances", {"instanceType": "p4d.24xlarge"}, None, errorCode="Client.UnauthorizedOperation")
    elif roll < 0.87:
        out = record(at, account, who, rng.choice(UNMAPPED), {"resourcesSet": {"items": [{"resourceId": instance}]}, "name": "/app/x"})
    else:
        kind = rng.randrange(8)
        if kind == 0:
            ids = [instance, f"i-{n + 1:017x}"]
            req = {"instanceType": "m5.large", "subnetId": subnet, "minCount": 2, "maxCount": 2}
            out = record(at, account, who, "RunInstances", req, {"instancesSet": instances_set(ids, "m5.large", subnet)})
        elif kind == 1:
            out = record(at, account, who, "ModifyInstanceAttribute", {"instanceId": instance, "instanceType": {"value": "m5.xlarge"}})
        elif kind == 2:
            out = record(at, account, who, rng.choice(["StopInstances", "StartInstances"]), {"instancesSet": instances_set([instance])})
        elif kind == 3:
            out = record(at, account, who, "CreateVolume", {"size": 100, "volumeType": "gp3"}, {"volumeId": f"vol-{n:017x}"})
        elif kind == 4:
            out = record(
                at,
                account,
                who,
                "CreateRoute",
                {"routeTableId": table, "destinationCidrBlock": "0.0.0.0/0", "natGatewayId": f"nat-{n % 50:017x}"},
            )
        elif kind == 5:
            out = record(
                at, account, who, "AssociateRouteTable", {"routeTableId": table, "subnetId": subnet}, {"associationId": f"rtbassoc-{n:x}"}
            )
        elif kind == 6:
            out = record(
                at, account, who, "UpdateAutoScalingGroup", {"autoScalingGroupName": f"web-{n % 40}", "desiredCapacity": n % 9 + 1}
            )
        else:
            out = record(at, account, who, "ModifyDBInstance", {"dBInstanceIdentifier": f"db-{n % 60}", "dBInstanceClass": "db.r6g.large"})
    out["awsRegion"] = region
    out["tlsDetails"] = {
        "tlsVersion": "TLSv1.3",
        "cipherSuite": "TLS_AES_128_GCM_SHA256",
        "clientProvidedHostHeader": f"ec2.{region}.amazonaws.com",
    }
    out["sessionCredentialFromConsole"] = "true" if who["type"] == "AssumedRole" and rng.random() < 0.2 else None
    return out


def make_trail(root: Path, records: int = RECORDS, day: dt.date = DAY) -> dict:
    """``records`` calls of ``day`` spread over accounts, regions and half hours; a file's calls are delivered a few
    minutes after its slot (the last slot's on the next day's folder)."""
    rng = random.Random(11)
    places = [(a, r) for a in ACCOUNTS for r in REGIONS]
    per_file = -(-records // (len(places) * SLOTS))
    written, files, raw = 0, 0, 0
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    for slot in range(SLOTS):
        start = midnight + dt.timedelta(minutes=30 * slot)
        delivered = start + dt.timedelta(minutes=35)
        for account, region in places:
            n = min(per_file, records - written)
            if n <= 0:
                break
            calls = [one(rng, start + dt.timedelta(seconds=rng.randrange(1800)), account, region) for _ in range(n)]
            body = json.dumps({"Records": calls}).encode()
            folder = root / "AWSLogs" / ORG / account / "CloudTrail" / region / f"{delivered:%Y/%m/%d}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{account}_CloudTrail_{region}_{delivered:%Y%m%dT%H%M}Z_{rng.getrandbits(64):016x}.json.gz"
            (folder / name).write_bytes(gzip.compress(body, compresslevel=6, mtime=0))
            written, files, raw = written + n, files + 1, raw + len(body)
    return {"records": written, "files": files, "json_mib": round(raw / 2**20, 1)}


def phase(root: str, dsn: str) -> dict:
    """The collector's day, timed in this process: read and map the trail, then write the events."""
    from polo_pipelines.sources.cloudtrail import trail
    from polo_pipelines.sources.locations import open_location
    from polo_pipelines.store import polo_store
    from polo_pipelines.store.events import day_range, replace_days

    with polo_store(dsn):
        pass  # engine load and schema are set-up, not collection
    base = peak_rss_mib()
    t0 = time.perf_counter()
    window = trail.collect(open_location(root), DAY, DAY + dt.timedelta(days=1))
    t1 = time.perf_counter()
    with polo_store(dsn) as store:
        replace_days(store, window.events, collector=trail.COLLECTOR, days=day_range(DAY, DAY + dt.timedelta(days=1)), source=root)
    t2 = time.perf_counter()
    # the floor in the same process: every file read, unpacked and parsed, nothing else
    location = open_location(root)
    t3 = time.perf_counter()
    with trail.gc_paused():  # as the collector reads
        for relpath in window.files:
            trail.read_records(location, relpath.removeprefix(location.uri + "/"), "floor")
    floor = time.perf_counter() - t3
    return {
        "records": window.records,
        "skipped": window.skipped,
        "events": len(window.events),
        "files": len(window.files),
        "read_map_s": round(t1 - t0, 3),
        "write_s": round(t2 - t1, 3),
        "total_s": round(t2 - t0, 3),
        "peak_rss_mib": peak_rss_mib(),
        "engine_rss_mib": round(base, 1),
        "floor_parse_s": round(floor, 3),
        "over_floor": round((t2 - t0) / floor, 2),
    }


def run(runs: int = 3) -> dict:
    with tempfile.TemporaryDirectory(prefix="polo-bench-trail-") as tmp:
        root = Path(tmp) / "trail"
        t = time.perf_counter()
        made = make_trail(root)
        generate_s = time.perf_counter() - t
        phases = []
        for n in range(runs):
            out = subprocess.run(
                [sys.executable, "-m", "bench.cloudtrail", "--phase", str(root), f"chdb://{Path(tmp) / f'clickhouse-{n}'}"],
                capture_output=True,
                text=True,
                check=True,
            )
            phases.append(json.loads(out.stdout.strip().splitlines()[-1]))
    median = sorted(phases, key=lambda r: r["total_s"])[len(phases) // 2]
    return {
        **made,
        "generate_s": round(generate_s, 1),
        **median,
        "runs_s": [r["total_s"] for r in phases],
        "peak_rss_mib_max": max(r["peak_rss_mib"] for r in phases),
        "target_s": 10.0,
        "target_peak_mib": 1024,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--phase"]:
        print(json.dumps(phase(sys.argv[2], sys.argv[3])))
    else:
        print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 3)))
