export * from './server';
export * from './reload';
export * from './errors';
export { DecisionCache } from './cache';
