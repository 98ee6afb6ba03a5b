"""An OTLP/gRPC logs receiver built from the official OpenTelemetry generated types
(`opentelemetry-proto`) and `grpcio`. Each export request is printed to stdout as one
JSON line in the OTLP/JSON mapping (protobuf's json_format), so a test reads exactly what
arrived on the wire.

Usage: otlp_grpc_receiver.py --port N [--fail-first K]
"""

import argparse
import sys
from concurrent import futures

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc


class Receiver(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, fail_first: int):
        self.fail_first = fail_first

    def Export(self, request, context):  # noqa: N802 (gRPC method name)
        if self.fail_first > 0:
            self.fail_first -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "receiver asked to fail")
        line = json_format.MessageToJson(request, indent=None)
        sys.stdout.write(line.replace("\n", " ") + "\n")
        sys.stdout.flush()
        return logs_service_pb2.ExportLogsServiceResponse()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail-first", type=int, default=0, help="answer the first K exports with UNAVAILABLE")
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Receiver(args.fail_first), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
