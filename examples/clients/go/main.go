// Command hefl-operator-client reads a hefl coordinator's OperatorService from Go: it calls
// GetFederationStatus and ListRounds, then follows WatchRoundEvents for -max-events events or
// -timeout seconds.
//
// Output: one JSON object per line on stdout, in the proto3 JSON mapping with the .proto field
// names (64-bit integers as strings, enums by name, Timestamps as RFC 3339 strings, Durations
// as "1.5s"), wrapped as {"type": "status" | "rounds" | "event" | "end", ...}: the same lines
// as examples/clients/node/client.js. An RPC error is printed as {"type": "error", ...} on
// stderr with exit code 1.
//
// It is built in GOPATH mode against Debian's grpc-go 1.33 and the stubs that
// scripts/gen-stubs.sh generates; examples/clients/go/build.sh does both.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	heflv1 "hefl.example/stubs/hefl/v1"
)

const callTimeout = 10 * time.Second

var marshal = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// messageJSON renders a message in the proto3 JSON mapping, compacted to one line.
func messageJSON(message proto.Message) json.RawMessage {
	encoded, err := marshal.Marshal(message)
	if err != nil {
		panic(err) // only for messages protojson cannot represent, which hefl.v1 has none of
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, encoded); err != nil {
		panic(err)
	}
	return compact.Bytes()
}

// The output lines, with "type" first.
type statusLine struct {
	Type   string          `json:"type"`
	Status json.RawMessage `json:"status"`
}

type roundsLine struct {
	Type   string            `json:"type"`
	Rounds []json.RawMessage `json:"rounds"`
}

type eventLine struct {
	Type  string          `json:"type"`
	Event json.RawMessage `json:"event"`
}

type endLine struct {
	Type   string `json:"type"`
	Events uint   `json:"events"`
	Reason string `json:"reason"`
}

type errorLine struct {
	Type    string `json:"type"`
	Stage   string `json:"stage"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// emit writes one JSON line to stdout.
func emit(line interface{}) {
	encoded, err := json.Marshal(line)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(encoded, '\n'))
}

// fail reports an RPC error on stderr and exits with code 1.
func fail(stage string, err error) {
	code, message := "UNKNOWN", err.Error()
	if rpcStatus, ok := status.FromError(err); ok {
		code, message = codeName(rpcStatus.Code().String()), rpcStatus.Message()
	}
	encoded, _ := json.Marshal(errorLine{"error", stage, code, message})
	os.Stderr.Write(append(encoded, '\n'))
	os.Exit(1)
}

// codeName turns grpc-go's "NotFound" into the canonical "NOT_FOUND".
func codeName(camel string) string {
	var name []byte
	for i, r := range camel {
		if i > 0 && r >= 'A' && r <= 'Z' {
			name = append(name, '_')
		}
		name = append(name, byte(r))
	}
	return string(bytes.ToUpper(name))
}

func main() {
	address := flag.String("address", "127.0.0.1:50051", "coordinator gRPC address")
	federationID := flag.String("federation-id", "default", "federation to read")
	afterSequence := flag.Uint64("after-sequence", 0,
		"replay events with a sequence number above this first (0: none)")
	maxEvents := flag.Uint("max-events", 10, "stop after this many events (0: only status and rounds)")
	timeoutSeconds := flag.Float64("timeout", 30, "stop watching after this many seconds")
	pageSize := flag.Uint("page-size", 10, "rounds to list")
	flag.Parse()

	// grpc-go 1.33 (Debian 12): DialContext and WithInsecure; NewClient does not exist yet.
	// Without WithBlock the dial returns at once and the first call reports UNAVAILABLE.
	conn, err := grpc.DialContext(context.Background(), *address, grpc.WithInsecure())
	if err != nil {
		fail("connect", err)
	}
	defer conn.Close()
	client := heflv1.NewOperatorServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	statusResponse, err := client.GetFederationStatus(ctx,
		&heflv1.GetFederationStatusRequest{FederationId: *federationID})
	cancel()
	if err != nil {
		fail("GetFederationStatus", err)
	}
	emit(statusLine{"status", messageJSON(statusResponse)})

	ctx, cancel = context.WithTimeout(context.Background(), callTimeout)
	rounds, err := client.ListRounds(ctx, &heflv1.ListRoundsRequest{
		FederationId: *federationID, PageSize: uint32(*pageSize),
	})
	cancel()
	if err != nil {
		fail("ListRounds", err)
	}
	listed := make([]json.RawMessage, 0, len(rounds.Rounds))
	for _, round := range rounds.Rounds {
		listed = append(listed, messageJSON(round))
	}
	emit(roundsLine{"rounds", listed})

	if *maxEvents == 0 {
		emit(endLine{"end", 0, "max-events"})
		return
	}
	count, reason := watch(client, *federationID, *afterSequence, *maxEvents,
		time.Duration(*timeoutSeconds*float64(time.Second)))
	emit(endLine{"end", count, reason})
}

// watch follows WatchRoundEvents until maxEvents arrived, the timeout passed or the server
// ended the stream, printing every event; it returns the count and the reason it stopped.
func watch(client heflv1.OperatorServiceClient, federationID string, afterSequence uint64,
	maxEvents uint, timeout time.Duration) (uint, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stream, err := client.WatchRoundEvents(ctx, &heflv1.WatchRoundEventsRequest{
		FederationId: federationID, AfterSequence: afterSequence,
	})
	if err != nil {
		fail("WatchRoundEvents", err)
	}
	var count uint
	for count < maxEvents {
		frame, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return count, "stream-ended"
		}
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return count, "timeout"
			}
			fail("WatchRoundEvents", err)
		}
		count++
		emit(eventLine{"event", messageJSON(frame.GetEvent())})
	}
	return count, "max-events"
}

func init() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags]\n", os.Args[0])
		flag.PrintDefaults()
	}
}
