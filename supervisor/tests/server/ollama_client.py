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

shown = client.show("smollm2")
assert shown.modelinfo["general.architecture"] == "llama", shown.modelinfo
assert shown.modelinfo["general.parameter_count"] == 134515008, shown.modelinfo
assert shown.modelinfo["llama.context_length"] > 0, shown.modelinfo
assert shown.modelinfo["tokenizer.ggml.tokens"] is None, "the vocabulary only with verbose"
assert "completion" in shown.capabilities and "embedding" not in shown.capabilities, shown
assert shown.details.family == "llama" and shown.details.quantization_level == "Q4_1", shown
assert shown.parameters.split() == ["temperature", "0"], shown.parameters
assert "\nFROM /" in shown.modelfile and "PARAMETER temperature 0" in shown.modelfile, shown
assert shown.template and shown.modified_at is not None, shown

assert client.copy("smollm2", "smollm2-copy").status == "success"
listed = {m.model: m for m in client.list().models}
assert {"smollm2:latest", "smollm2-copy:latest"} <= set(listed), listed
assert listed["smollm2-copy:latest"].digest == listed["smollm2:latest"].digest, listed
assert client.show("smollm2-copy").modelinfo["general.parameter_count"] == 134515008

assert client.delete("smollm2-copy").status == "success"
names = [m.model for m in client.list().models]
assert "smollm2-copy:latest" not in names and "smollm2:latest" in names, names
again = client.generate(model="smollm2", prompt="What is the capital of France?",
                        options={"num_predict": 8})
assert again.response == reply.response, "the original keeps the blobs it shared"

for call in (lambda: client.show("missing"), lambda: client.delete("missing"),
             lambda: client.copy("missing", "other")):
    try:
        call()
        raise AssertionError("a missing model must fail")
    except ollama.ResponseError as e:
        assert e.status_code == 404 and "not found" in e.error, e

print("OK")
