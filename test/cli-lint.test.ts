// `pdp check` with lint warnings, through the real binary (`node bin/pdp.js`, cwd the repository):
// exit codes with and without --strict, the text rendering, --format json and --format sarif.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const PDP = path.join(REPO_ROOT, 'bin', 'pdp.js');
const run = promisify(execFile);

async function pdp(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env };
  delete env.PDP_POLICIES;
  try {
    const { stdout, stderr } = await run(process.execPath, [PDP, ...args], { cwd: REPO_ROOT, env });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

// Line and column of each warning's label or value, 1-based.
const WARNED = `settings {
  default_policy = "allow"
}

service_prefix "secure-foo" {
  policy   = "read"
  identity = "team:a"
}

namespace "prod" {
  policy   = "write"
  identity = "team:x"

  service "a" {
    policy   = "read"
    identity = "team:x"
  }
}
`;
const EXPECTED = [
  { ruleId: 'default-allow', startLine: 2, startColumn: 20, endLine: 2, endColumn: 27 },
  { ruleId: 'prefix-not-at-delimiter', startLine: 5, startColumn: 16, endLine: 5, endColumn: 28 },
  { ruleId: 'redundant-rule', startLine: 14, startColumn: 11, endLine: 14, endColumn: 14 },
];

interface SarifLog {
  $schema: string;
  version: string;
  runs: {
    tool: { driver: { name: string; version?: string; rules: { id: string; shortDescription: { text: string } }[] } };
    results: {
      ruleId: string;
      ruleIndex: number;
      level: string;
      message: { text: string };
      locations: { physicalLocation: { artifactLocation: { uri: string; uriBaseId?: string }; region: { startLine: number; startColumn: number; endLine: number; endColumn: number } } }[];
    }[];
  }[];
}

describe('pdp check: lint warnings through the CLI', () => {
  let dir: string;
  let relative: string;
  let broken: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-cli-lint-'));
    fs.mkdirSync(path.join(dir, 'warned'));
    fs.writeFileSync(path.join(dir, 'warned', 'p.hcl'), WARNED);
    fs.mkdirSync(path.join(dir, 'broken'));
    fs.writeFileSync(path.join(dir, 'broken', 'p.hcl'), `service_prefix "pay" {\n  policy = "reed"\n  identity = "team:a"\n}\n`);
    relative = path.relative(REPO_ROOT, path.join(dir, 'warned'));
    broken = path.join(dir, 'broken');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('warnings alone exit 0 and are printed as warning[code] with the source line and a hint', async () => {
    const { code, stdout, stderr } = await pdp(['check', relative]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^ok: 1 file, 3 rules: 0 errors, 3 warnings$/m);
    assert.match(stderr, new RegExp(`${relative.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}/p\\.hcl:5:16: warning\\[prefix-not-at-delimiter\\]: prefix \`secure-foo\``));
    assert.match(stderr, /warning\[default-allow\]/);
    assert.match(stderr, /warning\[redundant-rule\]/);
    assert.match(stderr, /5 \| service_prefix "secure-foo" \{\n\s+\| {16}\^{12}\n\s+= hint: /);
  });

  test('--strict makes warnings fail', async () => {
    const { code, stderr } = await pdp(['check', '--strict', relative]);
    assert.equal(code, 1);
    assert.match(stderr, /check failed: 1 file, 3 rules: 0 errors, 3 warnings/);
  });

  test('the shipped policies/ pass --strict', async () => {
    const { code, stdout, stderr } = await pdp(['check', '--strict', 'policies']);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /0 errors, 0 warnings/);
  });

  test('--format json lists the warnings with codes and positions', async () => {
    const { code, stdout } = await pdp(['check', '--format', 'json', '--strict', relative]);
    assert.equal(code, 1);
    const report = JSON.parse(stdout) as { ok: boolean; warnings: number; diagnostics: { code: string; severity: string; line: number; column: number; hint?: string }[] };
    assert.equal(report.ok, false);
    assert.equal(report.warnings, 3);
    assert.deepEqual(report.diagnostics.map((d) => [d.code, d.severity, d.line, d.column]), EXPECTED.map((e) => [e.ruleId, 'warning', e.startLine, e.startColumn]));
    assert.ok(report.diagnostics.every((d) => d.hint));
  });

  test('--format sarif is SARIF 2.1.0 with rules, results, levels and regions', async () => {
    const { code, stdout } = await pdp(['check', '--format', 'sarif', relative]);
    assert.equal(code, 0);
    const log = JSON.parse(stdout) as SarifLog;
    assert.equal(log.version, '2.1.0');
    assert.match(log.$schema, /sarif-2\.1\.0/);
    assert.equal(log.runs.length, 1);
    const sarifRun = log.runs[0]!;
    assert.equal(sarifRun.tool.driver.name, 'pdp');
    assert.equal(typeof sarifRun.tool.driver.version, 'string');
    const ruleIds = sarifRun.tool.driver.rules.map((r) => r.id);
    assert.deepEqual(ruleIds, [...new Set(EXPECTED.map((e) => e.ruleId))].sort());
    for (const rule of sarifRun.tool.driver.rules) assert.ok(rule.shortDescription.text.length > 0);
    assert.deepEqual(sarifRun.results.map((r) => {
      const { region } = r.locations[0]!.physicalLocation;
      return { ruleId: r.ruleId, startLine: region.startLine, startColumn: region.startColumn, endLine: region.endLine, endColumn: region.endColumn };
    }), EXPECTED);
    for (const r of sarifRun.results) {
      assert.equal(r.level, 'warning');
      assert.equal(ruleIds[r.ruleIndex], r.ruleId);
      assert.match(r.message.text, /\nhint: ./, 'the hint travels with the message');
      const location = r.locations[0]!.physicalLocation.artifactLocation;
      assert.equal(location.uri, `${relative.split(path.sep).join('/')}/p.hcl`);
      assert.equal(location.uriBaseId, '%SRCROOT%');
    }
  });

  test('--format sarif reports errors as level error (and exits 1); absolute paths become file:// URIs', async () => {
    const { code, stdout } = await pdp(['check', '--format', 'sarif', broken]);
    assert.equal(code, 1);
    const results = (JSON.parse(stdout) as SarifLog).runs[0]!.results;
    const byRule = Object.fromEntries(results.map((r) => [r.ruleId, r]));
    assert.equal(byRule['invalid-level']?.level, 'error');
    assert.equal(byRule['prefix-not-at-delimiter']?.level, 'warning');
    assert.equal(byRule['invalid-level']!.locations[0]!.physicalLocation.artifactLocation.uri, `file://${path.join(broken, 'p.hcl').split(path.sep).join('/')}`);
  });

  test('--help describes the lint codes, sarif and --replay', async () => {
    const { code, stdout } = await pdp(['check', '--help']);
    assert.equal(code, 0);
    for (const word of ['--format FORMAT', 'sarif', '--replay', '--fail-on-change', '--since', 'dead-grant', 'redundant-rule']) assert.ok(stdout.includes(word), word);
    const bad = await pdp(['check', '--format', 'xml', 'policies']);
    assert.equal(bad.code, 2);
  });
});
