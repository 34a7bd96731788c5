// The operator's security files for `pdp serve` (--tls-cert, --tls-key, --client-ca, --tokens):
// checked before anything is opened, and loaded (TLS, client certificates, tokens) once the audit
// side is open.
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { loadTrustBundle, openTokenStore } from '../identity';
import { UsageError, type CliIo } from './io';
import type { SecurityFiles, SecurityLimits } from './serve-options';

/**
 * The files named by --tls-cert, --tls-key, --client-ca and --tokens, checked before anything is
 * opened: each must be readable (a new token store needs an existing directory), the key must match
 * the certificate, and the CA bundle must hold CA certificates. Throws a UsageError naming the flag.
 */
export function checkSecurityFiles(values: Record<string, string | boolean | undefined>, cwd: string): void {
  const read = (flag: string): Buffer | undefined => {
    const given = values[flag] as string | undefined;
    if (given === undefined) return undefined;
    const file = path.resolve(cwd, given);
    try {
      if (fs.statSync(file).isDirectory()) throw new UsageError(`--${flag} \`${given}\` is a directory; expected a PEM file`);
      return fs.readFileSync(file);
    } catch (e) {
      if (e instanceof UsageError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      throw new UsageError(`--${flag} \`${given}\` ${code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read (permission denied)' : `cannot be read (${code ?? (e as Error).message})`}`);
    }
  };
  const cert = read('tls-cert');
  const key = read('tls-key');
  const ca = read('client-ca');
  if (cert && key) {
    try {
      tls.createSecureContext({ cert, key });
    } catch (e) {
      const reason = (e as Error).message;
      if (/key values mismatch/i.test(reason)) throw new UsageError(`--tls-key \`${String(values['tls-key'])}\` does not match the certificate in --tls-cert \`${String(values['tls-cert'])}\``);
      throw new UsageError(`--tls-cert \`${String(values['tls-cert'])}\` and --tls-key \`${String(values['tls-key'])}\` are not a usable PEM certificate and private key (${reason.replace(/^error:[0-9A-F]+:/i, '')})`);
    }
  }
  if (ca) {
    try {
      loadTrustBundle(ca.toString('utf8'), `\`${String(values['client-ca'])}\``);
    } catch (e) {
      throw new UsageError(`--client-ca: ${(e as Error).message}`);
    }
  }
  const tokens = values.tokens as string | undefined;
  if (tokens !== undefined) {
    const file = path.resolve(cwd, tokens);
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(file);
    } catch {
      stat = undefined;
    }
    if (stat?.isDirectory()) throw new UsageError(`--tokens \`${tokens}\` is a directory; expected a token store file (from \`pdp token create\`)`);
    if (!stat) {
      const dir = path.dirname(file);
      let dirOk = false;
      try {
        dirOk = fs.statSync(dir).isDirectory();
      } catch {
        dirOk = false;
      }
      if (!dirOk) throw new UsageError(`--tokens \`${tokens}\`: the directory \`${path.dirname(tokens)}\` does not exist; create the store with \`pdp token create --tokens ${tokens}\` (which creates it) or fix the path`);
    }
  }
}

/**
 * TLS, client certificates and tokens: see src/server/auth.ts. The token store (SQLite) is opened
 * here, not by the server, and closed by the returned `close()` after the server's own part.
 */
export async function loadSecurity(files: SecurityFiles, limits: SecurityLimits, io: CliIo) {
  const { createSecurity } = await import('../server/auth');
  const tokensFile = files.tokens;
  const tokens = tokensFile ? openTokenStore(path.resolve(io.cwd, tokensFile)) : undefined;
  let security: ReturnType<typeof createSecurity>;
  try {
    security = createSecurity({
      cwd: io.cwd,
      tlsCert: files['tls-cert'],
      tlsKey: files['tls-key'],
      clientCa: files['client-ca'],
      ...(tokens ? { tokens } : {}),
      ...limits,
      // The window in which failures count follows the lockout, as in the design (15m and 15m).
      ...(limits.lockoutMs !== undefined ? { windowMs: limits.lockoutMs } : {}),
    });
  } catch (e) {
    tokens?.close();
    throw e;
  }
  return {
    ...security,
    close(): void {
      security.close();
      tokens?.close();
    },
  };
}

export type ServeSecurity = Awaited<ReturnType<typeof loadSecurity>>;
