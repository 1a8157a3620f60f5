// Drives ollamad with Ollama's official JavaScript library (the `ollama` npm package,
// pinned in package.json beside this file; install it with `npm ci` in this directory).
//
// Usage: node ollama_client.mjs BASE_URL SMOLLM2_GGUF. Prints OK when every call worked as
// the library expects; any failure throws with the library's message and exits non-zero.
//
// The script lives beside package.json because Node resolves an ES module's bare imports
// from the importing file's directory upward (NODE_PATH does not apply to `import`).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import assert from 'node:assert/strict';

import { Ollama } from 'ollama';

const [base, gguf] = process.argv.slice(2);
assert.ok(base && gguf, 'usage: node ollama_client.mjs BASE_URL SMOLLM2_GGUF');
const client = new Ollama({ host: base });

// Upload the GGUF as a blob. The JS library has no createBlob (its create refuses local
// paths), so this is what a JS user writes: the route Ollama documents, with fetch.
const bytes = await readFile(gguf);
const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const uploaded = await fetch(`${base}/api/blobs/${digest}`, { method: 'POST', body: bytes });
assert.ok([200, 201].includes(uploaded.status), `upload: ${uploaded.status} ${await uploaded.text()}`);
assert.equal((await fetch(`${base}/api/blobs/${digest}`, { method: 'HEAD' })).status, 200);

const progress = [];
for await (const p of await client.create({
  model: 'smollm2', files: { [basename(gguf)]: digest },
  parameters: { temperature: 0 }, stream: true,
})) {
  progress.push(p);
}
assert.equal(progress.at(-1).status, 'success', JSON.stringify(progress));

const names = (await client.list()).models.map((m) => m.model);
assert.ok(names.includes('smollm2:latest'), JSON.stringify(names));

const shown = await client.show({ model: 'smollm2' });
assert.equal(shown.model_info['general.architecture'], 'llama', JSON.stringify(shown.model_info));
assert.equal(shown.model_info['general.parameter_count'], 134515008);
assert.ok(shown.capabilities.includes('completion'), JSON.stringify(shown.capabilities));
assert.equal(shown.details.family, 'llama', JSON.stringify(shown.details));
assert.equal(shown.details.quantization_level, 'Q4_1', JSON.stringify(shown.details));
assert.deepEqual(shown.parameters.split(/\s+/).filter(Boolean), ['temperature', '0']);
assert.ok(shown.template && shown.modelfile.includes('PARAMETER temperature 0'), shown.modelfile);

// Generate, whole and streamed: at temperature 0 the pieces make the same text.
const prompt = 'What is the capital of France?';
const reply = await client.generate({ model: 'smollm2', prompt, options: { num_predict: 8 } });
// Greedy SmolLM2 may end its answer (EOS, "stop") within the budget.
assert.ok(reply.done && reply.eval_count > 0 && reply.eval_count <= 8 && reply.response, JSON.stringify(reply));
const pieces = [];
for await (const p of await client.generate({
  model: 'smollm2', prompt, options: { num_predict: 8 }, stream: true,
})) {
  pieces.push(p);
}
assert.ok(pieces.at(-1).done && ['length', 'stop'].includes(pieces.at(-1).done_reason), JSON.stringify(pieces.at(-1)));
assert.equal(pieces.map((p) => p.response).join(''), reply.response);

// Chat, whole and streamed.
const question = [
  { role: 'system', content: 'You are a geography teacher.' },
  { role: 'user', content: prompt },
];
const answer = await client.chat({ model: 'smollm2', messages: question, options: { num_predict: 12 } });
assert.ok(answer.done && answer.message.role === 'assistant', JSON.stringify(answer));
assert.ok(answer.message.content.includes('Paris'), JSON.stringify(answer));
assert.ok(answer.eval_count > 0 && answer.eval_count <= 12 && answer.prompt_eval_count > 10, JSON.stringify(answer));
const parts = [];
for await (const p of await client.chat({
  model: 'smollm2', messages: question, options: { num_predict: 12 }, stream: true,
})) {
  parts.push(p);
}
assert.ok(parts.at(-1).done && ['length', 'stop'].includes(parts.at(-1).done_reason), JSON.stringify(parts.at(-1)));
assert.ok(parts.every((p) => p.message.role === 'assistant'), JSON.stringify(parts));
assert.equal(parts.map((p) => p.message.content).join(''), answer.message.content);

// Abort: the library stops reading and closes the connection; the server must notice and
// free the slot. Once through the stream's own abort(), once through the client's.
const busySlots = async () => (await client.ps()).models
  .filter((m) => m.model === 'smollm2:latest')
  .reduce((sum, m) => sum + m.slots_busy, 0);
for (const how of ['stream.abort()', 'client.abort()']) {
  const stream = await client.chat({
    model: 'smollm2', stream: true, options: { num_predict: 100000 },
    messages: [{ role: 'user', content: 'Tell me a very long story about a dragon.' }],
  });
  let seen = 0;
  let error = null;
  try {
    for await (const part of stream) {
      assert.equal(part.done, false, `${how}: the story ended early: ${JSON.stringify(part)}`);
      seen += 1;
      if (seen === 3) {
        assert.equal(await busySlots(), 1, `${how}: a slot is busy while streaming`);
        if (how === 'stream.abort()') stream.abort();
        else client.abort();
      }
    }
  } catch (e) {
    error = e;
  }
  assert.ok(error && error.name === 'AbortError', `${how}: the client sees an AbortError, not ${error}`);
  const deadline = Date.now() + 2000;
  let busy = await busySlots();
  while (busy !== 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 25));
    busy = await busySlots();
  }
  assert.equal(busy, 0, `${how}: the server frees the slot within 2 s: ${JSON.stringify(await client.ps())}`);
}

// The model still answers, the same as before the aborts.
const again = await client.generate({ model: 'smollm2', prompt, options: { num_predict: 8 } });
assert.equal(again.response, reply.response);

// An unknown model is the library's ResponseError with the status and the server's message.
for (const [what, call] of [
  ['generate', () => client.generate({ model: 'missing', prompt: 'hi' })],
  ['chat', () => client.chat({ model: 'missing', messages: [{ role: 'user', content: 'hi' }], stream: true })],
  ['show', () => client.show({ model: 'missing' })],
]) {
  await assert.rejects(call, (e) => {
    assert.equal(e.name, 'ResponseError', `${what}: ${e}`);
    assert.equal(e.status_code, 404, `${what}: ${e}`);
    assert.ok(e.error.includes('not found'), `${what}: ${e.error}`);
    return true;
  });
}

console.log('OK');
