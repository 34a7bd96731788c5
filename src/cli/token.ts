// `pdp token create|list|revoke`: short-lived bearer tokens (see docs/identity.md).
import * as path from 'node:path';
import {
  DEFAULT_TOKENS_FILE,
  DEFAULT_TOKEN_TTL_MS,
  MAX_TOKEN_TTL_MS,
  TokenError,
  checkTokenDescription,
  checkTokenIdentity,
  openTokenStore,
  tokenId,
  type TokenRow,
} from '../identity/tokens';
import { formatDuration } from '../identity/ca';
import { formatOption, parse, parseDuration, refuseEmptyPaths } from './args';
import { EXIT_FINDING, EXIT_OK, UsageError, type CliIo, type Command } from './io';

export const HELP = `usage: pdp token create --identity ID [--ttl ${formatDuration(DEFAULT_TOKEN_TTL_MS)}] [--description TEXT] [options]
       pdp token list [options]
       pdp token revoke ID [options]

Short-lived bearer tokens (\`Authorization: Bearer pdp_…\`). A token stands for one identity, e.g.
\`team:ops\` or a SPIFFE ID. Only a SHA-256 hash of its secret is stored, so the token is shown
once, by \`create\`, and never again.

create    prints the token on stdout (and its id and expiry on stderr)
list      every token's id, identity, status and expiry; never a secret
revoke    revokes a token by its id (as \`list\` shows); takes effect at once

options:
  --identity ID       create: the identity the token stands for
  --ttl DUR           create: lifetime, default ${formatDuration(DEFAULT_TOKEN_TTL_MS)}, at most ${formatDuration(MAX_TOKEN_TTL_MS)}
  --description TEXT  create: a note shown by \`list\`
  --tokens FILE       the token store (default: $PDP_TOKENS or ./${DEFAULT_TOKENS_FILE})
  --format FORMAT     text (default) or json

Exit codes: 0 done, 1 failure (no such token, store unreadable), 2 bad usage.
`;

const COMMON = { tokens: { type: 'string' }, format: { type: 'string' } } as const;

function storePath(values: { tokens?: string }, io: CliIo): string {
  refuseEmptyPaths([], { tokens: values.tokens });
  return path.resolve(io.cwd, values.tokens ?? (io.env.PDP_TOKENS || DEFAULT_TOKENS_FILE));
}

function failed(e: unknown, io: CliIo): number {
  if (e instanceof TokenError) {
    io.stderr.write(`pdp token: ${e.message}\n`);
    return EXIT_FINDING;
  }
  throw e;
}

export const run: Command = async (args, io) => {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'create': return create(rest, io);
    case 'list': return list(rest, io);
    case 'revoke': return revoke(rest, io);
    default:
      if (sub === undefined || sub.startsWith('-')) throw new UsageError('expected a subcommand: `create`, `list` or `revoke`');
      throw new UsageError(`unknown subcommand \`${sub}\`; expected \`create\`, \`list\` or \`revoke\``);
  }
};

async function create(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { ...COMMON, identity: { type: 'string' }, ttl: { type: 'string' }, description: { type: 'string' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument \`${positionals[0]}\``);
  const format = formatOption(values.format, ['text', 'json'], 'text');
  if (values.identity === undefined) throw new UsageError('`--identity` is required, e.g. `--identity team:ops`');
  const bad = checkTokenIdentity(values.identity) ?? (values.description === undefined ? undefined : checkTokenDescription(values.description));
  if (bad) throw new UsageError(bad);
  const ttlMs = values.ttl === undefined ? DEFAULT_TOKEN_TTL_MS : parseDuration(values.ttl, '--ttl');
  if (ttlMs <= 0) throw new UsageError('`--ttl` must be longer than zero');
  if (ttlMs > MAX_TOKEN_TTL_MS) throw new UsageError(`\`--ttl ${values.ttl}\` is longer than the maximum of \`${formatDuration(MAX_TOKEN_TTL_MS)}\`; tokens are short-lived, create a new one when it expires`);
  let created;
  try {
    const store = openTokenStore(storePath(values, io));
    try {
      created = store.create({ identity: values.identity, ttlMs, now: new Date(), description: values.description });
    } finally {
      store.close();
    }
  } catch (e) {
    return failed(e, io);
  }
  if (format === 'json') {
    io.stdout.write(`${JSON.stringify({ id: created.id, token: created.token, identity: created.identity, expires_at: created.expiresAt.toISOString() })}\n`);
  } else {
    io.stdout.write(`${created.token}\n`);
    io.stderr.write(`token \`${created.id}\` for \`${created.identity}\` expires at ${created.expiresAt.toISOString()}; it is shown only this once\n`);
  }
  return EXIT_OK;
}

function rowJson(r: TokenRow) {
  return {
    id: r.id,
    identity: r.identity,
    status: r.status,
    description: r.description,
    created_at: r.createdAt.toISOString(),
    expires_at: r.expiresAt.toISOString(),
    revoked_at: r.revokedAt ? r.revokedAt.toISOString() : null,
  };
}

async function list(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, COMMON);
  if (positionals.length > 0) throw new UsageError(`unexpected argument \`${positionals[0]}\``);
  const format = formatOption(values.format, ['text', 'json'], 'text');
  let rows: TokenRow[];
  try {
    const store = openTokenStore(storePath(values, io), { create: false });
    try {
      rows = store.list(new Date());
    } finally {
      store.close();
    }
  } catch (e) {
    return failed(e, io);
  }
  if (format === 'json') {
    io.stdout.write(`${JSON.stringify({ tokens: rows.map(rowJson) }, null, 2)}\n`);
    return EXIT_OK;
  }
  if (rows.length === 0) {
    io.stderr.write('no tokens\n');
    return EXIT_OK;
  }
  const table = [['ID', 'IDENTITY', 'STATUS', 'EXPIRES', 'DESCRIPTION'],
    ...rows.map((r) => [r.id, r.identity, r.status, r.expiresAt.toISOString(), r.description ?? ''])];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table) io.stdout.write(`${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()}\n`);
  return EXIT_OK;
}

async function revoke(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, COMMON);
  const format = formatOption(values.format, ['text', 'json'], 'text');
  if (positionals.length === 0) throw new UsageError('expected the id of the token to revoke (see `pdp token list`)');
  if (positionals.length > 1) throw new UsageError('expected one token id');
  // A whole token pasted by mistake is accepted by its id; its secret is never printed.
  const arg = positionals[0]!;
  const id = arg.startsWith('pdp_') ? tokenId(arg) : arg;
  if (id === undefined || !/^[A-Za-z0-9]{12}$/.test(id)) throw new UsageError('that is not a token id (12 letters and digits, as `pdp token list` shows)');
  let changed: boolean;
  try {
    const store = openTokenStore(storePath(values, io), { create: false });
    try {
      changed = store.revoke(id, new Date());
    } finally {
      store.close();
    }
  } catch (e) {
    return failed(e, io);
  }
  if (format === 'json') io.stdout.write(`${JSON.stringify({ id, revoked: true, already_revoked: !changed })}\n`);
  else io.stdout.write(changed ? `revoked token \`${id}\`\n` : `token \`${id}\` was already revoked\n`);
  return EXIT_OK;
}
