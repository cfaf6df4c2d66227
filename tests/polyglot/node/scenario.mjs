// The polyglot scenario in JavaScript on Node.js (see ../README.md).
//
// A client of baa-logd made with @grpc/grpc-js, from stubs that
// @grpc/proto-loader builds in memory from proto/ when this starts. Usage:
//
//     node scenario.mjs HOST:PORT
//
// Exits with status 0 when every check passed; an assertion names the first
// one that failed.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));
const SCENARIO = fileURLToPath(new URL("../scenario.json", import.meta.url));
// Deadline of every call, the follow included: the scenario takes well under
// a second, so reaching it means something hangs.
const TIMEOUT_MS = 30_000;
// How many of the items already sent the reconnecting writer re-sends.
const RESENT = 3;

// camelCase field names (the contracts' names), enums as their names,
// uint64 as numbers (every seq here is small), unset fields filled with
// their defaults, and a `kind`/`entry`/`payload` key naming the member set
// in each oneof.
const definition = protoLoader.loadSync("baa/logging/v1/logging_service.proto", {
  includeDirs: [PROTO_DIR],
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { LoggingService } = grpc.loadPackageDefinition(definition).baa.logging.v1;

// === contract names <-> Protobuf enums ===

/** The prefix of an enum's values: LogLevel -> LOG_LEVEL. */
const enumPrefix = (enumName) => enumName.replace(/(?<!^)(?=[A-Z])/g, "_").toUpperCase();

/** A contract name as a Protobuf enum name: ("LogLevel", "info") -> LOG_LEVEL_INFO. */
const toEnum = (enumName, name) => `${enumPrefix(enumName)}_${name.toUpperCase()}`;

/** A Protobuf enum name as a contract name, the inverse of toEnum. */
const fromEnum = (enumName, value) => {
  const prefix = `${enumPrefix(enumName)}_`;
  assert.ok(value.startsWith(prefix), `${value} is not a ${enumName}`);
  return value.slice(prefix.length).toLowerCase();
};

// === JSON <-> google.protobuf.Struct ===

/** A JSON value as a google.protobuf.Value. */
function toValue(value) {
  if (value === null) return { nullValue: "NULL_VALUE" };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  switch (typeof value) {
    case "boolean":
      return { boolValue: value };
    case "number":
      return { numberValue: value };
    case "string":
      return { stringValue: value };
    case "object":
      return { structValue: toStruct(value) };
    default:
      throw new TypeError(`not a JSON value: ${value}`);
  }
}

/** A JSON object as a google.protobuf.Struct. */
const toStruct = (object) => ({
  fields: Object.fromEntries(Object.entries(object).map(([key, value]) => [key, toValue(value)])),
});

/** A google.protobuf.Value as JSON. */
function fromValue(value) {
  switch (value.kind) {
    case "nullValue":
      return null;
    case "boolValue":
    case "numberValue":
    case "stringValue":
      return value[value.kind];
    case "listValue":
      return value.listValue.values.map(fromValue);
    case "structValue":
      return fromStruct(value.structValue);
    default:
      throw new TypeError(`a Value with no kind: ${JSON.stringify(value)}`);
  }
}

/** A google.protobuf.Struct as a JSON object. */
const fromStruct = (struct) =>
  Object.fromEntries(Object.entries(struct.fields).map(([key, value]) => [key, fromValue(value)]));

// === scenario data -> requests ===

/** An item of scenario.json as an AppendItem. */
function toAppendItem(writerSeq, item) {
  if (item.event) {
    const { type, level, message, createdAt, data } = item.event;
    return {
      writerSeq,
      event: {
        type: toEnum("WorkerLifecycleEventType", type),
        level: toEnum("LogLevel", level),
        message,
        createdAt, // undefined leaves it unset
        data: data && toStruct(data),
      },
    };
  }
  return { writerSeq, ...item }; // { stdout: { text, createdAt } } or stderr
}

// === gRPC calls as promises ===

const deadline = () => Date.now() + TIMEOUT_MS;

/** Calls a unary method. */
const call = (client, method, request) =>
  new Promise((resolve, reject) =>
    client[method](request, { deadline: deadline() }, (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );

/** Opens an AppendLogs stream: write to `stream`, end it, then await `response`. */
function openAppend(client) {
  let stream;
  const response = new Promise((resolve, reject) => {
    stream = client.appendLogs({ deadline: deadline() }, (error, reply) =>
      error ? reject(error) : resolve(reply),
    );
  });
  return { stream, response };
}

/** Follows a run on its own connection, from seq 1 until the stream ends. */
class Follower {
  constructor(address, request) {
    // A channel of its own: without a local subchannel pool, grpc-js would
    // share the writer's connection.
    this.client = new LoggingService(address, grpc.credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
    });
    this.entries = [];
    this.states = [];
    // Callbacks of waitForSeq, called on each response; true when done.
    this.waiters = [];
    const stream = this.client.followRun(request, { deadline: deadline() });
    stream.on("data", (response) => {
      this.entries.push(...response.entries);
      if (response.state) this.states.push(response.state);
      this.waiters = this.waiters.filter((waiter) => !waiter());
    });
    this.ended = new Promise((resolve, reject) => {
      stream.on("end", resolve);
      stream.on("error", reject);
    });
  }

  /** Resolves to true once the follower received run seq `seq`, or false on timeout. */
  waitForSeq(seq) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), TIMEOUT_MS);
      const waiter = () => {
        if (this.entries.length < seq) return false;
        clearTimeout(timer);
        resolve(true);
        return true;
      };
      if (!waiter()) this.waiters.push(waiter);
    });
  }
}

// === checks ===

/** Checks that a followed entry is the scenario item sent as run seq `seq`. */
function checkEntry(seq, item, entry, metadata) {
  const body = entry[entry.entry];
  const where = `seq ${seq}`;
  assert.equal(body.seq, seq, where);
  assert.deepEqual(
    [body.taskId, body.stepId, body.runId],
    [metadata.taskId, metadata.stepId, metadata.runId],
    where,
  );
  const sent = Object.values(item)[0];
  if (sent.createdAt !== undefined) assert.equal(body.createdAt, sent.createdAt, where);
  else assert.match(body.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, where);
  if (item.event) {
    assert.equal(entry.entry, "lifecycle", where);
    assert.equal(fromEnum("WorkerLogChannel", body.channel), "worker", where);
    assert.equal(fromEnum("WorkerLifecycleEventType", body.type), sent.type, where);
    assert.equal(fromEnum("LogLevel", body.level), sent.level, where);
    assert.equal(body.message, sent.message, where);
    assert.deepEqual(fromStruct(body.data), sent.data ?? {}, `${where}: data`);
    assert.ok(body.eventId && body.renderedLine, where);
  } else {
    assert.equal(entry.entry, "chunk", where);
    assert.equal(fromEnum("StreamLogChannel", body.channel), Object.keys(item)[0], where);
    assert.equal(body.text, sent.text, `${where}: text`);
  }
}

// === the scenario ===

/** Runs the scenario against the server at `address`. */
async function main(address) {
  const scenario = JSON.parse(readFileSync(SCENARIO, "utf8"));
  const { metadata, writerId, finish } = scenario;
  const run = { taskId: metadata.taskId, runId: metadata.runId };
  const items = scenario.items.map((item, index) => toAppendItem(index + 1, item));
  const n = items.length;
  const client = new LoggingService(address, grpc.credentials.createInsecure());

  const info = await call(client, "getServerInfo", {});
  assert.equal(info.runLayoutVersion, "local-run-v1");

  const prepared = await call(client, "prepareRun", { metadata, state: scenario.state });
  assert.ok(prepared.created, "the run is new");
  assert.equal(fromEnum("RunStatus", prepared.state.status), "prepared");
  const [prepEntry] = prepared.session.worker.entries;
  assert.deepEqual(
    [prepEntry.seq, fromEnum("WorkerLifecycleEventType", prepEntry.type)],
    [1, "run_prepared"],
  );

  const follower = new Follower(address, { ...run, fromSeq: 1 });
  const setStatus = async (status, patch = {}) =>
    (
      await call(client, "updateRunState", {
        ...run,
        patch: { status: toEnum("RunStatus", status), ...patch },
      })
    ).state;
  await setStatus("running");

  // One stream for items 1..n-1, in two messages; the second goes only once
  // the follower has the first, so the follow is live, not history.
  const half = Math.floor((n - 1) / 2);
  const first = openAppend(client);
  first.stream.write({ open: { ...run, writerId }, items: items.slice(0, half) });
  const live = await follower.waitForSeq(1 + half);
  first.stream.write({ items: items.slice(half, n - 1) });
  first.stream.end();
  const firstResponse = await first.response;
  assert.ok(live, "the follower got the first half while the stream was open");
  assert.deepEqual([firstResponse.storedCount, firstResponse.duplicateCount], [n - 1, 0]);
  assert.equal(firstResponse.lastWriterSeq, n - 1);

  const cursor = await call(client, "getWriterCursor", { ...run, writerId });
  assert.deepEqual([cursor.lastWriterSeq, cursor.lastSeq], [n - 1, n]);

  // A writer that reconnects re-sends what it is unsure of, and the last item.
  const again = openAppend(client);
  again.stream.write({ open: { ...run, writerId }, items: items.slice(n - 1 - RESENT) });
  again.stream.end();
  const resent = await again.response;
  assert.deepEqual([resent.storedCount, resent.duplicateCount], [1, RESENT]);
  assert.deepEqual([resent.lastWriterSeq, resent.summary.lastSeq], [n, n + 1]);

  const final = await setStatus("completed", finish);
  assert.ok(final.finishedAt !== undefined && final.lastEventSeq === n + 1, JSON.stringify(final));

  await follower.ended; // rejects if the follow fails; the deadline bounds it
  const seqs = follower.entries.map((entry) => entry[entry.entry].seq);
  assert.deepEqual(
    seqs,
    Array.from({ length: n + 1 }, (_, index) => index + 1),
    "each seq once, in order",
  );
  scenario.items.forEach((item, index) =>
    checkEntry(index + 2, item, follower.entries[index + 1], metadata),
  );
  const last = follower.states.at(-1);
  assert.equal(fromEnum("RunStatus", last.status), "completed");
  assert.deepEqual([last.exitCode, last.summary], [finish.exitCode, finish.summary]);

  const got = (await call(client, "getRun", run)).run;
  const events = scenario.items.filter((item) => item.event).length;
  const stdout = scenario.items.filter((item) => item.stdout).length;
  assert.deepEqual(
    [got.summary.lifecycleEventCount, got.summary.stdoutChunkCount, got.summary.stderrChunkCount],
    [1 + events, stdout, n - events - stdout],
  );
  assert.deepEqual(got.state, final);

  client.close();
  follower.client.close();
  console.log(`node: the scenario passed (${n + 1} entries)`);
}

if (process.argv.length !== 3) {
  console.error("usage: node scenario.mjs HOST:PORT");
  process.exit(2);
}
await main(process.argv[2]);
