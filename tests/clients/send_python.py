#!/usr/bin/env python3
"""Send one identity story through each OFFICIAL Python client, unchanged.

Run with the venv made by scripts/setup-test-deps:

    WHISPERER_HOST=http://127.0.0.1:PORT WHISPERER_WRITE_KEY=KEY RUN_ID=abc \
        .test-deps/venv/bin/python tests/clients/send_python.py

For each library (segment-py = segment-analytics-python 2.4.0,
rudder-py = rudder-sdk-python 2.1.9) it sends, in order:
track "Landing Viewed" (anonymousId only), identify (userId + anonymousId,
traits email/plan), track "Order Completed", page "Pricing",
screen "Onboarding", group "org_42", alias (previousId -> userId).
Then it flushes and shuts the client down. On success it prints one JSON line
per library: {"library", "userId", "anonymousId", "sent"}. Any error the
library reports (on_error), any non-2xx answer, or fewer delivered messages
than sent makes it print the problem on stderr and exit 1.

What the libraries do on the wire (read from their installed source):
- segment-py (segment/analytics/request.py): POST <host>/v1/batch, host's
  trailing slash stripped, "/v1/batch" always appended (any path in host is
  kept in front of it); http:// works. Headers: Content-Type application/json,
  User-Agent analytics-python/2.4.0, Authorization: Basic base64("KEY:"),
  X-Retry-Count on retries, Content-Encoding: gzip when gzip=True (used here).
  Body {"batch": [...], "sentAt", "writeKey"}. Any 2xx is success; 3xx/4xx/5xx
  raise APIError (reads {"code", "message"} from a JSON error body);
  429/5xx are retried (429 + Retry-After re-queues the batch).
- rudder-py (rudderstack/analytics/request.py, a fork of the segment client):
  POST <dataPlaneUrl>/v1/batch, same URL building; gzip ON by default;
  Basic auth "KEY:" via requests' HTTPBasicAuth; same User-Agent prefix
  (analytics-python/2.1.9). Body {"batch": [...], "sentAt"}: NO writeKey.
  ONLY status 200 counts as success (201/202/204 raise APIError). On non-200
  it does res.json()["code"]: a JSON error body without "code"/"message"
  surfaces as a KeyError, not APIError (still reported through on_error).
  Messages: identify traits go to context.traits ONLY (no top-level
  "traits"); "channel": "server"; integrations default {"All": true};
  context.library.name is "analytics-python" (same as segment's).
  It calls python-dotenv's load_dotenv() on import.
"""
import gzip
import json
import os
import sys
import threading

try:
    import rudderstack.analytics as rudder_analytics
    import rudderstack.analytics.request as rudder_request
    import segment.analytics as segment_analytics
    import segment.analytics.request as segment_request
except ImportError as e:
    sys.exit(
        f"send_python.py: {e}\n"
        "run scripts/setup-test-deps, then this script with .test-deps/venv/bin/python"
    )

MESSAGES_PER_LIBRARY = 7
DEADLINE_SECONDS = 60


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"send_python.py: environment variable {name} is required")
    return value


def make_client(lib, host, write_key, on_error):
    # Small batches (upload_size=4 -> 7 messages make at least 2 requests),
    # no retries so a failing server shows up at once, not after backoff.
    common = dict(
        host=host,
        on_error=on_error,
        max_retries=0,
        timeout=10,
        upload_size=4,
        upload_interval=0.2,
    )
    if lib == "segment-py":
        # Module-level equivalent: analytics.write_key / analytics.host.
        return segment_analytics.Client(write_key, gzip=True, **common)
    # Module-level equivalent: rudder_analytics.write_key /
    # rudder_analytics.dataPlaneUrl (mapped to Client(host=...)).
    # gzip stays at the library's default, which is on.
    return rudder_analytics.Client(write_key, **common)


def run(lib, request_module, host, write_key, run_id):
    user_id = f"{lib}-{run_id}-user"
    anonymous_id = f"{lib}-{run_id}-anon"
    problems = []
    delivered = [0]

    def on_error(exc, batch):
        problems.append(f"library error: {type(exc).__name__}: {exc} ({len(batch)} messages)")

    # Observe (not alter) the library's own HTTP session: check every status
    # and count the messages in each accepted request body.
    def on_response(resp, *args, **kwargs):
        if not 200 <= resp.status_code < 300:
            problems.append(f"HTTP {resp.status_code} from {resp.url}: {resp.text[:300]}")
            return
        body = resp.request.body
        if resp.request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        delivered[0] += len(json.loads(body)["batch"])

    hooks = request_module._session.hooks["response"]
    hooks.append(on_response)
    try:
        client = make_client(lib, host, write_key, on_error)
        results = [
            client.track(
                anonymous_id=anonymous_id,
                event="Landing Viewed",
                properties={"url": f"https://example.com/?lib={lib}"},
            ),
            client.identify(
                user_id=user_id,
                anonymous_id=anonymous_id,
                traits={"email": f"{lib}-{run_id}@example.com", "plan": "pro"},
            ),
            client.track(
                user_id=user_id,
                event="Order Completed",
                properties={"revenue": 12.5, "currency": "EUR"},
            ),
            client.page(
                user_id=user_id,
                name="Pricing",
                properties={"url": "https://example.com/pricing"},
            ),
            client.screen(user_id=user_id, name="Onboarding"),
            client.group(user_id=user_id, group_id="org_42", traits={"name": "Acme"}),
            client.alias(previous_id=f"{lib}-{run_id}-old", user_id=user_id),
        ]
        queued = sum(1 for ok, _msg in results if ok)
        if queued != MESSAGES_PER_LIBRARY:
            problems.append(f"only {queued}/{MESSAGES_PER_LIBRARY} messages were queued")
        client.flush()  # blocks until the consumer has handled every message
        client.join()
    finally:
        hooks.remove(on_response)

    if delivered[0] != MESSAGES_PER_LIBRARY:
        problems.append(f"{delivered[0]}/{MESSAGES_PER_LIBRARY} messages accepted by the server")
    if problems:
        for p in problems:
            print(f"send_python.py: {lib}: {p}", file=sys.stderr)
        return False
    print(json.dumps({"library": lib, "userId": user_id, "anonymousId": anonymous_id,
                      "sent": delivered[0]}), flush=True)
    return True


def main():
    host = env("WHISPERER_HOST")
    write_key = env("WHISPERER_WRITE_KEY")
    run_id = env("RUN_ID")

    def give_up():
        print(f"send_python.py: not done after {DEADLINE_SECONDS}s, giving up", file=sys.stderr)
        os._exit(1)

    watchdog = threading.Timer(DEADLINE_SECONDS, give_up)
    watchdog.daemon = True
    watchdog.start()

    ok = True
    for lib, request_module in (("segment-py", segment_request), ("rudder-py", rudder_request)):
        try:
            ok = run(lib, request_module, host, write_key, run_id) and ok
        except Exception as e:  # a library raising synchronously
            print(f"send_python.py: {lib}: {type(e).__name__}: {e}", file=sys.stderr)
            ok = False
    watchdog.cancel()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
