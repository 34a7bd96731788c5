// Policy directory watching that survives files being replaced by rename (how editors save).
import fs from 'node:fs';
import path from 'node:path';

/**
 * Calls `onChange` whenever something under `root` changes. One non-recursive watcher per directory
 * (new subdirectories are picked up on the next event): Node 20's `{ recursive: true }` on Linux
 * watches each file's inode, so a file replaced by rename (editors, config management, ConfigMap
 * updates) stops being watched after the first replacement and later edits are silently missed.
 */
export function watchDirectories(root: string, onChange: () => void): { close(): void } {
  // Keyed by real path: directories reached through symbolic links (followed, as the loader does)
  // are watched once, and a link cycle ends.
  const watchers = new Map<string, fs.FSWatcher>();
  const add = (dir: string, visited = new Set<string>()) => {
    let real: string;
    try {
      real = fs.realpathSync(dir);
    } catch {
      if (dir === root) throw new Error(`cannot watch \`${root}\``);
      return;
    }
    if (visited.has(real)) return; // walked in this pass already (a cycle, or two links to one place)
    visited.add(real);
    if (!watchers.has(real)) {
      let watcher: fs.FSWatcher;
      try {
        watcher = fs.watch(dir, () => {
          add(root);
          onChange();
        });
      } catch (e) {
        if (dir === root) throw e;
        return;
      }
      watcher.on('error', () => {
        watcher.close();
        watchers.delete(real);
      });
      watchers.set(real, watcher);
    }
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const child = path.join(dir, entry.name);
      if (entry.isDirectory()) add(child, visited);
      else if (entry.isSymbolicLink()) {
        try {
          if (fs.statSync(child).isDirectory()) add(child, visited);
        } catch {
          // a dangling link: the loader reports it if it is named like a policy file
        }
      }
    }
  };
  add(root);
  return {
    close() {
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}
