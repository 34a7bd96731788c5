export * from './ast';
export { parsePolicy, AmbiguousParseError, type ParseResult } from './parse';
export * from './identity-pattern';
export * from './request';
