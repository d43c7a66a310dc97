#!/usr/bin/env node
// A hefl operator client in Node.js: loads protos/hefl/v1/*.proto at run time with
// @grpc/proto-loader (no generated code), calls OperatorService.GetFederationStatus and
// ListRounds, then follows WatchRoundEvents for --max-events events or --timeout seconds.
//
// Output: one JSON object per line on stdout, in the proto3 JSON mapping with the .proto
// field names (64-bit integers as strings, enums by name, Timestamps as RFC 3339 strings,
// Durations as "1.5s"), wrapped as {"type": "status" | "rounds" | "event" | "end", ...}.
// An RPC error is printed as {"type": "error", ...} on stderr with exit code 1.
"use strict";

const path = require("node:path");
const { parseArgs } = require("node:util");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const USAGE = `usage: node client.js [options]
  --address HOST:PORT     coordinator gRPC address (default 127.0.0.1:50051)
  --federation-id ID      federation to read (default "default")
  --after-sequence N      replay events with a sequence number above N first (default 0: none)
  --max-events N          stop after N events (default 10; 0 to only read status and rounds)
  --timeout SECONDS       stop watching after this long (default 30)
  --page-size N           rounds to list (default 10)
  --protos DIR            folder holding hefl/v1/*.proto (default: the repository's protos/)`;

function options() {
  const { values } = parseArgs({
    options: {
      address: { type: "string", default: "127.0.0.1:50051" },
      "federation-id": { type: "string", default: "default" },
      "after-sequence": { type: "string", default: "0" },
      "max-events": { type: "string", default: "10" },
      timeout: { type: "string", default: "30" },
      "page-size": { type: "string", default: "10" },
      protos: { type: "string", default: path.resolve(__dirname, "..", "..", "..", "protos") },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const number = (name) => {
    const parsed = Number(values[name]);
    if (!Number.isFinite(parsed) || parsed < 0) {
      console.error(`--${name} must be a non-negative number\n${USAGE}`);
      process.exit(2);
    }
    return parsed;
  };
  return {
    address: values.address,
    federationId: values["federation-id"],
    afterSequence: values["after-sequence"], // a uint64: kept as a decimal string
    maxEvents: number("max-events"),
    timeoutSeconds: number("timeout"),
    pageSize: number("page-size"),
    protos: values.protos,
  };
}

function loadOperatorService(protos) {
  const definition = protoLoader.loadSync("hefl/v1/operator_service.proto", {
    includeDirs: [protos],
    keepCase: true, // the .proto field names, as in the proto3 JSON mapping with names kept
    longs: String, // uint64 as decimal strings, as in the proto3 JSON mapping
    enums: String, // enum values by name
    defaults: true, // unset scalars as their zero values
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).hefl.v1.OperatorService;
}

// proto-loader gives google.protobuf.Timestamp and Duration as {seconds, nanos}; the proto3
// JSON mapping writes them as strings, with 0, 3, 6 or 9 fractional digits (as Go's protojson
// and C++'s JsonStringToMessage do).
function fraction(nanos) {
  if (nanos === 0) return "";
  const digits = String(nanos).padStart(9, "0");
  if (nanos % 1e6 === 0) return `.${digits.slice(0, 3)}`;
  if (nanos % 1e3 === 0) return `.${digits.slice(0, 6)}`;
  return `.${digits}`;
}

function timestamp(value) {
  if (value === null || value === undefined) return null;
  const iso = new Date(Number(value.seconds) * 1000).toISOString(); // ...T03:04:05.000Z
  return iso.replace(/\.\d{3}Z$/, `${fraction(value.nanos)}Z`);
}

function duration(value) {
  if (value === null || value === undefined) return null;
  return `${value.seconds}${fraction(value.nanos)}s`;
}

function roundJson(round) {
  return { ...round, open_time: timestamp(round.open_time), end_time: timestamp(round.end_time) };
}

function eventJson(event) {
  return { ...event, event_time: timestamp(event.event_time), elapsed: duration(event.elapsed) };
}

function emit(object) {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

function fail(stage, error) {
  process.stderr.write(
    `${JSON.stringify({
      type: "error",
      stage,
      code: grpc.status[error.code] ?? String(error.code),
      message: error.details ?? String(error),
    })}\n`,
  );
  process.exitCode = 1;
}

function unary(client, method, request) {
  const deadline = new Date(Date.now() + 10_000);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

// Follows the event stream until maxEvents arrived, timeoutSeconds passed or the server ended
// it; resolves with the number of events and the reason.
function watch(client, opts) {
  return new Promise((resolve, reject) => {
    let count = 0;
    let reason = null;
    const call = client.WatchRoundEvents({
      federation_id: opts.federationId,
      after_sequence: opts.afterSequence,
    });
    const finish = (why) => {
      if (reason !== null) return;
      reason = why;
      clearTimeout(timer);
      call.cancel();
      resolve({ count, reason });
    };
    const timer = setTimeout(() => finish("timeout"), opts.timeoutSeconds * 1000);
    call.on("data", (frame) => {
      if (reason !== null) return;
      count += 1;
      emit({ type: "event", event: eventJson(frame.event) });
      if (count >= opts.maxEvents) finish("max-events");
    });
    call.on("end", () => finish("stream-ended"));
    call.on("error", (error) => {
      if (reason !== null) return; // the CANCELLED that our own cancel() causes
      reason = "error";
      clearTimeout(timer);
      reject(error);
    });
  });
}

async function main() {
  const opts = options();
  const OperatorService = loadOperatorService(opts.protos);
  const client = new OperatorService(opts.address, grpc.credentials.createInsecure());
  const request = { federation_id: opts.federationId };
  let stage = "GetFederationStatus";
  try {
    const status = await unary(client, "GetFederationStatus", request);
    emit({ type: "status", status });
    stage = "ListRounds";
    const listed = await unary(client, "ListRounds", { ...request, page_size: opts.pageSize });
    emit({ type: "rounds", rounds: listed.rounds.map(roundJson) });
    stage = "WatchRoundEvents";
    if (opts.maxEvents > 0) {
      const { count, reason } = await watch(client, opts);
      emit({ type: "end", events: count, reason });
    } else {
      emit({ type: "end", events: 0, reason: "max-events" });
    }
  } catch (error) {
    fail(stage, error);
  } finally {
    client.close();
  }
}

main();
