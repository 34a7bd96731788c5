// Policy directory watching that survives files being replaced by rename (how editors save), the
// directory itself being deleted and recreated, and a symlinked directory being re-pointed.
import fs from 'node:fs';
import path from 'node:path';
import { listPolicyFiles } from '../engine';

/**
 * Calls `onChange` whenever something under `root` changes. One non-recursive watcher per directory
 * (new subdirectories are picked up on the next event): Node 20's `{ recursive: true }` on Linux
 * watches each file's inode, so a file replaced by rename (editors, config management, ConfigMap
 * updates) stops being watched after the first replacement and later edits are silently missed.
 *
 * `root` must exist when watching starts (else this throws). Afterwards nothing here throws: the
 * root's parent directory is watched too, for events naming the root, so a root that is deleted
 * (`rm -rf policies && cp -r new policies`), renamed away and back, or a symlink re-pointed to
 * another directory (`current -> releases/v2`, swapped with `mv -T`) is a change like any other;
 * so is a symlinked root's target deleted and recreated (its parent is watched as well).
 * The caller's reload then refuses a missing directory and the last good policy keeps serving.
 */
export function watchDirectories(root: string, onChange: () => void): { close(): void } {
  // Keyed by real path: directories reached through symbolic links (followed, as the loader does)
  // are watched once, and a link cycle ends.
  const watchers = new Map<string, fs.FSWatcher>();
  let closed = false;

  const changed = () => {
    if (closed) return;
    refresh();
    onChange();
  };

  /** Watches `dir` and what it reaches; records every real path reached in `reached`. */
  const walk = (dir: string, reached: Set<string>) => {
    let real: string;
    try {
      real = fs.realpathSync(dir);
    } catch {
      return; // gone (or a dangling link): the loader reports what matters
    }
    if (reached.has(real)) return; // walked in this pass already (a cycle, or two links to one place)
    reached.add(real);
    if (!watchers.has(real)) {
      let watcher: fs.FSWatcher;
      try {
        watcher = fs.watch(dir, changed);
      } catch {
        return; // vanished between realpath and watch; the parent's event brings it back
      }
      watcher.on('error', () => {
        watcher.close();
        if (watchers.get(real) === watcher) watchers.delete(real);
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
      if (entry.isDirectory()) walk(child, reached);
      else if (entry.isSymbolicLink()) {
        try {
          if (fs.statSync(child).isDirectory()) walk(child, reached);
        } catch {
          // a dangling link: the loader reports it if it is named like a policy file
        }
      }
    }
  };

  /** Watches what `root` reaches now, and stops watching what it no longer reaches (an old symlink target). */
  const refresh = () => {
    const reached = new Set<string>();
    walk(root, reached);
    for (const [real, watcher] of watchers) {
      if (!reached.has(real)) {
        watcher.close();
        watchers.delete(real);
      }
    }
    watchTarget();
  };

  // When `root` is a symbolic link, its target's name lives in another directory: deleting and
  // recreating the target (`rm -rf releases/v1 && cp -r new releases/v1`) is an event there, not in
  // the link's parent. The last target seen stays watched while it is gone, so its return is seen.
  const absolute = path.resolve(root);
  let target: { real: string; watcher: fs.FSWatcher } | undefined;
  const watchTarget = () => {
    let real: string;
    try {
      real = fs.realpathSync(absolute);
    } catch {
      return; // gone: keep watching where it was
    }
    if (target?.real === real) return;
    target?.watcher.close();
    target = undefined;
    if (real === absolute) return; // not a link: the parent watcher below sees it
    const name = path.basename(real);
    try {
      const watcher = fs.watch(path.dirname(real), (_event, filename) => {
        if (filename === null || filename.toString() === name) changed();
      });
      watcher.on('error', () => watcher.close());
      target = { real, watcher };
    } catch {
      // an unwatchable directory (permissions): changes inside the target are still seen
    }
  };

  refresh();
  if (watchers.size === 0) {
    target?.watcher.close();
    throw new Error(`cannot watch \`${root}\``); // missing, or not watchable
  }

  // The root's own name lives in its parent: deleting, recreating, renaming or re-pointing it is an
  // event there. Other names in the parent are ignored (it may be a busy directory).
  const name = path.basename(absolute);
  let parentWatcher: fs.FSWatcher | undefined;
  try {
    parentWatcher = fs.watch(path.dirname(absolute), (_event, filename) => {
      if (filename === null || filename.toString() === name) changed();
    });
    parentWatcher.on('error', () => parentWatcher?.close());
  } catch {
    // an unwatchable parent (permissions): changes inside the root are still seen
  }

  return {
    close() {
      closed = true;
      parentWatcher?.close();
      target?.watcher.close();
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}

/** Quiet time after the last file event before a reload. */
export const DEBOUNCE_MS = 250;
/** How many debounce periods a policy file that was emptied holds a reload back (2 s). */
const EMPTIED_FILE_WAITS = 8;

/** Size of every `*.hcl` file of the set under `dir` (as the loader lists them); empty when it cannot be listed. */
function policyFileSizes(dir: string): Map<string, number> {
  const sizes = new Map<string, number>();
  let listed: ReturnType<typeof listPolicyFiles>;
  try {
    listed = listPolicyFiles(dir);
  } catch {
    return sizes;
  }
  for (const file of listed) {
    if (file.problem) continue;
    try {
      sizes.set(file.rel, fs.statSync(file.absolute).size);
    } catch {
      // gone since it was listed: a removal
    }
  }
  return sizes;
}

/**
 * The reload a file change triggers: after DEBOUNCE_MS without events, unless a policy file that had
 * content is empty now. A file rewritten in place (`scp`, `curl … > file`, `kubectl exec … cat >`)
 * is empty between its truncation and its first bytes, which over a slow link can outlast the
 * debounce; loaded then, the empty file is a valid set without its rules, and a `deny` in it stopped
 * denying until the rest arrived (measured: DENY, ALLOW, DENY). Such a reload is held back for up to
 * 2 s; a file that stays empty longer was emptied on purpose and is loaded. Writing by rename (what
 * editors and ConfigMaps do) never shows an empty file at all.
 */
export function reloadOnSettledChanges(policyDir: string, reload: () => void): { changed(): void; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  let waits = 0;
  let before = policyFileSizes(policyDir);
  const fire = () => {
    const now = policyFileSizes(policyDir);
    const emptied = [...before].some(([file, size]) => size > 0 && now.get(file) === 0);
    if (emptied && waits < EMPTIED_FILE_WAITS) {
      waits++;
      timer = setTimeout(fire, DEBOUNCE_MS);
      return;
    }
    waits = 0;
    before = now;
    reload();
  };
  return {
    changed() {
      clearTimeout(timer);
      timer = setTimeout(fire, DEBOUNCE_MS);
    },
    cancel() {
      clearTimeout(timer);
    },
  };
}
