export * from './request';
export * from './evaluate';
