// `pdp ca init|issue`: the built-in certificate authority (see docs/identity.md).
import * as path from 'node:path';
import { CaError, DEFAULT_VALIDITY_MS, MAX_VALIDITY_MS, defaultCertificateName, formatDuration, initCa, issueCertificate, type CertificateKind } from '../identity/ca';
import { isSpiffeId } from '../syntax/identity-pattern';
import { formatOption, parse, parseDuration, refuseEmptyPaths } from './args';
import { EXIT_FINDING, EXIT_OK, UsageError, type CliIo, type Command } from './io';

export const HELP = `usage: pdp ca init --trust-domain DOMAIN [--dir DIR] [--validity 365d] [--force]
       pdp ca issue server --name NAME [--dns HOST]… [--ip ADDR]… [--spiffe-id ID] [options]
                           (at least one --dns or --ip)
       pdp ca issue workload --spiffe-id ID [--name NAME] [options]
       pdp ca issue user --spiffe-id ID [--name NAME] [options]

A small certificate authority for mutual TLS with SPIFFE IDs: one ECDSA P-256 root per trust
domain, short-lived leaf certificates for the PDP server and for its callers.

init                 writes DIR/ca.key (private key, mode 0600) and DIR/ca.crt (the root certificate
                     every peer trusts)
issue server         a server certificate (TLS server authentication) for \`pdp serve\` over TLS
issue workload|user  a client certificate whose only URI SAN is the SPIFFE ID, in the CA's trust domain

options:
  --dir DIR          the CA directory (default: $PDP_CA_DIR or ./ca)
  --trust-domain TD  init: the SPIFFE trust domain, e.g. \`cluster\` (lowercase letters, digits, . _ -)
  --validity DUR     lifetime: init default 365d; server default ${formatDuration(DEFAULT_VALIDITY_MS.server)} (max ${formatDuration(MAX_VALIDITY_MS.server)});
                     workload/user default ${formatDuration(DEFAULT_VALIDITY_MS.workload)} (max ${formatDuration(MAX_VALIDITY_MS.workload)})
  --name NAME        file name: writes OUT/NAME.key and OUT/NAME.crt (workload/user default:
                     the SPIFFE ID's last path segment)
  --out DIR          where to write the issued files (default: the CA directory)
  --dns HOST         server: a DNS name (repeatable)
  --ip ADDR          server: an IP address (repeatable)
  --spiffe-id ID     the SPIFFE ID, e.g. spiffe://cluster/ns/platform/sa/registry
  --force            overwrite existing files
  --format FORMAT    text (default) or json

Exit codes: 0 written, 1 refused (a file exists, the CA is missing or expired), 2 bad usage.
`;

const KINDS: readonly CertificateKind[] = ['server', 'workload', 'user'];

function display(file: string, io: CliIo): string {
  const rel = path.relative(io.cwd, file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

function refused(e: unknown, io: CliIo): number {
  if (e instanceof CaError) {
    if (e.code === 'invalid') throw new UsageError(e.message);
    io.stderr.write(`pdp ca: ${e.message}\n`);
    return EXIT_FINDING;
  }
  throw e;
}

export const run: Command = async (args, io) => {
  const [sub, ...rest] = args;
  if (sub === 'init') return init(rest, io);
  if (sub === 'issue') return issue(rest, io);
  if (sub === undefined || sub.startsWith('-')) throw new UsageError('expected a subcommand: `init` or `issue`');
  throw new UsageError(`unknown subcommand \`${sub}\`; expected \`init\` or \`issue\``);
};

async function init(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, {
    'trust-domain': { type: 'string' },
    dir: { type: 'string' },
    validity: { type: 'string' },
    force: { type: 'boolean' },
    format: { type: 'string' },
  }, true);
  if (positionals.length > 0) throw new UsageError(`unexpected argument \`${positionals[0]}\``);
  refuseEmptyPaths([], { dir: values.dir });
  const format = formatOption(values.format, ['text', 'json'], 'text');
  const trustDomain = values['trust-domain'];
  if (!trustDomain) throw new UsageError('`--trust-domain` is required, e.g. `--trust-domain cluster`');
  const validityDays = values.validity === undefined ? undefined : parseDuration(values.validity, '--validity') / 86_400_000;
  const dir = path.resolve(io.cwd, values.dir ?? (io.env.PDP_CA_DIR || 'ca'));
  let result;
  try {
    result = await initCa({ dir, trustDomain, validityDays, force: values.force === true, now: new Date() });
  } catch (e) {
    return refused(e, io);
  }
  if (format === 'json') {
    io.stdout.write(`${JSON.stringify({
      key: result.keyPath,
      certificate: result.certPath,
      trust_domain: result.trustDomain,
      serial: result.serialNumber,
      not_before: result.notBefore.toISOString(),
      not_after: result.notAfter.toISOString(),
      fingerprint_sha256: result.fingerprint,
    }, null, 2)}\n`);
  } else {
    io.stdout.write(`${display(result.keyPath, io)}\n${display(result.certPath, io)}\n`);
    io.stderr.write(`created CA for trust domain \`${result.trustDomain}\`, valid until ${result.notAfter.toISOString()}\n`
      + `keep ${display(result.keyPath, io)} secret; give ${display(result.certPath, io)} to every peer that must trust it\n`);
  }
  return EXIT_OK;
}

async function issue(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, {
    dir: { type: 'string' },
    out: { type: 'string' },
    name: { type: 'string' },
    dns: { type: 'string', multiple: true },
    ip: { type: 'string', multiple: true },
    'spiffe-id': { type: 'string' },
    validity: { type: 'string' },
    force: { type: 'boolean' },
    format: { type: 'string' },
  }, true);
  const [kindArg, extra] = positionals;
  if (kindArg === undefined) throw new UsageError('expected what to issue: `server`, `workload` or `user`');
  if (!(KINDS as readonly string[]).includes(kindArg)) throw new UsageError(`unknown certificate kind \`${kindArg}\`; expected \`server\`, \`workload\` or \`user\``);
  if (extra !== undefined) throw new UsageError(`unexpected argument \`${extra}\``);
  const kind = kindArg as CertificateKind;
  refuseEmptyPaths([], { dir: values.dir, out: values.out });
  const format = formatOption(values.format, ['text', 'json'], 'text');
  const spiffeId = values['spiffe-id'];
  if (kind !== 'server') {
    if (!spiffeId) throw new UsageError(`\`--spiffe-id\` is required for a ${kind} certificate, e.g. \`--spiffe-id spiffe://cluster/ns/platform/sa/registry\``);
    if (values.dns || values.ip) throw new UsageError(`\`--dns\` and \`--ip\` are for server certificates; a ${kind} certificate carries only its SPIFFE ID`);
  } else if (!values.dns?.length && !values.ip?.length) {
    throw new UsageError('a server certificate needs at least one `--dns` name or `--ip` address');
  }
  let name = values.name;
  if (name === undefined) {
    if (kind === 'server') throw new UsageError('`--name` is required for a server certificate, e.g. `--name pdp`');
    // From a valid SPIFFE ID's last path segment. An invalid ID goes on without a name, so that
    // issueCertificate reports the ID itself (with the CA's trust domain in the hint), not `--name`.
    name = defaultCertificateName(spiffeId!);
    // An ID of the trust domain alone (`spiffe://cluster`) is refused by issueCertificate for what it is.
    if (name === undefined && isSpiffeId(spiffeId!) && spiffeId!.slice('spiffe://'.length).includes('/')) {
      throw new UsageError('`--name` is required (the SPIFFE ID has no usable last path segment)');
    }
  }
  const validityMs = values.validity === undefined ? undefined : parseDuration(values.validity, '--validity');
  const caDir = path.resolve(io.cwd, values.dir ?? (io.env.PDP_CA_DIR || 'ca'));
  const outDir = values.out === undefined ? undefined : path.resolve(io.cwd, values.out);
  let result;
  try {
    result = await issueCertificate({ caDir, kind, name, outDir, dns: values.dns, ips: values.ip, spiffeId, validityMs, force: values.force === true, now: new Date() });
  } catch (e) {
    return refused(e, io);
  }
  for (const w of result.warnings) io.stderr.write(`pdp ca: warning: ${w}\n`);
  if (format === 'json') {
    io.stdout.write(`${JSON.stringify({
      kind: result.kind,
      key: result.keyPath,
      certificate: result.certPath,
      ca_certificate: result.caCertPath,
      spiffe_id: result.spiffeId ?? null,
      dns: result.dns,
      ips: result.ips,
      serial: result.serialNumber,
      not_before: result.notBefore.toISOString(),
      not_after: result.notAfter.toISOString(),
    }, null, 2)}\n`);
  } else {
    io.stdout.write(`${display(result.keyPath, io)}\n${display(result.certPath, io)}\n`);
    const names = [result.spiffeId, ...result.dns, ...result.ips].filter(Boolean).map((n) => `\`${n}\``).join(', ');
    io.stderr.write(`issued ${kind} certificate for ${names}, valid until ${result.notAfter.toISOString()}; peers trust it through ${display(result.caCertPath, io)}\n`);
  }
  return EXIT_OK;
}
