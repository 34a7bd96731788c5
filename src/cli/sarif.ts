// `pdp check --format sarif`: diagnostics as SARIF 2.1.0, the format code-scanning tools (GitHub code
// scanning, IDE SARIF viewers) read. One run, tool `pdp`, one reporting descriptor per code used.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ACKNOWLEDGEMENT_CODES, LINT_CODES, type Acknowledged } from '../check';
import type { Diagnostic } from '../diagnostics';

export const SARIF_SCHEMA = 'https://json.schemastore.org/sarif-2.1.0.json';

/** One line per diagnostic code (errors of the parser and checker, then the lint warnings). */
const DESCRIPTIONS: Record<string, string> = {
  'syntax-error': 'the text is not valid policy syntax',
  'invalid-character': 'a character that cannot start any token',
  'unterminated-string': 'a string without its closing quote',
  'unterminated-comment': 'a block comment without its closing `*/`',
  'unclosed-block': 'a block without its closing brace',
  'unclosed-list': 'a list without its closing bracket',
  'interpolation': '`${` interpolation is not supported',
  'invalid-escape': 'an escape sequence the language does not define',
  'misplaced-attribute': 'an attribute outside any block',
  'unknown-block': 'an unknown block type',
  'misplaced-block': 'a block where that type is not allowed',
  'missing-label': 'a block that needs a label has none',
  'unexpected-label': 'a block that takes no label has one',
  'unknown-attribute': 'an attribute the block does not take',
  'duplicate-attribute': 'an attribute set twice in one block',
  'invalid-type': 'an attribute value of the wrong type',
  'conflicting-attributes': 'two attributes that may not appear together',
  'missing-policy': 'a rule without `policy`',
  'missing-identity': 'a rule or grant without identities',
  'missing-attribute': 'a required attribute is missing',
  'duplicate-settings': 'more than one `settings` block',
  'duplicate-role': 'a role defined twice',
  'duplicate-test': 'a test defined twice',
  'invalid-name': 'an invalid service, namespace or role name',
  'invalid-level': 'an unknown policy level',
  'invalid-identity': 'an invalid identity pattern',
  'invalid-spiffe-id': 'a malformed SPIFFE ID',
  'nested-role': 'a role that lists another role',
  'empty-cidrs': 'an empty `cidrs` list, so the rule never applies',
  'invalid-cidr': 'an invalid CIDR',
  'invalid-setting': 'an invalid value in `settings`',
  'unknown-api': 'an unknown `api` scope',
  'invalid-test': 'an invalid field in a `test` block',
  'undefined-role': 'a reference to a role that is not defined',
  ...LINT_CODES,
  ...ACKNOWLEDGEMENT_CODES,
};

export interface SarifOptions {
  version?: string;
}

/**
 * Relative paths stay relative (`uriBaseId` %SRCROOT%: viewers resolve them against the checkout),
 * `/`-separated and URI-escaped; absolute paths become `file://` URIs.
 */
function artifactLocation(file: string): { uri: string; uriBaseId?: string } {
  if (path.isAbsolute(file)) return { uri: pathToFileURL(file).href };
  return { uri: file.split(/[\\/]/).map(encodeURIComponent).join('/'), uriBaseId: '%SRCROOT%' };
}

/**
 * `acknowledged`: warnings a `# pdp:allow CODE -- why` comment accepts. They are results with an
 * in-source suppression carrying the reason, which code-scanning tools show as dismissed.
 */
export function toSarif(diagnostics: readonly Diagnostic[], options: SarifOptions = {}, acknowledged: readonly Acknowledged[] = []): object {
  const suppressedBy = new Map(acknowledged.map((a) => [a.diagnostic, a.reason]));
  diagnostics = [...diagnostics, ...acknowledged.map((a) => a.diagnostic)];
  const codes = [...new Set(diagnostics.map((d) => d.code))].sort();
  const ruleIndex = new Map(codes.map((c, i) => [c, i]));
  const severityOf = new Map<string, 'error' | 'warning'>();
  for (const d of diagnostics) if (!severityOf.has(d.code) || d.severity === 'error') severityOf.set(d.code, d.severity);
  return {
    $schema: SARIF_SCHEMA,
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'pdp',
            ...(options.version ? { version: options.version, semanticVersion: options.version } : {}),
            rules: codes.map((code) => ({
              id: code,
              name: code.replace(/(^|-)([a-z])/g, (_m, _dash, c: string) => c.toUpperCase()),
              shortDescription: { text: DESCRIPTIONS[code] ?? code.replace(/-/g, ' ') },
              defaultConfiguration: { level: severityOf.get(code) },
            })),
          },
        },
        columnKind: 'utf16CodeUnits',
        results: diagnostics.map((d) => ({
          ruleId: d.code,
          ruleIndex: ruleIndex.get(d.code),
          level: d.severity,
          message: { text: d.hint ? `${d.message}\nhint: ${d.hint}` : d.message },
          locations: [
            {
              physicalLocation: {
                artifactLocation: artifactLocation(d.span.file),
                region: {
                  startLine: d.span.start.line,
                  startColumn: d.span.start.column,
                  endLine: d.span.end.line,
                  endColumn: d.span.end.column,
                },
              },
            },
          ],
          ...(suppressedBy.has(d) ? { suppressions: [{ kind: 'inSource', justification: suppressedBy.get(d) }] } : {}),
        })),
      },
    ],
  };
}
