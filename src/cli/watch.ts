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
  const watchers = new Map<string, fs.FSWatcher>();
  const add = (dir: string) => {
    if (!watchers.has(dir)) {
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
        watchers.delete(dir);
      });
      watchers.set(dir, watcher);
    }
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) if (entry.isDirectory()) add(path.join(dir, entry.name));
  };
  add(root);
  return {
    close() {
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}
