export * from './request';
export * from './evaluate';
export { buildDecisionTable } from './table';
