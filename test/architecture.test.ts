// The module layering the README's "Layout" section promises, checked on the TypeScript sources
// under src/ (not dist): which of our directories and which packages each module may import, that
// the pure stages read no clock, and that the server's runtime import graph never reaches SQLite.
// The rules are data (RULES below); a fake graph at the end shows each kind of rule can fail.
// "Imports" here is syntactic: a value import tsc would elide because only its types are used still
// counts (stricter than the emitted JS); the runtime SQLite rule is checked on dist/ as well.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const SRC = path.join(REPO_ROOT, 'src');

/** One import specifier as written in a file. */
interface ImportRecord {
  specifier: string;
  /** Erased at runtime: `import type`, `import { type A }` only, `export type`, `import('x').T` in a type, `declare module 'x'`. */
  typeOnly: boolean;
  line: number;
}

/** An import with its target: a file under src/ (`src/identity/index.ts`), or a package (`node:fs`, `fastify`). */
interface Edge extends ImportRecord {
  /** `src/...` path for our own files, the normalized package name otherwise (`node:fs`, `@fastify/rate-limit`). */
  target: string;
  internal: boolean;
}

interface FileInfo {
  /** `src/server/auth.ts` */
  file: string;
  /** `server`: the directory under src/ (the module). */
  module: string;
  edges: Edge[];
  clockReads: { text: string; line: number }[];
}

type Graph = Map<string, FileInfo>;

function lineOf(sf: ts.SourceFile, node: ts.Node): number {
  return sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
}

/** Every import specifier of a file, classified as runtime or type-only by walking its syntax tree. */
export function parseImports(fileName: string, text: string): ImportRecord[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: ImportRecord[] = [];
  const add = (literal: ts.Expression | undefined, typeOnly: boolean, node: ts.Node) => {
    if (literal && ts.isStringLiteralLike(literal)) out.push({ specifier: literal.text, typeOnly, line: lineOf(sf, node) });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      // No clause (`import './x'`) runs the module. Without verbatimModuleSyntax (tsconfig.json), an
      // import whose every named binding says `type` is dropped whole.
      const allNamedTypes = !!clause && !clause.name && !!clause.namedBindings && ts.isNamedImports(clause.namedBindings)
        && clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly);
      add(node.moduleSpecifier, !!clause && (clause.isTypeOnly || allNamedTypes), node);
    } else if (ts.isExportDeclaration(node)) {
      const allNamedTypes = !!node.exportClause && ts.isNamedExports(node.exportClause)
        && node.exportClause.elements.length > 0 && node.exportClause.elements.every((e) => e.isTypeOnly);
      add(node.moduleSpecifier, node.isTypeOnly || allNamedTypes, node);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression, node.isTypeOnly, node);
    } else if (ts.isModuleDeclaration(node) && ts.isStringLiteral(node.name)) {
      add(node.name, true, node); // `declare module 'fastify' { ... }`: an augmentation, types only
    } else if (ts.isImportTypeNode(node)) {
      const arg = node.argument;
      if (ts.isLiteralTypeNode(arg)) add(arg.literal, true, node);
    } else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const dynamic = callee.kind === ts.SyntaxKind.ImportKeyword;
      const required = ts.isIdentifier(callee) && callee.text === 'require';
      if ((dynamic || required) && node.arguments.length >= 1) add(node.arguments[0], false, node);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** `Date.now()`, `new Date(...)`, `Date()`, `performance.now()`, `process.hrtime(...)` in code (comments and strings do not count). */
export function findClockReads(fileName: string, text: string): { text: string; line: number }[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: { text: string; line: number }[] = [];
  const isName = (e: ts.Expression, name: string) => ts.isIdentifier(e) && e.text === name;
  const isMember = (e: ts.Expression, object: string, member: string) =>
    ts.isPropertyAccessExpression(e) && isName(e.expression, object) && e.name.text === member;
  const visit = (node: ts.Node): void => {
    const hit = (ts.isNewExpression(node) && isName(node.expression, 'Date'))
      || (ts.isCallExpression(node) && (isName(node.expression, 'Date') || isMember(node.expression, 'Date', 'now') || isMember(node.expression, 'performance', 'now')))
      // Not called here but taken as a value (`const clock = Date.now`): a clock all the same.
      || (ts.isPropertyAccessExpression(node) && (isMember(node, 'process', 'hrtime') || isMember(node, 'Date', 'now') || isMember(node, 'performance', 'now')));
    if (hit) out.push({ text: node.getText(sf), line: lineOf(sf, node) });
    else ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

const BUILTINS = new Set(builtinModules.filter((m) => !m.startsWith('_')));

/** `fs` and `node:fs/promises` → `node:fs`... (the module, not the subpath); `@scope/pkg/x` → `@scope/pkg`. */
function packageName(specifier: string): string {
  const bare = specifier.startsWith('node:') ? specifier.slice(5) : specifier;
  const first = bare.split('/')[0]!;
  if (specifier.startsWith('node:') || BUILTINS.has(bare) || BUILTINS.has(first)) return `node:${first}`;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/**
 * A relative specifier's file among `files` (`../identity` → `src/identity/index.ts`), or its
 * normalized path when it points at no source file (`../../../package.json`, which resolves from dist/).
 */
function resolveRelative(from: string, specifier: string, files: ReadonlySet<string>): { target: string; found: boolean } {
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
  const stem = base.replace(/\.js$/, '');
  for (const candidate of [base, `${stem}.ts`, `${stem}/index.ts`]) if (files.has(candidate)) return { target: candidate, found: true };
  return { target: base, found: false };
}

/** `src/server/auth.ts` → `server`. */
function moduleOf(file: string): string {
  const parts = file.split('/');
  return parts.length > 2 ? parts[1]! : '(src root)';
}

/** The import graph of `sources` (`src/...` path → text). Throws on a relative import into src/ that names no file. */
export function buildGraph(sources: ReadonlyMap<string, string>): Graph {
  const names = new Set(sources.keys());
  const graph: Graph = new Map();
  for (const [file, text] of sources) {
    const edges: Edge[] = parseImports(file, text).map((imp) => {
      if (!imp.specifier.startsWith('.')) return { ...imp, target: packageName(imp.specifier), internal: false };
      const { target, found } = resolveRelative(file, imp.specifier, names);
      if (!found && target.startsWith('src/')) throw new Error(`${file}:${imp.line}: \`${imp.specifier}\` resolves to no file under src/ (tried ${target}.ts and ${target}/index.ts)`);
      return found ? { ...imp, target, internal: true } : { ...imp, target: `(outside src) ${target}`, internal: false };
    });
    graph.set(file, { file, module: moduleOf(file), edges, clockReads: findClockReads(file, text) });
  }
  return graph;
}

/** A rule on each file of some modules: which of our modules and which packages it may not import. */
interface ImportRule {
  modules: string[];
  /** Our modules it may not import (type-only imports included: a type is a dependency too). */
  forbiddenModules?: string[];
  /** Only these of our modules (besides its own) may be imported. */
  onlyModules?: string[];
  /** Packages it may not import (a subpath counts: `node:fs` forbids `node:fs/promises`). */
  forbiddenPackages?: string[];
  noClockReads?: boolean;
  why: string;
}

const IO_PACKAGES = ['node:fs', 'node:http', 'node:https', 'node:net', 'node:child_process', 'fastify', 'better-sqlite3', 'lru-cache'];

export const RULES: ImportRule[] = [
  { modules: ['diagnostics'], onlyModules: [], why: 'diagnostics is the bottom layer and imports nothing else of ours' },
  { modules: ['syntax'], onlyModules: ['diagnostics'], forbiddenPackages: ['fastify', 'better-sqlite3', 'node:http', 'node:https', 'node:fs'], why: 'syntax knows no HTTP, no SQLite, no files; of ours it uses only diagnostics' },
  { modules: ['check'], forbiddenModules: ['compile', 'eval', 'engine'], why: 'data flows syntax → check → compile → eval → engine, never back' },
  { modules: ['compile'], forbiddenModules: ['eval', 'engine'], why: 'data flows syntax → check → compile → eval → engine, never back' },
  { modules: ['eval'], forbiddenModules: ['engine'], why: 'data flows syntax → check → compile → eval → engine, never back' },
  { modules: ['syntax'], forbiddenModules: ['check', 'compile', 'eval', 'engine'], why: 'data flows syntax → check → compile → eval → engine, never back' },
  { modules: ['check', 'compile', 'eval', 'fmt'], forbiddenPackages: IO_PACKAGES, noClockReads: true, why: 'check, compile, eval and fmt are pure functions: no I/O, no caches, no clock (time comes in)' },
  { modules: ['engine'], forbiddenModules: ['server', 'audit', 'cli'], forbiddenPackages: ['fastify', 'better-sqlite3'], why: 'the engine is the door the server and CLI use; it knows neither, nor the audit store' },
  { modules: ['audit'], forbiddenModules: ['server', 'cli', 'engine'], forbiddenPackages: ['fastify'], why: 'the audit store stands beside the pipeline; the server is handed a recorder' },
];

/** Modules whose runtime imports, followed through our files, must never reach a package. */
export const RUNTIME_REACH_RULES: { modules: string[]; forbiddenPackage: string; why: string }[] = [
  { modules: ['server'], forbiddenPackage: 'better-sqlite3', why: 'the server must be handed its stores' },
];

/**
 * Edges that break a rule today, each named exactly (file → file) with why it stands; the test fails
 * when one of them is no longer there, so a fixed exception cannot linger. Add to this list only with
 * the reason, never to make a new import pass.
 */
export const KNOWN_EXCEPTIONS: { from: string; to: string; why: string }[] = [];

function matchesPackage(target: string, forbidden: string): boolean {
  return target === forbidden || target.startsWith(`${forbidden}/`);
}

function describeEdge(info: FileInfo, edge: Edge): string {
  return `${info.file}:${edge.line} ${edge.typeOnly ? 'type-imports' : 'imports'} \`${edge.specifier}\`${edge.internal ? ` (${edge.target})` : ''}`;
}

/** Every broken rule, one message each naming the file, the line and the import. */
export function checkGraph(graph: Graph, rules: ImportRule[] = RULES, reachRules = RUNTIME_REACH_RULES, exceptions: typeof KNOWN_EXCEPTIONS = []): string[] {
  const violations: string[] = [];
  for (const info of graph.values()) {
    for (const edge of info.edges) {
      if (edge.internal && exceptions.some((x) => x.from === info.file && x.to === edge.target)) continue;
      const targetModule = edge.internal ? moduleOf(edge.target) : undefined;
      // Nothing outside src/cli imports src/cli: the commands sit on top of everything.
      if (targetModule === 'cli' && info.module !== 'cli') violations.push(`${describeEdge(info, edge)}: nothing outside src/cli may import src/cli (the commands are thin wrappers on top of everything else)`);
      for (const rule of rules) {
        if (!rule.modules.includes(info.module)) continue;
        if (targetModule !== undefined && targetModule !== info.module) {
          if (rule.forbiddenModules?.includes(targetModule)) violations.push(`${describeEdge(info, edge)}: ${info.module} may not import ${targetModule}; ${rule.why}`);
          if (rule.onlyModules && !rule.onlyModules.includes(targetModule)) violations.push(`${describeEdge(info, edge)}: ${info.module} may import ${rule.onlyModules.length ? `only ${rule.onlyModules.join(', ')}` : 'nothing'} of ours; ${rule.why}`);
        }
        if (!edge.internal) {
          const hit = rule.forbiddenPackages?.find((p) => matchesPackage(edge.target, p));
          if (hit) violations.push(`${describeEdge(info, edge)}: ${info.module} may not import \`${hit}\`; ${rule.why}`);
        }
      }
    }
    if (rules.some((r) => r.noClockReads && r.modules.includes(info.module))) {
      for (const read of info.clockReads) violations.push(`${info.file}:${read.line} reads the clock (\`${read.text}\`): ${info.module} is pure; time comes in as an argument`);
    }
  }
  for (const rule of reachRules) {
    for (const start of graph.values()) {
      if (!rule.modules.includes(start.module)) continue;
      // Breadth first over runtime edges, so each reported chain is a shortest one.
      const via = new Map<string, string | undefined>([[start.file, undefined]]);
      const queue = [start.file];
      const reported = new Set<string>();
      while (queue.length > 0) {
        const file = queue.shift()!;
        const info = graph.get(file);
        if (!info) continue;
        for (const edge of info.edges) {
          if (edge.typeOnly) continue;
          if (edge.internal) {
            if (!via.has(edge.target)) {
              via.set(edge.target, file);
              queue.push(edge.target);
            }
          } else if (matchesPackage(edge.target, rule.forbiddenPackage) && !reported.has(file)) {
            reported.add(file);
            const chain: string[] = [];
            for (let f: string | undefined = file; f !== undefined && f !== start.file; f = via.get(f)) chain.unshift(f);
            violations.push(`${start.file} imports \`${rule.forbiddenPackage}\` at runtime${chain.length ? ` via ${chain.join(' → ')}` : ' directly'} (${file}:${edge.line}); ${rule.why}`);
          }
        }
      }
    }
  }
  return violations;
}

/** Every .ts file under src/ (the generated grammar included: `npm test` builds it first). */
function readSources(): Map<string, string> {
  const sources = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        sources.set(path.relative(REPO_ROOT, full).split(path.sep).join('/'), fs.readFileSync(full, 'utf8'));
      }
    }
  };
  walk(SRC);
  return sources;
}

test('the checker sees the whole source tree (it cannot pass vacuously)', () => {
  const sources = readSources();
  assert.ok(sources.size >= 50, `expected the sources under ${SRC}; found ${sources.size} .ts files`);
  const graph = buildGraph(sources);
  const modules = new Set([...graph.values()].map((f) => f.module));
  for (const m of ['diagnostics', 'syntax', 'check', 'compile', 'eval', 'engine', 'fmt', 'audit', 'identity', 'server', 'cli']) {
    assert.ok(modules.has(m), `no files found for src/${m}: a rule on it would pass without checking anything`);
  }
  for (const rule of [...RULES, ...RUNTIME_REACH_RULES]) {
    for (const m of rule.modules) assert.ok(modules.has(m), `a rule names src/${m}, which has no files`);
  }
  const edges = [...graph.values()].flatMap((f) => f.edges);
  assert.ok(edges.length >= 200, `expected hundreds of imports; found ${edges.length}`);
  assert.ok(edges.filter((e) => e.internal).length >= 100, 'too few imports resolved to files under src/');
  assert.ok(edges.some((e) => e.typeOnly) && edges.some((e) => !e.typeOnly), 'expected both type-only and runtime imports');
  // Every specifier TypeScript's own pre-processor finds, the syntax walk finds too (it finds more:
  // the pre-processor skips a `require` inside a template literal's `${}`).
  for (const [file, text] of sources) {
    const found = graph.get(file)!.edges.map((e) => e.specifier);
    for (const { fileName } of ts.preProcessFile(text, true, true).importedFiles) {
      const i = found.indexOf(fileName);
      assert.ok(i >= 0, `${file}: ts.preProcessFile finds an import of \`${fileName}\` that the syntax walk missed`);
      found.splice(i, 1);
    }
  }
});

test('the module layering holds on src/', () => {
  const graph = buildGraph(readSources());
  const violations = checkGraph(graph, RULES, RUNTIME_REACH_RULES, KNOWN_EXCEPTIONS);
  assert.deepEqual(violations, [], `layering violations (rules: README "Layout" and test/architecture.test.ts):\n${violations.join('\n')}`);
  for (const x of KNOWN_EXCEPTIONS) {
    assert.ok(graph.get(x.from)?.edges.some((e) => e.target === x.to), `KNOWN_EXCEPTIONS lists ${x.from} → ${x.to}, which is no longer imported: remove it from the list`);
    const without = checkGraph(graph, RULES, [], KNOWN_EXCEPTIONS.filter((y) => y !== x));
    assert.ok(without.some((v) => v.startsWith(`${x.from}:`) && v.includes(`(${x.to})`)), `KNOWN_EXCEPTIONS lists ${x.from} → ${x.to}, which breaks no rule: remove it from the list`);
  }
});

test('at runtime too: loading every compiled server module loads no SQLite', () => {
  // The same rule on the compiled output (dist/src/server), in a fresh process: what tsc actually
  // kept of each import, which the syntax-level check above approximates from above.
  const dir = path.join(__dirname, '..', 'src', 'server');
  const modules = fs.readdirSync(dir).filter((f) => f.endsWith('.js')).map((f) => path.join(dir, f));
  assert.ok(modules.length >= 10, `expected the compiled server modules in ${dir}`);
  const script = `for (const m of ${JSON.stringify(modules)}) require(m);
    process.stdout.write(JSON.stringify(Object.keys(require.cache).filter((k) => /[\\/]node_modules[\\/]better-sqlite3[\\/]/.test(k))));`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), [], 'requiring src/server/*.js loaded better-sqlite3');
});

test('self-test: a fake tree that breaks each kind of rule is reported', () => {
  const fake = new Map<string, string>([
    ['src/diagnostics/index.ts', `import { parsePolicy } from '../syntax';\nexport const x = 1;`],
    ['src/syntax/index.ts', `import fs from 'node:fs';\nimport { check } from '../check';\nexport function parsePolicy() { return fs; }`],
    ['src/check/index.ts', `import type { Rule } from '../compile/model';\nexport const when = Date.now();`],
    ['src/compile/model.ts', `export interface Rule { name: string }\nimport { LRUCache } from 'lru-cache';`],
    ['src/eval/index.ts', `export const t = () => new Date();\nimport * as engine from '../engine';`],
    ['src/engine/index.ts', `import { buildServer } from '../server';\nimport Database from 'better-sqlite3';`],
    ['src/audit/index.ts', `import type { Engine } from '../engine';`],
    ['src/server/index.ts', `import { helper } from './auth';\nexport function buildServer() {}\nexport { run } from '../cli/serve';`],
    ['src/server/auth.ts', `import type { TokenStore } from '../identity/tokens';\nimport { openTokenStore } from '../identity';`],
    ['src/identity/index.ts', `export * from './tokens';`],
    ['src/identity/tokens.ts', `import Database from 'better-sqlite3';\nexport type TokenStore = object;`],
    ['src/cli/serve.ts', `export function run() {}`],
  ]);
  const violations = checkGraph(buildGraph(fake));
  const expect = (pattern: RegExp) => assert.ok(violations.some((v) => pattern.test(v)), `expected a violation matching ${pattern}; got:\n${violations.join('\n')}`);
  expect(/^src\/diagnostics\/index\.ts:1 imports `\.\.\/syntax` \(src\/syntax\/index\.ts\): diagnostics may import nothing of ours/);
  expect(/^src\/syntax\/index\.ts:1 imports `node:fs`: syntax may not import `node:fs`/);
  expect(/^src\/syntax\/index\.ts:2 imports `\.\.\/check` .*syntax may not import check/);
  expect(/^src\/check\/index\.ts:1 type-imports `\.\.\/compile\/model` .*check may not import compile/);
  expect(/^src\/check\/index\.ts:2 reads the clock \(`Date\.now\(\)`\)/);
  expect(/^src\/compile\/model\.ts:2 imports `lru-cache`/);
  expect(/^src\/eval\/index\.ts:1 reads the clock \(`new Date\(\)`\)/);
  expect(/^src\/eval\/index\.ts:2 .*eval may not import engine/);
  expect(/^src\/engine\/index\.ts:1 .*engine may not import server/);
  expect(/^src\/engine\/index\.ts:2 imports `better-sqlite3`: engine may not import `better-sqlite3`/);
  expect(/^src\/audit\/index\.ts:1 type-imports .*audit may not import engine/);
  expect(/^src\/server\/index\.ts:3 imports `\.\.\/cli\/serve` .*nothing outside src\/cli may import src\/cli/);
  // Through the barrel at runtime; the type-only import of tokens.ts alone would be fine.
  expect(/^src\/server\/auth\.ts imports `better-sqlite3` at runtime via src\/identity\/index\.ts → src\/identity\/tokens\.ts \(src\/identity\/tokens\.ts:1\); the server must be handed its stores$/);
  expect(/^src\/server\/index\.ts imports `better-sqlite3` at runtime via src\/server\/auth\.ts → src\/identity\/index\.ts → src\/identity\/tokens\.ts/);
  assert.equal(violations.filter((v) => v.startsWith('src/compile/model.ts')).length, 1, 'the interface-only file breaks one rule only');

  // A type-only path to SQLite is allowed; the same tree without the runtime barrel import is clean there.
  const typeOnly = new Map(fake);
  typeOnly.set('src/server/auth.ts', `import type { TokenStore } from '../identity/tokens';\nexport { type TokenStore as T } from '../identity';`);
  assert.ok(!checkGraph(buildGraph(typeOnly)).some((v) => v.includes('at runtime')), 'type-only imports must not count as runtime');
  // A relative import that names no file is an error, not a silently dropped edge.
  assert.throws(() => buildGraph(new Map([['src/server/a.ts', `import './missing';`]])), /src\/server\/a\.ts:1: `\.\/missing` resolves to no file under src\//);
});

test('self-test: import classification', () => {
  const imports = parseImports('x.ts', [
    `import type { A } from 'a';`,
    `import { type B, type C } from 'b';`,
    `import { type D, E } from 'd';`,
    `import 'side-effect';`,
    `export * from 'star';`,
    `export type { F } from 'f';`,
    `let g: import('g').G;`,
    `const h = import('h');`,
    `const i = require('i');`,
    `import j = require('j');`,
    `declare module 'm' { interface M { n: number } }`,
    `// import k from 'k'; a comment is no import`,
  ].join('\n'));
  assert.deepEqual(imports.map((i) => `${i.specifier}:${i.typeOnly ? 'type' : 'runtime'}`),
    ['a:type', 'b:type', 'd:runtime', 'side-effect:runtime', 'star:runtime', 'f:type', 'g:type', 'h:runtime', 'i:runtime', 'j:runtime', 'm:type']);
  assert.deepEqual(findClockReads('x.ts', `// Date.now()\nconst s = 'new Date()';\nconst t = performance.now() + process.hrtime.bigint();\nDate();\nconst clock = Date.now;\nconst n = Date.now();`).map((r) => r.text),
    ['performance.now()', 'process.hrtime', 'Date()', 'Date.now', 'Date.now()']);
});
