// A hefl operator client in C++ (Debian 12's libgrpc++ 1.51 and protobuf 3.21): calls
// OperatorService.GetFederationStatus and ListRounds, then follows WatchRoundEvents for
// --max-events events or --timeout seconds.
//
// Output: one JSON object per line on stdout, in the proto3 JSON mapping with the .proto
// field names, wrapped as {"type": "status" | "rounds" | "event" | "end", ...}: the same lines
// as the Node and Go clients, except that unset message fields (a running round's end_time)
// are left out instead of printed as null. An RPC error is printed as {"type": "error", ...}
// on stderr with exit code 1.
//
// Build: examples/clients/cpp/build.sh (generates the stubs with scripts/gen-stubs.sh).

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include "hefl/v1/operator_service.grpc.pb.h"
#include "hefl/v1/operator_service.pb.h"

namespace {

struct Options {
  std::string address = "127.0.0.1:50051";
  std::string federation_id = "default";
  std::uint64_t after_sequence = 0;
  std::uint64_t max_events = 10;
  double timeout_seconds = 30;
  std::uint32_t page_size = 10;
};

constexpr const char* kUsage =
    "usage: client [--address HOST:PORT] [--federation-id ID] [--after-sequence N]\n"
    "              [--max-events N] [--timeout SECONDS] [--page-size N]\n";

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::cerr << "missing value for " << flag << "\n" << kUsage;
      std::exit(2);
    }
    const std::string value = argv[++i];
    try {
      if (flag == "--address") {
        options.address = value;
      } else if (flag == "--federation-id") {
        options.federation_id = value;
      } else if (flag == "--after-sequence") {
        options.after_sequence = std::stoull(value);
      } else if (flag == "--max-events") {
        options.max_events = std::stoull(value);
      } else if (flag == "--timeout") {
        options.timeout_seconds = std::stod(value);
      } else if (flag == "--page-size") {
        options.page_size = static_cast<std::uint32_t>(std::stoul(value));
      } else {
        std::cerr << "unknown flag " << flag << "\n" << kUsage;
        std::exit(2);
      }
    } catch (const std::exception&) {
      std::cerr << "bad value for " << flag << ": " << value << "\n" << kUsage;
      std::exit(2);
    }
  }
  return options;
}

// The proto3 JSON mapping of a message, on one line, with the .proto field names.
std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  print.always_print_primitive_fields = true;
  print.always_print_enums_as_ints = false;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, print);
  if (!status.ok()) {
    std::cerr << "cannot render " << message.GetTypeName() << " as JSON\n";
    std::exit(1);
  }
  return json;
}

// A JSON string literal.
std::string Quote(const std::string& text) {
  google::protobuf::Value value;
  value.set_string_value(text);
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(value, &json);
  return json;
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN";
  }
}

[[noreturn]] void Fail(const std::string& stage, const grpc::Status& status) {
  std::cerr << R"({"type":"error","stage":)" << Quote(stage) << R"(,"code":")"
            << CodeName(status.error_code()) << R"(","message":)" << Quote(status.error_message())
            << "}" << std::endl;
  std::exit(1);
}

std::chrono::system_clock::time_point In(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             std::chrono::duration<double>(seconds));
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseOptions(argc, argv);
  auto channel = grpc::CreateChannel(options.address, grpc::InsecureChannelCredentials());
  auto stub = hefl::v1::OperatorService::NewStub(channel);

  {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    hefl::v1::GetFederationStatusRequest request;
    request.set_federation_id(options.federation_id);
    hefl::v1::GetFederationStatusResponse response;
    const grpc::Status status = stub->GetFederationStatus(&context, request, &response);
    if (!status.ok()) Fail("GetFederationStatus", status);
    std::cout << R"({"type":"status","status":)" << ToJson(response) << "}" << std::endl;
  }
  {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    hefl::v1::ListRoundsRequest request;
    request.set_federation_id(options.federation_id);
    request.set_page_size(options.page_size);
    hefl::v1::ListRoundsResponse response;
    const grpc::Status status = stub->ListRounds(&context, request, &response);
    if (!status.ok()) Fail("ListRounds", status);
    std::cout << R"({"type":"rounds","rounds":[)";
    for (int i = 0; i < response.rounds_size(); ++i) {
      std::cout << (i ? "," : "") << ToJson(response.rounds(i));
    }
    std::cout << "]}" << std::endl;
  }
  if (options.max_events == 0) {
    std::cout << R"({"type":"end","events":0,"reason":"max-events"})" << std::endl;
    return 0;
  }

  grpc::ClientContext context;
  context.set_deadline(In(options.timeout_seconds));
  hefl::v1::WatchRoundEventsRequest request;
  request.set_federation_id(options.federation_id);
  request.set_after_sequence(options.after_sequence);
  auto reader = stub->WatchRoundEvents(&context, request);
  hefl::v1::WatchRoundEventsResponse frame;
  std::uint64_t count = 0;
  while (count < options.max_events && reader->Read(&frame)) {
    ++count;
    std::cout << R"({"type":"event","event":)" << ToJson(frame.event()) << "}" << std::endl;
  }
  std::string reason;
  if (count >= options.max_events) {
    reason = "max-events";
    context.TryCancel();
    (void)reader->Finish();
  } else {
    const grpc::Status status = reader->Finish();
    if (status.ok()) {
      reason = "stream-ended";
    } else if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      reason = "timeout";
    } else {
      Fail("WatchRoundEvents", status);
    }
  }
  std::cout << R"({"type":"end","events":)" << count << R"(,"reason":")" << reason << R"("})"
            << std::endl;
  return 0;
}
