// A fingerprint of the compiled engine code (every .js under the dist/src next to this file), so a run
// can show that all its processes loaded the same build.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export function hashTree(dir: string): string {
  const hash = createHash('sha256');
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.name.endsWith('.js')) hash.update(r).update(fs.readFileSync(path.join(dir, r)));
    }
  };
  walk('');
  return hash.digest('hex').slice(0, 12);
}

/** The hash of the dist/src this process loads its engine from. */
export function loadedEngineHash(): string {
  return hashTree(path.resolve(__dirname, '../src'));
}
