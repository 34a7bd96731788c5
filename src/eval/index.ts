// The request type and its preparation live in syntax (check validates test blocks with them too).
export * from '../syntax/prepare-request';
export * from './evaluate';
export { buildDecisionTable } from './table';
