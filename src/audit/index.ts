// The audit module's public surface. The server needs only openAuditStore, createRecorder and the
// event helpers; the CLI adds openAuditStoreReadOnly and the analyses.
export * from './event';
export * from './migrations';
export * from './store';
export * from './recorder';
export * from './anomalies';
export * from './writer';
export * from './checkpointer';
