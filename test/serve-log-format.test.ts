// `pdp serve --log-format json` through the real subprocess: every line on stderr is one JSON object
// with pino's keys (the command's own lines and the HTTP server's alike), a refused reload and a
// refused start-up carry their diagnostics as an array, --workers lines say which worker wrote them,
// and stdout keeps the one `listening on` line scripts wait for. The text format is covered by the
// other serve tests, whose assertions read its `pdp serve: …` lines.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { makePolicyDir, makeTempDir, removeTempDir, request, runPdp, spawnPdp, startServe, waitFor, writePolicyFile } from './support/server';

const WEB_READ = 'service "web" {\n  policy   = "read"\n  identity = "team:web"\n}\n';
const WEB_WRITE = 'service "web" {\n  policy   = "write"\n  identity = "team:web"\n}\n';
const BROKEN = 'service "web" {\n  policy   = "write"\n  identty  = "team:web"\n}\n';

interface LogLine {
  level: number;
  time: number;
  pid: number;
  hostname: string;
  msg: string;
  worker?: number;
  diagnostics?: { file: string; line: number; column: number; code: string; message: string }[];
  [key: string]: unknown;
}

/** Every non-empty stderr line, parsed; fails naming the first line that is not a pino-shaped JSON object. */
function jsonLines(stderr: string): LogLine[] {
  return stderr.split('\n').filter((l) => l !== '').map((l) => {
    let parsed: LogLine;
    try {
      parsed = JSON.parse(l) as LogLine;
    } catch {
      assert.fail(`a stderr line is not JSON: ${l}`);
    }
    assert.equal(typeof parsed.level, 'number', l);
    assert.equal(typeof parsed.time, 'number', l);
    assert.equal(typeof parsed.pid, 'number', l);
    assert.equal(typeof parsed.hostname, 'string', l);
    assert.equal(typeof parsed.msg, 'string', l);
    return parsed;
  });
}

function scratch(t: TestContext, files: Record<string, string>) {
  const root = makeTempDir('pdp-log-format-');
  t.after(() => removeTempDir(root));
  return { root, policyDir: makePolicyDir(root, files), auditPath: path.join(root, 'audit.db') };
}

test('--log-format json: start-up, reloads (refused and applied) and shutdown are JSON lines; stdout keeps the listening line', async (t) => {
  const { policyDir, auditPath } = scratch(t, { 'web.hcl': WEB_READ });
  const serve = await startServe(['--policies', policyDir, '--audit', auditPath, '--no-watch', '--log-format', 'json']);
  t.after(() => serve.stop());
  assert.equal(serve.stdout(), `pdp serve: listening on ${serve.url}\n`);

  writePolicyFile(policyDir, 'web.hcl', BROKEN);
  assert.equal((await request(`${serve.url}/v1/policies/reload`, { method: 'POST' })).status, 422);
  writePolicyFile(policyDir, 'web.hcl', WEB_WRITE);
  assert.equal((await request(`${serve.url}/v1/policies/reload`, { method: 'POST' })).status, 200);
  serve.child.kill('SIGTERM');
  assert.deepEqual(await serve.exited, { code: 0, signal: null }, serve.stderr());

  const lines = jsonLines(serve.stderr());
  const find = (re: RegExp) => {
    const line = lines.find((l) => re.test(l.msg));
    assert.ok(line, `no line matching ${re} in:\n${serve.stderr()}`);
    return line;
  };
  const rules = find(/^1 rules \(sha256:[0-9a-f]{64}\) from /);
  assert.equal(rules.level, 30);
  assert.equal(rules.policies, policyDir);
  assert.match(String(rules.policy_version), /^sha256:/);
  assert.equal(find(/^audit store /).audit, auditPath);
  assert.equal(find(/^listening on /).url, serve.url);
  // The HTTP server's own pino line, in the same stream and shape.
  assert.equal(find(/^serving plain HTTP on loopback/).level, 40);

  const refused = find(/^reload refused \(api:loopback\): /);
  assert.equal(refused.level, 40);
  assert.equal(refused.trigger, 'api:loopback');
  assert.ok(refused.diagnostics && refused.diagnostics.length > 0, 'the refusal carries its diagnostics');
  const [first] = refused.diagnostics;
  assert.equal(first!.file, 'web.hcl');
  assert.equal(first!.line, 3);
  assert.equal(typeof first!.column, 'number');
  assert.match(first!.message, /identty/);

  const reloaded = find(/^reloaded \(api:loopback\): sha256:/);
  assert.notEqual(reloaded.policy_version, rules.policy_version);
  assert.equal(find(/^SIGTERM: draining$/).level, 30);
  assert.equal(find(/^stopped$/).exit_code, 0);
  for (const line of lines) assert.equal(line.pid, serve.child.pid, 'one process, one pid');
  assert.ok(lines.every((l) => l.worker === undefined), 'no worker key outside --workers');
});

test('--log-format json: a policy set with errors stops the start-up with one line carrying every diagnostic', async (t) => {
  const { policyDir, auditPath } = scratch(t, { 'web.hcl': BROKEN });
  const run = await runPdp(['serve', '--policies', policyDir, '--audit', auditPath, '--listen', '127.0.0.1:0', '--log-format', 'json']);
  assert.equal(run.code, 1, run.stderr);
  assert.equal(run.stdout, '');
  const lines = jsonLines(run.stderr);
  assert.equal(lines.length, 1, run.stderr);
  const [line] = lines;
  assert.equal(line!.level, 50);
  assert.equal(line!.msg, `the policy set in \`${policyDir}\` has errors; not starting`);
  // Paths as the text format shows them: the policy directory as typed, then the file.
  assert.deepEqual(line!.diagnostics!.map((d) => [d.file, d.line, d.code]), [[path.join(policyDir, 'web.hcl'), 3, 'unknown-attribute']]);
  assert.match(line!.diagnostics![0]!.message, /identty/);
});

test('--log-format: a value other than text or json is a usage error naming the flag (in text: pdp has not started)', async () => {
  const run = await runPdp(['serve', '--listen', '127.0.0.1:0', '--log-format', 'xml']);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /^pdp serve: --log-format must be `text` or `json`; got `xml`/);
});

test('--log-format json with --workers 2: worker lines carry their worker number, the primary\'s none', async (t) => {
  const { root, policyDir, auditPath } = scratch(t, { 'web.hcl': WEB_READ });
  const p = spawnPdp(['serve', '--listen', '127.0.0.1:0', '--policies', policyDir, '--audit', auditPath, '--no-watch', '--workers', '2', '--log-format', 'json'], { cwd: root });
  t.after(async () => {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
  });
  assert.ok(await waitFor(() => /listening on .* \(2 workers\)/.test(p.stdout()), 20_000), `not listening; stderr:\n${p.stderr()}`);
  p.child.kill('SIGTERM');
  assert.deepEqual(await p.exited, { code: 0, signal: null }, p.stderr());

  const lines = jsonLines(p.stderr());
  const ready = lines.filter((l) => /^worker \d ready \(pid \d+\)$/.test(l.msg));
  assert.equal(ready.length, 2, p.stderr());
  for (const l of ready) assert.equal(l.worker, undefined, 'the primary says which worker is ready; it is none');
  assert.equal(lines.find((l) => /^listening on .* \(2 workers\)$/.test(l.msg))?.workers, 2);
  const rules = lines.filter((l) => /^1 rules /.test(l.msg));
  assert.deepEqual(rules.map((l) => l.worker).sort(), [1, 2], 'each worker says what it serves, with its number');
  const stopped = lines.filter((l) => l.msg === 'stopped');
  assert.deepEqual(stopped.map((l) => l.worker).sort(), [1, 2]);
  assert.ok(stopped.every((l) => l.pid !== p.child.pid), 'workers are their own processes');
});
