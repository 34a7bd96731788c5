// Identity: the built-in CA, client certificate verification (SPIFFE IDs), short-lived tokens and
// failed-authentication lockout. Imports nothing from server, engine, audit or cli.
export * from './ca';
export * from './certificates';
export * from './tokens';
export * from './lockout';
export * from './token-format';
