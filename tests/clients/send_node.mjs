// Send one identity story through each OFFICIAL Node client, unchanged.
//
//   WHISPERER_HOST=http://127.0.0.1:PORT WHISPERER_WRITE_KEY=KEY RUN_ID=abc \
//       node tests/clients/send_node.mjs
//
// The libraries are loaded from <repo>/.test-deps/node/node_modules (made by
// scripts/setup-test-deps; WHISPERER_TEST_DEPS overrides <repo>/.test-deps),
// so the script runs from any working directory without NODE_PATH.
//
// For each library (segment-node = @segment/analytics-node 3.1.0,
// rudder-node = @rudderstack/rudder-sdk-node 3.0.13) it sends, in order:
// track "Landing Viewed" (anonymousId only), identify (userId + anonymousId,
// traits email/plan), track "Order Completed", page "Pricing",
// screen "Onboarding", group "org_42", alias (previousId -> userId), then
// flushes. On success it prints one JSON line per library:
// {"library", "userId", "anonymousId", "sent"}. Any error the library reports,
// any non-2xx answer, or fewer delivered messages than sent makes it print the
// problem on stderr and exit 1.
//
// What the libraries do on the wire (read from their installed source):
// - segment-node (dist/cjs/plugins/segmentio/publisher.js, lib/create-url.js):
//   URL is new URL(path ?? '/v1/batch', host).href with the trailing slash
//   stripped, so an absolute path REPLACES any path in `host`; http:// works.
//   POST, Content-Type application/json, User-Agent analytics-node-next/latest,
//   Authorization: Basic base64("KEY:"), X-Retry-Count on retries. Never gzips.
//   Body {"batch": [...], "writeKey", "sentAt"}. 2xx AND 3xx count as delivered
//   (fetch follows redirects); 400 and other 4xx fail at once, 5xx/408/410/
//   429/460 are retried. Messages carry timestamp, messageId "node-next-...",
//   _metadata {nodeVersion, jsRuntime}, context.library @segment/analytics-node.
// - rudder-node (cjs/index.js): POST `${dataPlaneUrl}${path}` with trailing
//   slashes removed and path default '/v1/batch' (appended by the library;
//   pass only the host). axios with auth {username: KEY} -> Basic
//   base64("KEY:"); User-Agent analytics-node/<version>; gzip ON by default
//   (Content-Encoding: gzip, body is a gzipped JSON string). Body
//   {"batch": [...], "timestamp", "sentAt"}: NO writeKey. Messages have
//   originalTimestamp (no "timestamp"), per-message sentAt, channel "server",
//   context.library {name: "analytics-node"}, _metadata.nodeVersion, uuid
//   messageId; identify traits are copied to context.traits too. Any 2xx is
//   success (axios); 5xx/429/network errors are retried unless retryCount 0.
//   The first message ever enqueued is flushed at once, alone.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const MESSAGES_PER_LIBRARY = 7;
const DEADLINE_MS = 60_000;

const here = path.dirname(fileURLToPath(import.meta.url));
const deps = process.env.WHISPERER_TEST_DEPS || path.resolve(here, '..', '..', '.test-deps');
const require = createRequire(path.join(deps, 'node', 'package.json'));

let SegmentAnalytics;
let RudderAnalytics;
try {
  ({ Analytics: SegmentAnalytics } = require('@segment/analytics-node'));
  RudderAnalytics = require('@rudderstack/rudder-sdk-node');
} catch (e) {
  console.error(`send_node.mjs: ${e.message}\nrun scripts/setup-test-deps first`);
  process.exit(1);
}

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`send_node.mjs: environment variable ${name} is required`);
    process.exit(1);
  }
  return value;
}

const host = env('WHISPERER_HOST');
const writeKey = env('WHISPERER_WRITE_KEY');
const runId = env('RUN_ID');

const describe = (e) => (e instanceof Error ? `${e.name}: ${e.message}` : JSON.stringify(e));

// The same story for both libraries (their call shapes are the same).
// `send(method, params)` returns a promise settled by the library's per-call
// callback, i.e. once the batch holding the message was delivered or failed.
function story(lib, send) {
  const userId = `${lib}-${runId}-user`;
  const anonymousId = `${lib}-${runId}-anon`;
  const calls = [
    send('track', {
      anonymousId,
      event: 'Landing Viewed',
      properties: { url: `https://example.com/?lib=${lib}` },
    }),
    send('identify', {
      userId,
      anonymousId,
      traits: { email: `${lib}-${runId}@example.com`, plan: 'pro' },
    }),
    send('track', {
      userId,
      event: 'Order Completed',
      properties: { revenue: 12.5, currency: 'EUR' },
    }),
    send('page', { userId, name: 'Pricing', properties: { url: 'https://example.com/pricing' } }),
    send('screen', { userId, name: 'Onboarding' }),
    send('group', { userId, groupId: 'org_42', traits: { name: 'Acme' } }),
    send('alias', { previousId: `${lib}-${runId}-old`, userId }),
  ];
  return { userId, anonymousId, calls };
}

async function runSegment(problems) {
  const lib = 'segment-node';
  let delivered = 0;
  const analytics = new SegmentAnalytics({
    writeKey,
    host,
    flushAt: 4,
    flushInterval: 200,
    maxRetries: 0,
    httpRequestTimeout: 10_000,
  });
  analytics.on('error', (err) => problems.push(`${lib}: ${err.code}: ${describe(err.reason)}`));
  // The library treats 3xx as delivered; we require 2xx.
  analytics.on('http_response', (res) => {
    if (res.status < 200 || res.status >= 300) {
      problems.push(`${lib}: HTTP ${res.status} ${res.statusText} from ${res.url}`);
    } else {
      delivered += JSON.parse(res.body).batch.length;
    }
  });
  const send = (method, params) =>
    new Promise((resolve) => {
      analytics[method](params, (err) => {
        if (err) problems.push(`${lib}: ${method}: ${describe(err)}`);
        resolve();
      });
    });
  const { userId, anonymousId, calls } = story(lib, send);
  await analytics.closeAndFlush({ timeout: 30_000 });
  await Promise.all(calls);
  return { library: lib, userId, anonymousId, sent: delivered };
}

async function runRudder(problems) {
  const lib = 'rudder-node';
  let delivered = 0;
  const client = new RudderAnalytics(writeKey, {
    dataPlaneUrl: host, // the library appends /v1/batch itself
    flushAt: 4,
    flushInterval: 200,
    retryCount: 0,
    timeout: 10_000,
    logLevel: 'error',
    // gzip stays at the library's default, which is on.
    errorHandler: (err) => problems.push(`${lib}: errorHandler: ${describe(err)}`),
  });
  const send = (method, params) =>
    new Promise((resolve) => {
      client[method](params, (err) => {
        // axios rejects every non-2xx answer, so err covers HTTP errors too.
        if (err) problems.push(`${lib}: ${method}: ${describe(err)}${err.response ? ` (HTTP ${err.response.status})` : ''}`);
        else delivered += 1;
        resolve();
      });
    });
  const { userId, anonymousId, calls } = story(lib, send);
  let settled = false;
  const all = Promise.all(calls).then(() => {
    settled = true;
  });
  // flush() sends at most flushAt messages per call: repeat until every
  // message's callback has run.
  for (let i = 0; i < 50 && !settled; i += 1) {
    try {
      await client.flush();
    } catch (e) {
      problems.push(`${lib}: flush: ${describe(e)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  await all;
  return { library: lib, userId, anonymousId, sent: delivered };
}

const watchdog = setTimeout(() => {
  console.error(`send_node.mjs: not done after ${DEADLINE_MS / 1000}s, giving up`);
  process.exit(1);
}, DEADLINE_MS);
watchdog.unref();

const problems = [];
process.on('unhandledRejection', (e) => problems.push(`unhandled rejection: ${describe(e)}`));

let ok = true;
for (const run of [runSegment, runRudder]) {
  const before = problems.length;
  let result;
  try {
    result = await run(problems);
  } catch (e) {
    problems.push(`${run.name}: ${describe(e)}`);
  }
  if (result && result.sent !== MESSAGES_PER_LIBRARY) {
    problems.push(`${result.library}: ${result.sent}/${MESSAGES_PER_LIBRARY} messages accepted by the server`);
  }
  if (problems.length === before && result) {
    console.log(JSON.stringify(result));
  } else {
    ok = false;
  }
}
for (const p of problems) console.error(`send_node.mjs: ${p}`);
process.exit(ok && problems.length === 0 ? 0 : 1);
