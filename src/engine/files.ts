// Which files make a policy set, and reading them. The spec says "every `*.hcl` file under one
// directory (recursively)"; the choices it leaves open are made here, once, for every command and the
// server (docs/policy-language.md, "Policy files on disk"):
//
// - Symbolic links are followed, to files and to directories: Kubernetes mounts a ConfigMap as links
//   (`a.hcl -> ..data/a.hcl`), and skipping them would drop grants without a word. A directory reached
//   twice (a link cycle, two links to one place) is walked once, and a file reached by two paths is
//   read once, under the first path in sorted order.
// - Only inside the directory: a link whose target lies outside it is refused, not read. CI runs
//   `pdp check` on pull requests from anyone, and diagnostics quote the text they complain about: a
//   link to `/proc/self/environ` or a key file would print the job's secrets into the build log.
// - Names starting with `.` are skipped: editor lock and swap files, and the `..data` directory and its
//   timestamped siblings in a ConfigMap mount, which the visible links already cover.
// - A file that cannot be read, a dangling `*.hcl` link, a directory that cannot be listed, or text
//   that is not UTF-8 becomes a diagnostic on that path, never an exception: the set is refused with
//   the reason, and no other file's problems are hidden. A leading UTF-8 byte-order mark is dropped.
import fs from 'node:fs';
import path from 'node:path';
import { error, type Diagnostic } from '../diagnostics';

export interface PolicySource {
  /** The name rules and diagnostics use: relative to the policy directory, `/`-separated. */
  path: string;
  text: string;
  /** Why the file could not be used (unreadable, not UTF-8); the set is refused when present. */
  problem?: Diagnostic;
  /** The file started with a UTF-8 byte-order mark, which `text` leaves out (fmt drops it). */
  bom?: boolean;
}

const atStart = (file: string) => ({ file, start: { offset: 0, line: 1, column: 1 }, end: { offset: 0, line: 1, column: 1 } });

/**
 * Why a file operation failed, in words (`no such file or directory`, `permission denied`): the
 * system's own description, which node puts in the message as `CODE: words, syscall 'path'` (the
 * absolute path left out, so the caller names the path as the user gave it).
 */
export function errnoWords(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (!err.code) return err.message;
  const m = err.message.startsWith(`${err.code}: `) ? /^[^:]+: ([^,]+),/.exec(err.message) : null;
  return m ? m[1]! : err.code;
}

/** The code and its words, `ENOENT (no such file or directory)`: for diagnostics on files inside a set. */
export function errnoText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (!err.code) return err.message;
  const words = errnoWords(e);
  return words === err.code ? err.code : `${err.code} (${words})`;
}

export function readErrorSource(rel: string, what: string, e: unknown): PolicySource {
  return { path: rel, text: '', problem: error('read-error', `cannot read ${what} \`${rel}\`: ${errnoText(e)}`, atStart(rel)) };
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });
const UTF8_LOSSY = new TextDecoder('utf-8');

/** Bytes → policy text: UTF-8 only, a leading byte-order mark dropped; anything else is a diagnostic at the first bad byte. */
export function decodePolicyBytes(bytes: Uint8Array, rel: string): PolicySource {
  const bom = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
  const body = bom ? bytes.subarray(3) : bytes;
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    const { at: bad, why } = firstInvalidUtf8(body);
    // The line and column of the bad byte; a line break is LF, CRLF or a bare CR (src/syntax/lexer.ts).
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < bad; i++) {
      const b = body[i]!;
      if (b === 0x0a || (b === 0x0d && body[i + 1] !== 0x0a)) {
        line++;
        lineStart = i + 1;
      }
    }
    const column = UTF8_LOSSY.decode(body.subarray(lineStart, bad)).length + 1;
    const text = UTF8_LOSSY.decode(body);
    const offset = UTF8_LOSSY.decode(body.subarray(0, bad)).length;
    const at = { offset, line, column };
    // Windows Notepad and PowerShell `>` write UTF-16 with a byte-order mark: say so.
    const utf16 = (body[0] === 0xff && body[1] === 0xfe) || (body[0] === 0xfe && body[1] === 0xff);
    const hint = utf16 ? 'the file looks like UTF-16 (it starts with a UTF-16 byte-order mark); policy files are UTF-8: re-save it in that encoding' : 'policy files are UTF-8; re-save the file in that encoding';
    return {
      path: rel,
      text,
      problem: error('invalid-encoding', `not valid UTF-8: ${why}`, { file: rel, start: at, end: { ...at, offset: offset + 1, column: column + 1 } }, hint),
      ...(bom ? { bom } : {}),
    };
  }
  const utf16 = utf16WithoutBom(body);
  if (utf16) {
    // Valid UTF-8 byte for byte (ASCII and NULs), but read so it is a NUL between every two characters:
    // one `invalid-character` error per character of the file, none saying why.
    const at = { offset: 0, line: 1, column: 1 };
    return {
      path: rel,
      text,
      problem: error('invalid-encoding', `not UTF-8: the file looks like UTF-16 (${utf16}) without a byte-order mark; every other byte is \`0x00\``,
        { file: rel, start: at, end: { offset: 0, line: 1, column: 2 } }, 'policy files are UTF-8; re-save the file in that encoding'),
      ...(bom ? { bom } : {}),
    };
  }
  return { path: rel, text, ...(bom ? { bom } : {}) };
}

/**
 * 'little-endian' or 'big-endian' when `bytes` read as UTF-16 without a byte-order mark: in the first
 * 4 KiB, half or more of the bytes at one parity are NUL (the high byte of an ASCII character) and
 * hardly any at the other. A UTF-8 policy holds no NUL at all, so ordinary files cost one indexOf.
 */
function utf16WithoutBom(bytes: Uint8Array): 'little-endian' | 'big-endian' | undefined {
  if (bytes.indexOf(0) < 0) return undefined;
  const pairs = Math.min(bytes.length, 4096) >> 1;
  if (pairs < 2) return undefined;
  let even = 0;
  let odd = 0;
  for (let i = 0; i < pairs * 2; i += 2) {
    if (bytes[i] === 0) even++;
    if (bytes[i + 1] === 0) odd++;
  }
  if (odd * 2 >= pairs && even * 8 <= odd) return 'little-endian';
  if (even * 2 >= pairs && odd * 8 <= even) return 'big-endian';
  return undefined;
}

const hex = (b: number) => `\`0x${b.toString(16).toUpperCase().padStart(2, '0')}\``;

/**
 * The first byte that does not belong to a well-formed UTF-8 sequence (`at` is bytes.length when
 * there is none) and why, in words: a byte that cannot start a character, a lead byte whose
 * continuation is missing (the file ends, or the next byte does not continue it), or a sequence
 * that encodes no character (overlong, a surrogate, past U+10FFFF).
 */
function firstInvalidUtf8(bytes: Uint8Array): { at: number; why: string } {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    let need: number;
    let min: number;
    if (b < 0x80) { i++; continue; }
    else if (b >= 0xc2 && b <= 0xdf) { need = 1; min = 0x80; }
    else if (b >= 0xe0 && b <= 0xef) { need = 2; min = 0x800; }
    else if (b >= 0xf0 && b <= 0xf4) { need = 3; min = 0x10000; }
    else if (b >= 0x80 && b <= 0xbf) return { at: i, why: `byte ${hex(b)} does not start a character (it can only continue one)` };
    else return { at: i, why: `byte ${hex(b)} does not start or continue a character` };
    const starts = `byte ${hex(b)} starts a ${need + 1}-byte character but`;
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      if (i + k >= bytes.length) return { at: i, why: `${starts} the file ends before it is complete` };
      const c = bytes[i + k]!;
      if ((c & 0xc0) !== 0x80) return { at: i, why: `${starts} ${hex(c)} does not continue it` };
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      const seq = Array.from(bytes.subarray(i, i + need + 1), (x) => x.toString(16).toUpperCase().padStart(2, '0')).join(' ');
      const what = cp < min ? 'are an overlong encoding' : cp > 0x10ffff ? 'encode a code point past U+10FFFF' : 'encode a UTF-16 surrogate, not a character';
      return { at: i, why: `bytes \`${seq}\` ${what}` };
    }
    i += need + 1;
  }
  return { at: bytes.length, why: '' };
}

/** Why a policy file is refused unread: a FIFO would block the read (for ever, with no writer), a device or socket holds no policy. */
const notRegular = (rel: string): PolicySource =>
  ({ path: rel, text: '', problem: error('read-error', `cannot read policy file \`${rel}\`: it is not a regular file`, atStart(rel)) });

/**
 * One file, read and decoded; `rel` is how it is named in rules and diagnostics. Only a regular file
 * is read: it is opened without blocking and checked through its descriptor, so a FIFO named on the
 * command line, or a file replaced by one after the directory was listed, is refused, not waited on.
 */
export function readPolicyFile(absolute: string, rel: string): PolicySource {
  let bytes: Buffer;
  let fd: number | undefined;
  try {
    fd = fs.openSync(absolute, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    if (!fs.fstatSync(fd).isFile()) return notRegular(rel);
    bytes = fs.readFileSync(fd);
  } catch (e) {
    return readErrorSource(rel, 'policy file', e);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  return decodePolicyBytes(bytes, rel);
}

export interface ListedFile {
  /** Relative to the directory, `/`-separated. */
  rel: string;
  absolute: string;
  /** Set when the path could not be used (a dangling link, an unlistable directory). */
  problem?: PolicySource;
}

/**
 * Every `*.hcl` file under `root`, recursively, sorted by path, following symbolic links that stay
 * inside `root`, skipping names that start with `.`, each file and directory once. Throws only when
 * `root` itself cannot be listed (the caller's "cannot read policy directory").
 */
export function listPolicyFiles(root: string): ListedFile[] {
  const found: ListedFile[] = [];
  const walkedDirs = new Set<string>();
  const rootReal = fs.realpathSync(root);
  const inside = (real: string) => real === rootReal || real.startsWith(rootReal.endsWith(path.sep) ? rootReal : rootReal + path.sep);
  const refuse = (rel: string, abs: string, message: string, hint?: string) => {
    found.push({ rel, absolute: abs, problem: { path: rel, text: '', problem: error('read-error', message, atStart(rel), hint) } });
  };
  const walk = (relative: string, absolute: string, entries: fs.Dirent[]) => {
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const rel = relative ? `${relative}/${entry.name}` : entry.name;
      const abs = path.join(absolute, entry.name);
      const named = entry.name.endsWith('.hcl');
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        let real: string;
        try {
          real = fs.realpathSync(abs);
          const target = fs.statSync(real);
          isDir = target.isDirectory();
          isFile = target.isFile();
        } catch (e) {
          // A dangling link named like a policy file was meant to be one: refuse, do not skip.
          if (named) found.push({ rel, absolute: abs, problem: readErrorSource(rel, 'policy file', e) });
          continue;
        }
        // Refused rather than skipped: a link that leads out was meant to add something (see the top).
        if (!inside(real) && (isDir || named)) {
          refuse(
            rel, abs,
            `cannot read ${isDir ? 'directory' : 'policy file'} \`${rel}\`: it is a symbolic link to \`${fs.readlinkSync(abs)}\`, outside the policy directory; links are followed only within it`,
            'name a directory that holds every policy file (links inside it are fine), or copy the file in',
          );
          continue;
        }
      }
      if (named && !isFile && !isDir) {
        // A FIFO would block the read; a device or socket holds no policy.
        found.push({ rel, absolute: abs, problem: notRegular(rel) });
      } else if (isFile && named) found.push({ rel, absolute: abs });
      else if (isDir) enter(rel, abs);
    }
  };
  const enter = (rel: string, abs: string) => {
    let real: string;
    let entries: fs.Dirent[];
    try {
      real = fs.realpathSync(abs);
      entries = fs.readdirSync(abs, { withFileTypes: true });
    } catch (e) {
      found.push({ rel, absolute: abs, problem: readErrorSource(rel, 'directory', e) });
      return;
    }
    if (walkedDirs.has(real)) return;
    walkedDirs.add(real);
    walk(rel, abs, entries);
  };
  walkedDirs.add(rootReal);
  walk('', root, fs.readdirSync(root, { withFileTypes: true }));
  found.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  // One file reached by two paths (two links, a link and its target) is read once.
  const seenFiles = new Set<string>();
  return found.filter((f) => {
    if (f.problem) return true;
    let real: string;
    try {
      real = fs.realpathSync(f.absolute);
    } catch {
      return true; // reading it will report why
    }
    if (seenFiles.has(real)) return false;
    seenFiles.add(real);
    return true;
  });
}

/** Every policy file under `dir`, read (see the top of this file for what that means). */
export function readPolicyDir(dir: string): PolicySource[] {
  return listPolicyFiles(dir).map((f) => f.problem ?? readPolicyFile(f.absolute, f.rel));
}
