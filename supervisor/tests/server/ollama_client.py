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

question = [{"role": "system", "content": "You are a geography teacher."},
            {"role": "user", "content": "What is the capital of France?"}]
answer = client.chat(model="smollm2", messages=question, options={"num_predict": 12})
assert answer.done and answer.message.role == "assistant", answer
assert "Paris" in answer.message.content, answer
assert answer.eval_count == 12 and answer.prompt_eval_count > 10, answer

parts = list(client.chat(model="smollm2", messages=question, options={"num_predict": 12},
                         stream=True))
assert parts[-1].done and parts[-1].done_reason == "length", parts[-1]
assert all(p.message.role == "assistant" for p in parts), parts
assert "".join(p.message.content for p in parts) == answer.message.content

texts = ["Paris is the capital of France.", "The cat sat on the mat.",
         "Paris is the capital of France."]
embedded = client.embed(model="smollm2", input=texts)
vectors = embedded.embeddings
assert len(vectors) == 3 and len(vectors[0]) == 576, [len(v) for v in vectors]
assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3
assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
assert embedded.prompt_eval_count > 10, embedded

short = client.embed(model="smollm2", input="Paris", dimensions=64).embeddings[0]
assert len(short) == 64 and abs(sum(x * x for x in short) - 1.0) < 1e-3

legacy = client.embeddings(model="smollm2", prompt="Paris is the capital of France.")
assert len(legacy.embedding) == 576, len(legacy.embedding)

try:
    client.chat(model="smollm2", messages=[{"role": "user", "content": "hi"}], format="json")
    raise AssertionError("format is refused until the constrained sampler exists")
except ollama.ResponseError as e:
    assert e.status_code == 400 and "format" in e.error, e

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
