// The server benchmark's profile report (bench/server.ts, `--profile`): a CPU profile reduced to time
// by function and by area over the measured rounds only, and the side-by-side table of CPU per
// answered request. Real .cpuprofile files in Chrome's format, written to a temporary folder.
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { perRequestTable, readProfile, summarizeProfile } from '../bench/server';

const ROOT = path.resolve(__dirname, '..', '..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pdp-profile-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Frame { name: string; url: string }
/** A profile whose root has one child per frame; each sample is [frame index, µs since the previous]. */
function writeProfile(file: string, frames: Frame[], samples: [number, number][], startTime = 1_000_000): string {
  const nodes = [
    { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: frames.map((_, i) => i + 2) },
    ...frames.map((f, i) => ({ id: i + 2, callFrame: { functionName: f.name, url: f.url, lineNumber: 9 }, children: [] as number[] })),
  ];
  const endTime = startTime + samples.reduce((sum, [, dt]) => sum + dt, 0);
  const full = path.join(dir, file);
  fs.writeFileSync(full, JSON.stringify({ nodes, startTime, endTime, samples: samples.map(([i]) => i + 2), timeDeltas: samples.map(([, dt]) => dt) }));
  return full;
}

const FRAMES: Frame[] = [
  { name: '(idle)', url: '' },
  { name: 'writev', url: '' },
  { name: 'authorizeOne', url: `file://${ROOT}/dist/src/server/server.js` },
  { name: '_parse', url: `file://${ROOT}/node_modules/secure-json-parse/index.js` },
  { name: 'emit', url: 'node:events' },
];

test('profile: only the samples inside the measured windows count, sorted into areas (socket writes apart)', () => {
  // 100 µs of start-up (outside the window), then a window of 1000 µs.
  const file = writeProfile('a.cpuprofile', FRAMES, [[2, 100], [0, 400], [1, 300], [2, 200], [3, 50], [4, 50]]);
  const times = readProfile(file, [{ startUs: 1_000_101, endUs: 1_001_100 }]);
  assert.equal(times.inRange, true);
  assert.equal(times.total, 1000);
  assert.deepEqual(Object.fromEntries(times.byArea), {
    '(idle)': 400, 'socket writes (native, kernel included)': 300, 'pdp server': 200, 'npm secure-json-parse': 50, 'node internals': 50,
  });
  assert.equal(times.inclusive.get(`authorizeOne dist/src/server/server.js:10`), 200);
  const md = summarizeProfile(times);
  assert.match(md, /^Measured rounds only: 0\.00 s sampled/);
  assert.match(md, /\| 20\.0 % \| pdp server \|/);
  // Windows on another clock than the profile's: the whole process, said so.
  const whole = readProfile(file, [{ startUs: 5, endUs: 10 }]);
  assert.equal(whole.inRange, false);
  assert.equal(whole.total, 1100);
  assert.match(summarizeProfile(whole), /^Whole process \(start-up and warmup included\)/);
});

test('profile: CPU per answered request side by side, idle left out, small areas summed', () => {
  const a = readProfile(writeProfile('b.cpuprofile', FRAMES, [[0, 900], [1, 200], [3, 100], [4, 3]]), [{ startUs: 1_000_000, endUs: 1_001_203 }]);
  const b = readProfile(writeProfile('c.cpuprofile', FRAMES, [[0, 500], [1, 300], [2, 400], [3, 100], [4, 2]]), [{ startUs: 1_000_000, endUs: 1_001_302 }]);
  const md = perRequestTable([{ id: 'fastify', requests: 100, times: a }, { id: 'pdp-hit', requests: 50, times: b }]);
  const lines = md.split('\n');
  assert.equal(lines[2], '| area | `fastify` | `pdp-hit` |');
  // Largest first by the most any target spends there: pdp server 8 µs, socket writes 6, parse 2.
  assert.deepEqual(lines.slice(4, 7), [
    '| pdp server | 0.00 | 8.00 |',
    '| socket writes (native, kernel included) | 2.00 | 6.00 |',
    '| npm secure-json-parse | 1.00 | 2.00 |',
  ]);
  // node internals: 0.03 and 0.04 µs per request, both under 0.05: summed into one row.
  assert.equal(lines[7], '| 1 other area | 0.03 | 0.04 |');
  assert.equal(lines[8], '| **busy, in all** | **3.03** | **16.0** |');
  assert.ok(!md.includes('(idle)'), md);
});
