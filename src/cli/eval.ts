// `pdp eval`: one decision from the command line, with the deciding rule and, with --explain,
// every rule considered.
import { escapeForTerminal } from '../diagnostics';
import { buildPolicySet, decideWith, defaultDecisionNote } from '../engine';
import { requestIdentityProblem } from '../syntax/request';
import { parse, formatOption, refuseEmptyPaths } from './args';
import { EXIT_FINDING, EXIT_OK, UsageError, shellWord, type Command } from './io';
import { printSetErrors, readPolicyDirectory } from './policy-input';

export const HELP = `usage: pdp eval --identity I --action A --resource R [--namespace N] [--source-ip IP]
                [--policies DIR] [--explain] [--format text|json]

Decides one request against a policy set (default: $PDP_POLICIES or ./policies).
  --identity I      the subject (omit for an anonymous request, if the policy allows them)
  --action A        read, write or admin
  --resource R      service:NAME, service:NAME/INSTANCE or namespace:NS/*
  --namespace N     default: \`default\`
  --source-ip IP    the subject's address (for rules with cidrs)
  --explain         list every rule considered and why it did or did not apply
  --format FORMAT   text (default) or json (the object /v1/authorize answers)

Exit codes: 0 whatever the decision, 1 the policy set has errors, 2 bad usage.
`;

export const run: Command = async (args, io) => {
  const { values } = parse(args, {
    identity: { type: 'string' }, action: { type: 'string' }, resource: { type: 'string' }, namespace: { type: 'string' },
    'source-ip': { type: 'string' }, policies: { type: 'string' }, explain: { type: 'boolean' }, format: { type: 'string' },
  }, false);
  refuseEmptyPaths([], { policies: values.policies });
  const format = formatOption(values.format, ['text', 'json'], 'text');
  if (values.action === undefined) throw new UsageError('--action is required (read, write or admin)');
  if (values.resource === undefined) throw new UsageError('--resource is required (service:NAME or namespace:NS/*)');
  const dir = (values.policies ?? io.env.PDP_POLICIES) || 'policies';
  const sources = readPolicyDirectory(dir, io);
  if (sources.length === 0) throw new UsageError(`no \`*.hcl\` files in \`${dir}\``);
  const built = buildPolicySet(sources, { tests: false }); // decided as the server would: test blocks aside
  if (!built.policy) {
    printSetErrors('eval', dir, sources, built.diagnostics, `run \`pdp check ${shellWord(dir)}\``, io);
    return EXIT_FINDING;
  }
  // Refused as the server refuses it (docs/server.md), so eval never answers what serve would not.
  const identityProblem = values.identity === undefined ? undefined : requestIdentityProblem(values.identity);
  if (identityProblem) throw new UsageError(`--identity ${identityProblem}`);
  const outcome = decideWith(built.policy, {
    identity: values.identity, action: values.action, resource: values.resource,
    namespace: values.namespace, sourceIp: values['source-ip'],
  }, { explain: values.explain === true });
  if (!outcome.ok) {
    const flag = outcome.error.field === 'source_ip' ? '--source-ip' : `--${outcome.error.field}`;
    throw new UsageError(`${flag}: ${outcome.error.message}`);
  }
  const d = outcome.decision;
  if (format === 'json') {
    const body: Record<string, unknown> = { result: d.result, allow: d.allow, reason: d.reason, rule: d.rule, policy_version: outcome.version };
    if (d.considered) body.considered = d.considered;
    io.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return EXIT_OK;
  }
  const lines = [d.result, `  reason: ${d.reason}`, `  rule:   ${d.rule ? `${d.rule.file}:${d.rule.line}` : '(default policy)'}`, `  policy: ${outcome.version}`];
  const note = defaultDecisionNote(built.policy, outcome);
  if (note !== undefined) lines.push(`  note:   ${note}`);
  if (d.considered) {
    lines.push('', d.considered.length ? 'rules considered:' : 'no rule reaches this resource');
    for (const c of d.considered) {
      lines.push(`  ${`${c.rule.file}:${c.rule.line}:${c.rule.column}`.padEnd(24)} ${c.block.padEnd(28)} ${c.policy.padEnd(5)} ${c.outcome}: ${c.why}`);
      // The rule's own words (policy-language.md: `description` is shown in explanations).
      if (c.description !== undefined) lines.push(`  ${' '.repeat(24)} description: ${c.description}`);
    }
  }
  // Descriptions and identity patterns are free text from the policy files: escaped for the terminal.
  io.stdout.write(`${lines.map(escapeForTerminal).join('\n')}\n`);
  return EXIT_OK;
};
