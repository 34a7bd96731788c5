// /v1/authorize/forward: the check in headers, the decision in the status (200 allow, 403 deny), for
// PEPs that can only read a status: nginx `auth_request`. Through `pdp serve` as a subprocess on an
// ephemeral port, and, where nginx is installed (`apt install nginx-light`), through a real nginx in
// front of a real backend.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EXAMPLE_POLICIES, makeTempDir, removeTempDir, request, rowByDecision, startServe, waitFor, type ServeProcess } from './support/server';

const PAYMENT = 'spiffe://cluster/ns/prod/sa/payment';
const ORDER = 'spiffe://cluster/ns/prod/sa/order';

/** The headers nginx would send for `identity` doing `action` on payment-service in prod. */
const check = (identity: string, action: string, extra: Record<string, string> = {}): Record<string, string> => ({
  'x-pdp-identity': identity, 'x-pdp-action': action, 'x-pdp-resource': 'service:payment-service', 'x-pdp-namespace': 'prod', ...extra,
});

let root: string;
let serve: ServeProcess;
let auditPath: string;
let forward: string;

let labServe: ServeProcess;
let labAudit: string;

before(async () => {
  root = makeTempDir('pdp-forward-');
  auditPath = path.join(root, 'audit.db');
  serve = await startServe(['--policies', EXAMPLE_POLICIES, '--audit', auditPath, '--no-watch']);
  forward = `${serve.url}/v1/authorize/forward`;
  // A policy whose decision depends on a non-ASCII identity.
  const lab = path.join(root, 'lab');
  fs.mkdirSync(lab);
  fs.writeFileSync(path.join(lab, 'lab.hcl'), 'namespace "lab" {\n  service "wiki" {\n    policy   = "read"\n    identity = "user:*"\n  }\n  service "wiki" {\n    policy   = "deny"\n    identity = "user:josé"\n  }\n}\n');
  labAudit = path.join(root, 'lab.db');
  labServe = await startServe(['--policies', lab, '--audit', labAudit, '--no-watch']);
});

after(async () => {
  await labServe?.stop();
  await serve?.stop();
  if (root) removeTempDir(root);
});

describe('GET /v1/authorize/forward', () => {
  test('allow is 200 and deny 403, with the decision in headers and body, and an audit row for each', async () => {
    const allowed = await request(forward, { headers: check(PAYMENT, 'write', { 'x-pdp-source-ip': '10.0.1.50', 'x-pdp-event-type': 'REGISTRATION', 'x-pdp-instance-id': 'payment-1' }) });
    assert.equal(allowed.status, 200, allowed.text);
    assert.equal(allowed.json.allow, true);
    assert.equal(allowed.headers.get('x-pdp-result'), 'ALLOW');
    assert.equal(allowed.headers.get('x-pdp-decision-id'), allowed.json.decision_id);
    assert.equal(allowed.headers.get('x-pdp-policy-version'), allowed.json.policy_version);
    const row = rowByDecision(auditPath, allowed.json.decision_id);
    assert.ok(row, 'the decision is in audit_log');
    assert.equal(row.result, 'ALLOW');
    assert.equal(row.identity, PAYMENT);
    assert.equal(row.source_ip, '10.0.1.50');
    assert.equal(row.event_type, 'REGISTRATION');
    assert.equal(row.instance_id, 'payment-1');

    const denied = await request(forward, { headers: check(ORDER, 'write') });
    assert.equal(denied.status, 403, denied.text);
    assert.equal(denied.json.result, 'DENY');
    assert.match(denied.json.reason, /has read on service:payment-service; write is required/);
    assert.equal(denied.headers.get('x-pdp-result'), 'DENY');
    assert.equal(rowByDecision(auditPath, denied.json.decision_id)?.result, 'DENY');
    // Without x-pdp-source-ip, the caller's address, as /v1/authorize does.
    assert.equal(rowByDecision(auditPath, denied.json.decision_id)?.source_ip, '127.0.0.1');
  });

  test('the default policy\'s answers by status too: a default deny (no rule) is 403, ALLOW_DEFAULT is 200', async (t) => {
    // No rule names this identity: the default policy (deny, in the example set) decides, rule null.
    const nobody = await request(forward, { headers: check('spiffe://cluster/ns/prod/sa/stranger', 'read') });
    assert.equal(nobody.json.result, 'DENY', nobody.text);
    assert.equal(nobody.json.rule, null);
    assert.equal(nobody.status, 403, 'a default deny is a deny to nginx');
    assert.equal(rowByDecision(auditPath, nobody.json.decision_id)?.result, 'DENY');

    const dir = path.join(root, 'default-allow');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'open.hcl'), 'settings {\n  default_policy = "allow"\n}\n\nservice "vault" {\n  policy   = "deny"\n  identity = "*"\n}\n');
    const openAudit = path.join(root, 'default-allow.db');
    const open = await startServe(['--policies', dir, '--audit', openAudit, '--no-watch']);
    t.after(() => open.stop());
    const headers = (resource: string) => ({ 'x-pdp-identity': 'team:any', 'x-pdp-action': 'read', 'x-pdp-resource': resource });
    const allowed = await request(`${open.url}/v1/authorize/forward`, { headers: headers('service:wiki') });
    assert.equal(allowed.json.result, 'ALLOW_DEFAULT', allowed.text);
    assert.equal(allowed.status, 200, 'ALLOW_DEFAULT lets the request through');
    assert.equal(allowed.headers.get('x-pdp-result'), 'ALLOW_DEFAULT');
    assert.equal(rowByDecision(openAudit, allowed.json.decision_id)?.result, 'ALLOW_DEFAULT');
    const denied = await request(`${open.url}/v1/authorize/forward`, { headers: headers('service:vault') });
    assert.equal(denied.json.result, 'DENY', denied.text);
    assert.equal(denied.status, 403);
  });

  test('header values are read as UTF-8: a non-ASCII identity is decided as /v1/authorize decides it, and echoed percent-encoded', async () => {
    // Node reads header bytes as Latin-1; read so, `user:josé` would become `user:josÃ©`, miss the
    // deny naming `user:josé` and still match `user:*`.
    const headers = [['x-pdp-identity', 'user:josé'], ['x-pdp-action', 'read'], ['x-pdp-resource', 'service:wiki'], ['x-pdp-namespace', 'lab']] as [string, string][];
    const viaBody = await request(`${labServe.url}/v1/authorize`, { body: { identity: 'user:josé', action: 'read', resource: 'service:wiki', namespace: 'lab' } });
    assert.equal(viaBody.json.result, 'DENY', viaBody.text);
    const viaHeaders = await rawGet(`${labServe.url}/v1/authorize/forward`, headers.map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('latin1')]));
    assert.equal(viaHeaders.status, 403, viaHeaders.body);
    const decision = JSON.parse(viaHeaders.body);
    assert.equal(decision.result, 'DENY');
    assert.match(decision.reason, /^user:josé is explicitly denied/);
    assert.equal(rowByDecision(labAudit, decision.decision_id)?.identity, 'user:josé');
  });

  test('any method; a body is the proxied request\'s and is ignored', async () => {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      const r = await request(forward, { method, raw: '{"not": "a check"', contentType: 'application/json', headers: check(ORDER, 'read') });
      assert.equal(r.status, 200, `${method}: ${r.text}`);
      assert.equal(r.json.allow, true, method);
    }
    const head = await request(forward, { method: 'HEAD', headers: check(ORDER, 'write') });
    assert.equal(head.status, 403);
    assert.equal(head.text, '');
    assert.equal(head.headers.get('x-pdp-result'), 'DENY');
    assert.ok(rowByDecision(auditPath, head.headers.get('x-pdp-decision-id')!), 'a HEAD check is audited too');
  });

  test('bad headers are 400 naming the header and what was expected; nothing is audited for them', async () => {
    const cases: { name: string; headers: Record<string, string>; field: string; message: RegExp }[] = [
      { name: 'no action', headers: { 'x-pdp-identity': ORDER, 'x-pdp-resource': 'service:payment-service' }, field: 'x-pdp-action', message: /`x-pdp-action` is required/ },
      { name: 'no resource', headers: { 'x-pdp-identity': ORDER, 'x-pdp-action': 'read' }, field: 'x-pdp-resource', message: /`x-pdp-resource` is required/ },
      { name: 'unknown action', headers: check(ORDER, 'delete'), field: 'x-pdp-action', message: /`x-pdp-action` must be one of `read`, `write`, `admin`/ },
      { name: 'bad resource', headers: { ...check(ORDER, 'read'), 'x-pdp-resource': 'svc:payment' }, field: 'x-pdp-resource', message: /^`x-pdp-resource`: unknown resource form/ },
      { name: 'bad namespace', headers: { ...check(ORDER, 'read'), 'x-pdp-namespace': 'pr od' }, field: 'x-pdp-namespace', message: /`x-pdp-namespace` must be 1-253 characters/ },
      { name: 'bad source IP', headers: check(ORDER, 'read', { 'x-pdp-source-ip': '10.0.0.300' }), field: 'x-pdp-source-ip', message: /^`x-pdp-source-ip`: invalid IP address/ },
      { name: 'lower-case event type', headers: check(ORDER, 'read', { 'x-pdp-event-type': 'discovery' }), field: 'x-pdp-event-type', message: /upper-case/ },
      { name: 'event type contradicting the action', headers: check(ORDER, 'read', { 'x-pdp-event-type': 'REGISTRATION' }), field: 'x-pdp-event-type', message: /^`x-pdp-event-type` is `REGISTRATION`/ },
      { name: 'a subject token on a server without tokens', headers: check(ORDER, 'read', { 'x-pdp-subject-token': 'pdp_abc' }), field: 'x-pdp-subject-token', message: /`x-pdp-subject-token` cannot be verified/ },
      { name: 'a certificate that is not URL-encoded', headers: check(ORDER, 'read', { 'x-pdp-subject-certificate': '%E0%A4%A' }), field: 'x-pdp-subject-certificate', message: /URL-encoded PEM/ },
    ];
    cases.push(
      { name: 'an instance contradicting the resource', headers: { ...check(ORDER, 'read', { 'x-pdp-instance-id': 'p2' }), 'x-pdp-resource': 'service:payment-service/p1' }, field: 'x-pdp-instance-id', message: /^`x-pdp-instance-id` \(`p2`\) contradicts the instance `p1` in `x-pdp-resource`/ },
      // Bytes that are not UTF-8 (Latin-1 é alone).
      { name: 'an identity that is not UTF-8', headers: { ...check(ORDER, 'read'), 'x-pdp-identity': Buffer.from('user:jos\xe9', 'latin1').toString('latin1') }, field: 'x-pdp-identity', message: /`x-pdp-identity` is not UTF-8 text/ },
    );
    const rowsBefore = countDecisionRows();
    for (const c of cases) {
      const r = await request(forward, { headers: c.headers });
      assert.equal(r.status, 400, `${c.name}: ${r.text}`);
      assert.equal(r.json.error.code, 'invalid_request', c.name);
      assert.equal(r.json.error.field, c.field, c.name);
      assert.match(r.json.error.message, c.message, c.name);
    }
    // A header given twice (two proxy_set_header lines, or a client's own header passed on) is not
    // guessed at: Node would join the values with a comma.
    const twice = await rawGet(forward, [['x-pdp-identity', ORDER], ['x-pdp-identity', PAYMENT], ['x-pdp-action', 'read'], ['x-pdp-resource', 'service:payment-service']]);
    assert.equal(twice.status, 400, twice.body);
    assert.match(twice.body, /`x-pdp-identity` is given 2 times; give it once/);
    // Also for headers whose joined value would fail their schema first (`read, read` is no action).
    const twiceAction = await rawGet(forward, [['x-pdp-identity', ORDER], ['x-pdp-action', 'read'], ['x-pdp-action', 'read'], ['x-pdp-resource', 'service:payment-service']]);
    assert.equal(twiceAction.status, 400, twiceAction.body);
    assert.match(twiceAction.body, /`x-pdp-action` is given 2 times; give it once/);
    assert.equal(countDecisionRows(), rowsBefore, 'no row for a refused check');
  });
});

function countDecisionRows(): number {
  const r = spawnSync(process.execPath, ['-e', `const D=require('better-sqlite3');const db=new D(process.argv[1],{readonly:true});process.stdout.write(String(db.prepare("SELECT COUNT(*) FROM audit_log WHERE event_type <> 'ACL_CHANGE'").pluck().get()))`, auditPath], { encoding: 'utf8', cwd: path.resolve(__dirname, '..', '..') });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout);
}

/** A GET with repeated headers (fetch would join them). */
function rawGet(url: string, headers: [string, string][]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // Given as a flat list, the headers are sent as they are: Host included.
    const req = http.request(url, { method: 'GET', headers: [['host', new URL(url).host], ...headers].flat() as unknown as http.OutgoingHttpHeaders }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

// ---- a real nginx in front of a backend ---------------------------------------------------------

const NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'].find((p) => fs.existsSync(p));

describe('nginx auth_request in front of a backend', { skip: NGINX === undefined && 'nginx is not installed (apt install nginx-light); the endpoint itself is tested above' }, () => {
  let nginx: ChildProcess;
  let backend: http.Server;
  let backendHits = 0;
  let site: string;
  let dir: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(root, 'nginx-'));
    backend = http.createServer((_req, res) => {
      backendHits++;
      res.end('backend reached\n');
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const pdp = new URL(serve.url);
    const writeConfig = (port: number) => fs.writeFileSync(path.join(dir, 'nginx.conf'), `
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events {}
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  # The action from the method: reads are read, everything else is write.
  map $request_method $pdp_action { GET read; HEAD read; default write; }
  server {
    listen 127.0.0.1:${port};
    location /payment/ {
      auth_request /_pdp;
      auth_request_set $pdp_decision $upstream_http_x_pdp_decision_id;
      add_header X-Decision $pdp_decision always;
      proxy_pass http://127.0.0.1:${(backend.address() as AddressInfo).port};
    }
    location = /_pdp {
      internal;
      proxy_pass http://${pdp.host}/v1/authorize/forward;
      # Only the headers set here reach pdp: a client's own X-PDP-* headers must not.
      proxy_pass_request_headers off;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-PDP-Identity $http_x_workload_identity;
      proxy_set_header X-PDP-Action $pdp_action;
      proxy_set_header X-PDP-Resource service:payment-service;
      proxy_set_header X-PDP-Namespace prod;
      proxy_set_header X-PDP-Source-IP $remote_addr;
    }
  }
}
`);
    const errorLog = () => (fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : '');
    let stderr = '';
    let up = false;
    // The port was free a moment ago, but a test file running alongside may take it before nginx binds
    // it (an ephemeral port of its own); nginx then exits at once: take another port and start again.
    for (let attempt = 1; attempt <= 5 && !up; attempt++) {
      const port = await freePort();
      writeConfig(port);
      const child = spawn(NGINX!, ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
      nginx = child;
      child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
      const exited = () => child.exitCode !== null || child.signalCode !== null;
      site = `http://127.0.0.1:${port}`;
      up = await waitFor(async () => {
        if (exited()) return true;
        try {
          // nginx itself, not whoever else may be listening on the port.
          return (await fetch(`${site}/`)).headers.get('server')?.startsWith('nginx') === true;
        } catch {
          return false;
        }
      }, 10_000) && !exited();
      if (!up && !/Address already in use/.test(stderr + errorLog())) break;
    }
    assert.ok(up, `nginx started; stderr: ${stderr}; error.log: ${errorLog()}`);
  });

  after(async () => {
    if (nginx && nginx.exitCode === null) {
      nginx.kill('SIGTERM');
      await new Promise((resolve) => nginx.once('exit', resolve));
    }
    await new Promise((resolve) => backend?.close(resolve));
  });

  test('an allowed request reaches the backend; a denied one gets 403 from nginx and never reaches it; both are audited', async () => {
    // The client's own X-PDP-* headers never reach pdp (a contradicting event type would be a 400 and a 500 here).
    const smuggled = await fetch(`${site}/payment/invoices`, { headers: { 'x-workload-identity': ORDER, 'x-pdp-event-type': 'ADMIN', 'x-pdp-namespace': 'staging' } });
    assert.equal(smuggled.status, 200);
    await smuggled.text();
    assert.equal(rowByDecision(auditPath, smuggled.headers.get('x-decision')!)?.namespace, 'prod');
    const hitsBefore = backendHits;
    const read = await fetch(`${site}/payment/invoices`, { headers: { 'x-workload-identity': ORDER } });
    assert.equal(read.status, 200);
    assert.equal(await read.text(), 'backend reached\n');
    assert.equal(backendHits, hitsBefore + 1);
    const readRow = rowByDecision(auditPath, read.headers.get('x-decision')!);
    assert.ok(readRow, 'the decision nginx acted on is in audit_log');
    assert.equal(readRow.identity, ORDER);
    assert.equal(readRow.action, 'read');
    assert.equal(readRow.result, 'ALLOW');
    assert.equal(readRow.source_ip, '127.0.0.1');

    const write = await fetch(`${site}/payment/invoices`, { method: 'POST', body: 'x=1', headers: { 'x-workload-identity': ORDER, 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(write.status, 403);
    await write.text();
    assert.equal(backendHits, hitsBefore + 1, 'the denied request never reached the backend');
    assert.equal(rowByDecision(auditPath, write.headers.get('x-decision')!)?.result, 'DENY');

    const register = await fetch(`${site}/payment/instances`, { method: 'PUT', body: '{}', headers: { 'x-workload-identity': PAYMENT } });
    assert.equal(register.status, 200, await register.text());
    assert.equal(backendHits, hitsBefore + 2);

    // No identity at all: the policy set does not allow anonymous requests, so pdp answers 400 and
    // nginx fails closed (500), without reaching the backend.
    const anonymous = await fetch(`${site}/payment/invoices`);
    assert.equal(anonymous.status, 500);
    await anonymous.text();
    assert.equal(backendHits, hitsBefore + 2);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = http.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
