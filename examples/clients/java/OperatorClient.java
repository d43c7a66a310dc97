// A hefl operator client in Java, on Debian 12's grpc-java 1.41 and protobuf-java 3.21 (no
// Maven, no network): calls OperatorService.GetFederationStatus and ListRounds, then follows
// WatchRoundEvents for --max-events events or --timeout seconds.
//
// Output: one JSON object per line on stdout, in the proto3 JSON mapping with the .proto field
// names, wrapped as {"type": "status" | "rounds" | "event" | "end", ...}: the same lines as the
// Node, Go and C++ clients (like C++, an unset message field is left out rather than null). An
// RPC error is printed as {"type": "error", ...} on stderr with exit code 1.
//
// Build: examples/clients/java/build.sh (generates the stubs with scripts/gen-stubs.sh).
package hefl.clients;

import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.MessageOrBuilder;
import com.google.protobuf.util.JsonFormat;
import hefl.v1.OperatorServiceGrpc;
import hefl.v1.OperatorServiceOuterClass.GetFederationStatusRequest;
import hefl.v1.OperatorServiceOuterClass.GetFederationStatusResponse;
import hefl.v1.OperatorServiceOuterClass.ListRoundsRequest;
import hefl.v1.OperatorServiceOuterClass.ListRoundsResponse;
import hefl.v1.OperatorServiceOuterClass.WatchRoundEventsRequest;
import hefl.v1.OperatorServiceOuterClass.WatchRoundEventsResponse;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;

public final class OperatorClient {
  private static final String USAGE =
      "usage: hefl-operator-client-java [--address HOST:PORT] [--federation-id ID]\n"
          + "       [--after-sequence N] [--max-events N] [--timeout SECONDS] [--page-size N]";
  private static final long CALL_TIMEOUT_MS = 10_000;
  private static final JsonFormat.Printer PRINTER =
      JsonFormat.printer()
          .preservingProtoFieldNames()
          .includingDefaultValueFields()
          .omittingInsignificantWhitespace();

  private String address = "127.0.0.1:50051";
  private String federationId = "default";
  private long afterSequence = 0;
  private long maxEvents = 10;
  private double timeoutSeconds = 30;
  private int pageSize = 10;

  private OperatorClient() {}

  public static void main(String[] args) throws Exception {
    OperatorClient client = new OperatorClient();
    client.parse(args);
    client.run();
  }

  private void parse(String[] args) {
    for (int i = 0; i < args.length; i++) {
      String flag = args[i];
      if (flag.equals("--help") || flag.equals("-h")) {
        System.out.println(USAGE);
        System.exit(0);
      }
      if (i + 1 >= args.length) {
        usageError("missing value for " + flag);
      }
      String value = args[++i];
      try {
        switch (flag) {
          case "--address": address = value; break;
          case "--federation-id": federationId = value; break;
          case "--after-sequence": afterSequence = Long.parseUnsignedLong(value); break;
          case "--max-events": maxEvents = Long.parseUnsignedLong(value); break;
          case "--timeout": timeoutSeconds = Double.parseDouble(value); break;
          case "--page-size": pageSize = Integer.parseUnsignedInt(value); break;
          default: usageError("unknown flag " + flag);
        }
      } catch (NumberFormatException error) {
        usageError("bad value for " + flag + ": " + value);
      }
    }
  }

  private static void usageError(String message) {
    System.err.println(message + "\n" + USAGE);
    System.exit(2);
  }

  private static String json(MessageOrBuilder message) {
    try {
      return PRINTER.print(message);
    } catch (InvalidProtocolBufferException error) {
      throw new IllegalStateException(error);
    }
  }

  private static void emit(String line) {
    System.out.println(line);
    System.out.flush();
  }

  private static void fail(String stage, StatusRuntimeException error) {
    Status status = error.getStatus();
    JsonObject line = new JsonObject();
    line.add("type", new JsonPrimitive("error"));
    line.add("stage", new JsonPrimitive(stage));
    line.add("code", new JsonPrimitive(status.getCode().name()));
    line.add(
        "message",
        new JsonPrimitive(status.getDescription() == null ? "" : status.getDescription()));
    System.err.println(line);
    System.exit(1);
  }

  private void run() throws InterruptedException {
    ManagedChannel channel = ManagedChannelBuilder.forTarget(address).usePlaintext().build();
    try {
      OperatorServiceGrpc.OperatorServiceBlockingStub stub =
          OperatorServiceGrpc.newBlockingStub(channel);
      String stage = "GetFederationStatus";
      try {
        GetFederationStatusResponse status =
            stub.withDeadlineAfter(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS)
                .getFederationStatus(
                    GetFederationStatusRequest.newBuilder().setFederationId(federationId).build());
        emit("{\"type\":\"status\",\"status\":" + json(status) + "}");
        stage = "ListRounds";
        ListRoundsResponse rounds =
            stub.withDeadlineAfter(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS)
                .listRounds(
                    ListRoundsRequest.newBuilder()
                        .setFederationId(federationId)
                        .setPageSize(pageSize)
                        .build());
        List<String> listed = new ArrayList<>();
        rounds.getRoundsList().forEach(round -> listed.add(json(round)));
        emit("{\"type\":\"rounds\",\"rounds\":[" + String.join(",", listed) + "]}");
        stage = "WatchRoundEvents";
        if (maxEvents == 0) {
          emit("{\"type\":\"end\",\"events\":0,\"reason\":\"max-events\"}");
          return;
        }
        watch(stub);
      } catch (StatusRuntimeException error) {
        fail(stage, error);
      }
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private void watch(OperatorServiceGrpc.OperatorServiceBlockingStub stub) {
    long count = 0;
    String reason;
    Context.CancellableContext context = Context.current().withCancellation();
    Context previous = context.attach();
    try {
      Iterator<WatchRoundEventsResponse> frames =
          stub.withDeadlineAfter((long) (timeoutSeconds * 1000), TimeUnit.MILLISECONDS)
              .watchRoundEvents(
                  WatchRoundEventsRequest.newBuilder()
                      .setFederationId(federationId)
                      .setAfterSequence(afterSequence)
                      .build());
      try {
        while (count < maxEvents && frames.hasNext()) {
          count++;
          emit("{\"type\":\"event\",\"event\":" + json(frames.next().getEvent()) + "}");
        }
        reason = count >= maxEvents ? "max-events" : "stream-ended";
      } catch (StatusRuntimeException error) {
        if (error.getStatus().getCode() != Status.Code.DEADLINE_EXCEEDED) {
          throw error;
        }
        reason = "timeout";
      }
    } finally {
      context.detach(previous);
      context.cancel(null); // ends the stream when we stopped reading early
    }
    emit("{\"type\":\"end\",\"events\":" + count + ",\"reason\":\"" + reason + "\"}");
  }
}
