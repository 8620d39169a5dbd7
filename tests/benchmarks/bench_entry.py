"""Super entry benchmark: what signing, replay protection, rate limiting, scopes and idempotency cost.

    .venv/bin/python tests/benchmarks/bench_entry.py                        # SQLite, default sizes
    .venv/bin/python tests/benchmarks/bench_entry.py --database postgres --requests 3000
    .venv/bin/python tests/benchmarks/bench_entry.py --replay-store memory

One uvicorn server (a separate process, so the client does not share its interpreter) serves both
endpoints of the same application, measured in the same run, interleaved:

* **bare**: ``POST /bench/bare``, a plain FastAPI endpoint added to the app (it still passes the
  request-id, access-log and metrics middleware every route has);
* **partner**: ``POST /v1/bench/noop``, a module route reached through the entry: HMAC signature
  (signed by the SDK's ``SceneOSAuth``), nonce recorded, rate limit, idempotency key reserved and
  the answer stored, scope check. It does nothing else.

Latency: ``--requests`` sequential requests of each, alternating; p50 and p99. Throughput:
``--concurrency`` async clients for ``--seconds`` each. Target: partner p50 - bare p50 < 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
KEY_ID, SECRET = "pk_bench", "bench-secret-0123456789abcdef-0123456789"
BODY = {"reference": "bench", "amount": "1.00"}


def serve(port: int, database_url: str, replay_store: str) -> None:
    """Runs in the server process."""
    import uvicorn
    from fastapi import APIRouter

    from core.app import SceneOS
    from core.hookspecs import hookimpl
    from core.logging import configure_logging
    from core.modules import ModuleSpec
    from core.settings import settings_from_mapping
    from core.testing.harness import make_catalog, partner_config, tenant_config

    class Bench:
        @hookimpl
        def sceneos_register_modules(self) -> list[ModuleSpec]:
            def router() -> APIRouter:
                api = APIRouter()

                @api.post("/noop")
                async def noop(body: dict) -> dict:
                    return {"ok": True}

                return api

            return [ModuleSpec(name="bench", layer="product", description="benchmark no-op", router=router)]

    configure_logging("json", "WARNING")
    config = {
        "database": {"url": database_url},
        "entry": {"replay_store": replay_store, "webhook_poll_seconds": 0,
                  "master_key": "bench-master-key-0123456789abcdef"},
        "tenants": {"bank": tenant_config("Bench Bank", modules={"bench": {}, "entry": {}}, partners={
            "bench": partner_config("Bench", key_id=KEY_ID, secret=SECRET, scopes=["bench"],
                                    rate_limit="1000000/second"),
        })},
    }
    app = SceneOS.build(settings_from_mapping(config), catalog=make_catalog({"bench": Bench()}), migrate=True)
    app.start()
    http = app.http()

    @http.post("/bench/bare")
    async def bare(body: dict) -> dict:
        return {"ok": True}

    uvicorn.run(http, host="127.0.0.1", port=port, log_config=None, access_log=False)


@contextlib.contextmanager
def server(database_url: str, replay_store: str) -> Iterator[str]:
    from core.testing.live import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--database-url", database_url,
         "--replay-store", replay_store],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("benchmark server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latencies(url: str, requests: int) -> dict[str, list[float]]:
    from core.sdk import SceneOSAuth

    content = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json"}
    results: dict[str, list[float]] = {"bare": [], "partner": []}
    with httpx.Client(base_url=url) as bare, httpx.Client(base_url=url, auth=SceneOSAuth(KEY_ID, SECRET)) as partner:
        for i in range(requests + 200):  # the first 200 of each warm up
            for name, client, path in (("bare", bare, "/bench/bare"), ("partner", partner, "/v1/bench/noop")):
                extra = {"Idempotency-Key": uuid.uuid4().hex} if name == "partner" else {}
                started = time.perf_counter()
                response = client.post(path, content=content, headers={**headers, **extra})
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text}")
                if i >= 200:
                    results[name].append(elapsed * 1000)
    return results


async def throughput(url: str, path: str, signed: bool, concurrency: int, seconds: float) -> float:
    from core.sdk import SceneOSAuth

    content = json.dumps(BODY).encode()
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        auth = SceneOSAuth(KEY_ID, SECRET) if signed else None
        async with httpx.AsyncClient(base_url=url, auth=auth) as client:
            while time.perf_counter() < stop:
                headers = {"Content-Type": "application/json"}
                if signed:
                    headers["Idempotency-Key"] = uuid.uuid4().hex
                response = await client.post(path, content=content, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text}")
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--replay-store", choices=["database", "memory"], default="database")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.database_url, args.replay_store)
        return

    from core.logging import configure_logging

    configure_logging("console", "WARNING")  # the client's own request logs would be measured too
    with contextlib.ExitStack() as stack:
        if args.database == "postgres":
            from core.testing.postgres import temporary_database

            database_url = stack.enter_context(temporary_database())
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            database_url = f"sqlite:///{folder}/bench.db"
        url = stack.enter_context(server(database_url, args.replay_store))
        measured = latencies(url, args.requests)
        bare_rps = asyncio.run(throughput(url, "/bench/bare", False, args.concurrency, args.seconds))
        partner_rps = asyncio.run(throughput(url, "/v1/bench/noop", True, args.concurrency, args.seconds))

    print(f"super entry benchmark: {args.database}, replay store {args.replay_store}, "
          f"{args.requests} sequential requests each, {args.concurrency} clients x {args.seconds:g} s")
    print(f"{'endpoint':<10} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'req/s':>8}")
    for name, rps in (("bare", bare_rps), ("partner", partner_rps)):
        values = measured[name]
        print(f"{name:<10} {percentile(values, 0.5):8.3f} {percentile(values, 0.99):8.3f} "
              f"{statistics.fmean(values):8.3f} {rps:8.0f}")
    overhead = percentile(measured["partner"], 0.5) - percentile(measured["bare"], 0.5)
    verdict = "meets" if overhead < 2.0 else "misses"
    print(f"overhead at p50: {overhead:.3f} ms ({verdict} the 2 ms target); "
          f"p99: {percentile(measured['partner'], 0.99) - percentile(measured['bare'], 0.99):.3f} ms")


if __name__ == "__main__":
    main()
