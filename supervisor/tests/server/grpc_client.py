"""The public gRPC API from Python's grpcio, as users of other languages reach it: stubs
generated from ollama.proto by grpcio-tools at test time, no channel options. List,
Generate (streamed) and Embed; server reflection (v1alpha, as grpcio-reflection and
grpcurl ask) lists the services; the health check answers SERVING.

Usage: grpc_client.py BASE_URL PROTO_DIR HOST:PORT; prints OK.
"""

import importlib
import math
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_tools import protoc


def stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="ollama-stubs-")
    code = protoc.main(
        [
            "protoc",
            f"-I{proto_dir}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "ollama.proto",
        ]
    )
    assert code == 0, f"protoc failed with {code}"
    sys.path.insert(0, out)
    return importlib.import_module("ollama_pb2"), importlib.import_module("ollama_pb2_grpc")


def main():
    _, proto_dir, address = sys.argv[1:4]
    pb, rpc = stubs(proto_dir)
    channel = grpc.insecure_channel(address)
    ollama = rpc.OllamaStub(channel)

    names = [m.name for m in ollama.List(pb.ListRequest()).models]
    assert names == ["smol:latest"], names

    pieces = list(
        ollama.Generate(
            pb.GenerateRequest(
                model="smol",
                prompt="The capital of France is",
                options=pb.Options(temperature=0, num_predict=8),
            )
        )
    )
    assert len(pieces) > 2, pieces
    assert pieces[-1].done and pieces[-1].stats.eval_count == 8, pieces[-1]
    text = "".join(p.response for p in pieces)
    assert text.strip(), pieces

    embedded = ollama.Embed(pb.EmbedRequest(model="smol", input=["one", "two", "three"]))
    assert len(embedded.embeddings) == 3
    norm = math.sqrt(sum(v * v for v in embedded.embeddings[0].values))
    assert abs(norm - 1.0) < 1e-3, norm

    try:
        ollama.Show(pb.ShowRequest(model="missing"))
        raise AssertionError("Show of a missing model succeeded")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND, error

    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"ollama.v1.Ollama", "grpc.health.v1.Health"} <= services, services

    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING, health
    served = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="ollama.v1.Ollama")
    )
    assert served.status == health_pb2.HealthCheckResponse.SERVING, served
    print("OK")


if __name__ == "__main__":
    main()
