// The real CLI as a subprocess (`node bin/pdp.js …`, dist/ built by `npm test` first) and a
// scratch directory for the files a test writes, removed when the test file ends.
import { after } from 'node:test';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const BIN = path.join(REPO_ROOT, 'bin', 'pdp.js');

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `pdp ARGS` with `PDP_POLICIES` unset (so only the arguments choose the policies). */
export function runPdp(args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Run {
  const env = { ...process.env };
  delete env.PDP_POLICIES;
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? REPO_ROOT, encoding: 'utf8', env, timeout: options.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A fresh temporary directory (removed when the test that made it ends; made at top level, when the file ends) and a writer of files inside it. */
export function scratchDir(prefix: string): { dir: string; write(rel: string, content: string | Buffer): string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    write(rel, content) {
      const file = path.join(dir, rel);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, content);
      return file;
    },
  };
}

/**
 * Spawn options under which a file mode can refuse reading: root reads anything, so as root the CLI
 * runs as `nobody` (with `work` opened to it); undefined where this machine does not let `nobody`
 * run it, and the test should skip.
 */
export function unprivilegedOptions(work: string): { uid?: number; gid?: number } | undefined {
  if (process.getuid?.() !== 0) return {};
  const options = { uid: 65534, gid: 65534 };
  fs.chmodSync(work, 0o755);
  const probe = spawnSync(process.execPath, [BIN, '--help'], { ...options, cwd: work, encoding: 'utf8' });
  return probe.status === 0 ? options : undefined;
}
