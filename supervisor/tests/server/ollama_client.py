"""Drives ollamad with Ollama's official Python client (the `ollama` package).

Usage: ollama_client.py BASE_URL GGUF_PATH. Prints OK when every call worked as the
client expects; any failure raises with the client's message.
"""
import sys

import ollama

base, gguf = sys.argv[1], sys.argv[2]
client = ollama.Client(host=base)

digest = client.create_blob(gguf)
assert digest.startswith("sha256:"), digest

progress = list(client.create(model="smollm2", files={"model.gguf": digest},
                              parameters={"temperature": 0}, stream=True))
assert progress[-1].status == "success", progress

names = [m.model for m in client.list().models]
assert "smollm2:latest" in names, names

reply = client.generate(model="smollm2", prompt="What is the capital of France?",
                        options={"num_predict": 8})
assert reply.done and reply.eval_count == 8, reply
assert reply.response, reply

pieces = list(client.generate(model="smollm2", prompt="What is the capital of France?",
                              options={"num_predict": 8}, stream=True))
assert pieces[-1].done and pieces[-1].done_reason == "length", pieces[-1]
assert "".join(p.response for p in pieces) == reply.response

running = client.ps().models
assert [m.model for m in running] == ["smollm2:latest"], running
assert running[0].size > 0 and running[0].expires_at is not None, running[0]

try:
    client.generate(model="missing", prompt="hi")
    raise AssertionError("a missing model must fail")
except ollama.ResponseError as e:
    assert e.status_code == 404 and "not found" in e.error, e

print("OK")
