// Short-lived bearer tokens (the design's "< 1 hour" rule), in their own SQLite file.
//
// Token text: `pdp_<id>_<secret>`: id is 12 characters of [A-Za-z0-9] (not secret; it names the
// token in `pdp token list` and `revoke`), secret is 32 random bytes in base64url (43 characters).
// Only sha256(secret) is stored. Validation reads the row on every call (no cache), so a revocation
// by another process is seen at once.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import Database from 'better-sqlite3';
import { describeCharacter, unseenIdentityCharacter } from '../syntax/characters';
import { isSpiffeId } from '../syntax/identity-pattern';
import { containsToken, TOKEN_PREFIX, TOKEN_RE } from './token-format';

export const DEFAULT_TOKENS_FILE = 'tokens.db';
export const DEFAULT_TOKEN_TTL_MS = 60 * 60 * 1000;
export const MAX_TOKEN_TTL_MS = 60 * 60 * 1000;
const ID_LENGTH = 12;
const SECRET_BYTES = 32;
const SECRET_LENGTH = 43; // base64url of 32 bytes, unpadded
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const ID_RE = /^[A-Za-z0-9]{12}$/;
const MAX_IDENTITY_LENGTH = 1024;
const MAX_DESCRIPTION_LENGTH = 1024;

/** A refusal in words (bad identity, ttl too long, unknown id). Never holds a token. */
export class TokenError extends Error {
  constructor(message: string, readonly code: 'invalid' | 'ttl' | 'not-found' | 'store') {
    super(message);
    this.name = 'TokenError';
  }
}

export interface CreatedToken {
  /** The full token text. Shown once; not recoverable from the store. */
  token: string;
  id: string;
  identity: string;
  expiresAt: Date;
}

export type TokenStatus = 'active' | 'expired' | 'revoked';

export interface TokenRow {
  id: string;
  identity: string;
  description: string | null;
  createdAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  status: TokenStatus;
}

export type TokenFailureCode = 'malformed' | 'unknown' | 'mismatch' | 'expired' | 'revoked';

export type TokenValidation =
  | { ok: true; identity: string; id: string; expiresAt: Date }
  /**
   * `id` and `identity` are set when the token names a real token (wrong secret, revoked, expired):
   * the identity that was attempted, for the audit row. Neither ever goes into an answer.
   */
  | { ok: false; code: TokenFailureCode; reason: string; id?: string; identity?: string };

export interface TokenStore {
  readonly path: string;
  create(options: { identity: string; ttlMs?: number; now?: Date; description?: string }): CreatedToken;
  list(now?: Date): TokenRow[];
  /** Marks a token revoked. Returns false when it was revoked already. Throws TokenError for an unknown id. */
  revoke(id: string, now?: Date): boolean;
  validate(token: string, now?: Date): TokenValidation;
  /** Deletes rows that expired (or were revoked) before `before`. Returns how many. */
  prune(before: Date): number;
  close(): void;
}

/** A token's note (`--description`): bounded, and never a token itself. */
export function checkTokenDescription(description: string): string | undefined {
  if (description.length > MAX_DESCRIPTION_LENGTH) return `description is longer than ${MAX_DESCRIPTION_LENGTH} characters`;
  // The store keeps hashes only, so that a stolen copy yields no usable token: not even one pasted here.
  if (containsToken(description)) return 'description holds a pdp token (`pdp_<id>_<secret>`); refer to a token by its id (`pdp token list`), never by the token itself';
  return undefined;
}

/** The identity a token stands for: a plain identity string, not a pattern or a role reference. */
export function checkTokenIdentity(identity: unknown): string | undefined {
  if (typeof identity !== 'string' || identity.length === 0) return 'identity must be a non-empty string (e.g. `team:ops` or a SPIFFE ID)';
  if (identity.length > MAX_IDENTITY_LENGTH) return `identity is longer than ${MAX_IDENTITY_LENGTH} characters`;
  // Checked before anything quotes the identity: a pasted token must not be echoed or stored.
  if (containsToken(identity)) return 'identity holds a pdp token (`pdp_<id>_<secret>`); an identity names who holds a token, e.g. `team:ops`, and a token is never stored in clear';
  const unseen = unseenIdentityCharacter(identity);
  if (unseen?.kind === 'invisible') return `identity contains the invisible character ${describeCharacter(unseen.char)}; remove it (your terminal may not show it)`;
  if (unseen) return `identity \`${identity}\` contains whitespace or control characters`;
  if (/[*{}]/.test(identity)) return `identity \`${identity}\` contains \`*\`, \`{\` or \`}\`; a token stands for one identity, not a pattern`;
  if (identity === 'anonymous') return 'identity `anonymous` is reserved for unauthenticated requests';
  if (identity.startsWith('role:')) return `identity \`${identity}\` looks like a role reference; roles are granted in policy, not to tokens`;
  if (/^spiffe:/i.test(identity) && !isSpiffeId(identity)) return `identity \`${identity}\` is not a valid SPIFFE ID`;
  return undefined;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function newId(): string {
  let id = '';
  for (let i = 0; i < ID_LENGTH; i++) id += ID_ALPHABET[randomInt(ID_ALPHABET.length)];
  return id;
}

interface DbRow {
  id: string;
  secret_sha256: Buffer;
  identity: string;
  description: string | null;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tokens (
  id            TEXT PRIMARY KEY,
  secret_sha256 BLOB NOT NULL,
  identity      TEXT NOT NULL,
  description   TEXT,
  created_at    INTEGER NOT NULL,
  expires_at    INTEGER NOT NULL,
  revoked_at    INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_expires_at ON tokens (expires_at);
`;

export interface OpenTokenStoreOptions {
  /** Create the file when missing (default true). With false, a missing file is a TokenError. */
  create?: boolean;
}

export function openTokenStore(file: string = DEFAULT_TOKENS_FILE, options: OpenTokenStoreOptions = {}): TokenStore {
  const create = options.create ?? true;
  const existed = fs.existsSync(file);
  if (!existed) {
    if (!create) throw new TokenError(`no token store at \`${file}\`; create a token first with \`pdp token create\``, 'store');
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    // Created 0600 before SQLite opens it: it holds only hashes, but nobody else needs to read it.
    fs.closeSync(fs.openSync(file, 'a', 0o600));
  }
  let db: Database.Database;
  try {
    db = new Database(file, { fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    db.pragma('journal_mode = WAL');
    db.exec(SCHEMA);
  } catch (e) {
    throw new TokenError(`cannot open the token store \`${file}\`: ${(e as Error).message}`, 'store');
  }

  const insert = db.prepare('INSERT INTO tokens (id, secret_sha256, identity, description, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)');
  const byId = db.prepare<[string], DbRow>('SELECT * FROM tokens WHERE id = ?');
  const all = db.prepare<[], DbRow>('SELECT * FROM tokens ORDER BY created_at, id');
  const setRevoked = db.prepare('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
  const pruneStmt = db.prepare('DELETE FROM tokens WHERE expires_at < ? OR (revoked_at IS NOT NULL AND revoked_at < ?)');
  const dummyHash = sha256('pdp-token-dummy');

  const status = (row: DbRow, t: number): TokenStatus => (row.revoked_at !== null ? 'revoked' : t >= row.expires_at ? 'expired' : 'active');

  return {
    path: file,

    create({ identity, ttlMs = DEFAULT_TOKEN_TTL_MS, now = new Date(), description }) {
      if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new TypeError('create: `now` must be a valid Date');
      const bad = checkTokenIdentity(identity);
      if (bad) throw new TokenError(bad, 'invalid');
      if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new TokenError('ttl must be a positive duration', 'ttl');
      if (ttlMs > MAX_TOKEN_TTL_MS) throw new TokenError(`ttl is longer than the maximum of 1h (tokens are short-lived; create a new one when it expires)`, 'ttl');
      const badDescription = description === undefined ? undefined : checkTokenDescription(description);
      if (badDescription) throw new TokenError(badDescription, 'invalid');
      const secret = randomBytes(SECRET_BYTES).toString('base64url');
      const t = now.getTime();
      const expiresAt = t + ttlMs;
      for (let attempt = 0; ; attempt++) {
        const id = newId();
        try {
          insert.run(id, sha256(secret), identity, description ?? null, t, expiresAt);
          return { token: `${TOKEN_PREFIX}${id}_${secret}`, id, identity, expiresAt: new Date(expiresAt) };
        } catch (e) {
          // An id collision (62^12 ids) is astronomically rare; retry a few times, then give up.
          if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY' && attempt < 3) continue;
          throw new TokenError(`cannot store the token in \`${file}\`: ${(e as Error).message}`, 'store');
        }
      }
    },

    list(now = new Date()) {
      const t = now.getTime();
      return all.all().map((row) => ({
        id: row.id,
        identity: row.identity,
        description: row.description,
        createdAt: new Date(row.created_at),
        expiresAt: new Date(row.expires_at),
        revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
        status: status(row, t),
      }));
    },

    revoke(id, now = new Date()) {
      // The argument is not echoed: someone may paste a whole token (secret included) here.
      if (typeof id !== 'string' || !ID_RE.test(id)) throw new TokenError('that is not a token id (12 letters and digits, as `pdp token list` shows)', 'not-found');
      const changed = setRevoked.run(now.getTime(), id).changes;
      if (changed > 0) return true;
      if (!byId.get(id)) throw new TokenError(`no token with id \`${id}\``, 'not-found');
      return false;
    },

    validate(token, now = new Date()) {
      if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new TypeError('validate: `now` must be a valid Date');
      const m = typeof token === 'string' ? TOKEN_RE.exec(token) : null;
      if (!m) return { ok: false, code: 'malformed', reason: 'token is malformed (expected `pdp_<id>_<secret>`)' };
      const id = m[1]!;
      const given = sha256(m[2]!);
      const row = byId.get(id);
      if (!row) {
        timingSafeEqual(given, dummyHash); // same work as a real comparison
        return { ok: false, code: 'unknown', reason: 'token is unknown' };
      }
      const stored = Buffer.from(row.secret_sha256);
      const match = stored.length === given.length && timingSafeEqual(stored, given);
      const attempted = { id, identity: row.identity };
      if (!match) return { ok: false, code: 'mismatch', reason: `token \`${id}\` has a wrong secret`, ...attempted };
      if (row.revoked_at !== null) return { ok: false, code: 'revoked', reason: `token \`${id}\` was revoked at ${new Date(row.revoked_at).toISOString()}`, ...attempted };
      if (now.getTime() >= row.expires_at) return { ok: false, code: 'expired', reason: `token \`${id}\` expired at ${new Date(row.expires_at).toISOString()}`, ...attempted };
      return { ok: true, identity: row.identity, id, expiresAt: new Date(row.expires_at) };
    },

    prune(before) {
      const t = before.getTime();
      return pruneStmt.run(t, t).changes;
    },

    close() {
      if (db.open) db.close();
    },
  };
}

/** The token id of a token text, for logs (the id is not secret); undefined for anything malformed. */
export function tokenId(token: string): string | undefined {
  const m = TOKEN_RE.exec(token);
  return m ? m[1] : undefined;
}

export { SECRET_LENGTH as TOKEN_SECRET_LENGTH };
