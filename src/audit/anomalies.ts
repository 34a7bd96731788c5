// The seed design's three security-monitoring queries, over `audit_log`. Each query is plain SQL with
// bound parameters (never interpolated values); the window start is computed from a `now` that the
// caller passes in, so the query builder reads no clock and tests can pin time.
import type Database from 'better-sqlite3';

export const DEFAULT_SPIKE_THRESHOLD = 100;
export const DEFAULT_DENY_THRESHOLD = 10;

/**
 * 1. Registration spikes: services registered more than `@threshold` times since `@since`.
 * Served by the covering time index `audit_log_time (timestamp, event_type, result, service_name, identity)`.
 */
export const REGISTRATION_SPIKES_SQL = `SELECT service_name, COUNT(*) AS registrations
FROM audit_log
WHERE event_type = 'REGISTRATION'
  AND timestamp > @since
GROUP BY service_name
HAVING COUNT(*) > @threshold
ORDER BY registrations DESC, service_name`;

/**
 * 2. Unknown services: registrations of a service name that no loaded policy set declares. Like the
 * seed's form (`UNKNOWN_SERVICES_SEED_SQL`), it has no time window by default: it finds the names the
 * seed's query finds, over every registration still kept (retention bounds them), reading the
 * covering time index whole (about 0.1 s at 10^6 rows). With an explicit window
 * (`UNKNOWN_SERVICES_WINDOWED_SQL`, `pdp audit anomalies --since D`) it reads only the window's slice,
 * like the other two. Like the seed, a name counts as known in any namespace.
 */
export const UNKNOWN_SERVICES_SQL = `SELECT service_name, COUNT(*) AS registrations
FROM audit_log
WHERE event_type = 'REGISTRATION'
  AND service_name NOT IN (SELECT name FROM allowed_services)
GROUP BY service_name
ORDER BY registrations DESC, service_name`;

/** Unknown services registered since `@since` (the window given explicitly). */
export const UNKNOWN_SERVICES_WINDOWED_SQL = `SELECT service_name, COUNT(*) AS registrations
FROM audit_log
WHERE event_type = 'REGISTRATION'
  AND timestamp > @since
  AND service_name NOT IN (SELECT name FROM allowed_services)
GROUP BY service_name
ORDER BY registrations DESC, service_name`;

/**
 * 3. Authorization failures: identities denied more than `@threshold` times since `@since`.
 * Served by the covering time index `audit_log_time` as well. Beside the seed's count, how many of
 * those denials were failed authentications: an `AUTHN_FAILURE` row names the identity that was
 * *attempted*, which anyone can claim (a self-signed certificate for a real workload's SPIFFE ID), so
 * an identity whose denials are all failed authentications was named, not proven.
 */
export const AUTHORIZATION_FAILURES_SQL = `SELECT identity, COUNT(*) AS denials,
  SUM(event_type = 'AUTHN_FAILURE') AS failed_authentications
FROM audit_log
WHERE result = 'DENY'
  AND timestamp > @since
GROUP BY identity
HAVING COUNT(*) > @threshold
ORDER BY denials DESC, identity`;

/** The seed's queries as written (`FROM audit_logs`, the view of migration 6), adapted to SQLite only as audit.md allows: ready to paste into `sqlite3 audit.db`. */
export const SEED_QUERIES = {
  registrationSpikes: `SELECT service_name, COUNT(*) as registrations
FROM audit_logs
WHERE event_type = 'REGISTRATION'
  AND timestamp > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')
GROUP BY service_name
HAVING COUNT(*) > 100;`,
  unknownServices: `SELECT DISTINCT service_name
FROM audit_logs
WHERE event_type = 'REGISTRATION'
  AND service_name NOT IN (SELECT name FROM allowed_services);`,
  authorizationFailures: `SELECT identity, COUNT(*) as denials
FROM audit_logs
WHERE result = 'DENY'
  AND timestamp > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')
GROUP BY identity
HAVING COUNT(*) > 10;`,
} as const;

export const UNKNOWN_SERVICES_SEED_SQL = SEED_QUERIES.unknownServices;

export interface AnomalyOptions {
  /** The end of the window; passed in so nothing here reads the clock. */
  now: Date;
  /** Window length in milliseconds: spikes and denials consider rows with `timestamp > now - sinceMs`. */
  sinceMs: number;
  /**
   * Whether unknown services are limited to the window too. False (the default) is the seed's query:
   * every registration kept. The CLI and the API set it when the window was given explicitly.
   */
  windowUnknownServices?: boolean;
  spikeThreshold?: number;
  denyThreshold?: number;
}

export interface RegistrationSpike {
  service_name: string | null;
  registrations: number;
}
export interface UnknownService {
  service_name: string;
  registrations: number;
}
export interface AuthorizationFailure {
  identity: string | null;
  denials: number;
  /** Of `denials`, the `AUTHN_FAILURE` rows: the identity was attempted, not verified. */
  failed_authentications: number;
}

export interface AnomalyReport {
  now: string;
  since: string;
  /** The window of the unknown-services analysis: `since`, or null for every kept row (the seed's). */
  unknownServicesSince: string | null;
  thresholds: { spike: number; deny: number };
  /** Rows in `allowed_services`; 0 means no policy set was ever loaded, so every service counts as unknown. */
  allowedServices: number;
  registrationSpikes: RegistrationSpike[];
  unknownServices: UnknownService[];
  authorizationFailures: AuthorizationFailure[];
  /** Total groups found by the three analyses. */
  findings: number;
}

/** The report as `pdp audit anomalies --format json` prints it and `GET /v1/audit/anomalies` answers it. */
export interface AnomalyReportJson {
  /** The database: its path for the CLI; only its file name over HTTP (answers never name server paths). */
  db: string;
  now: string;
  since: string;
  unknown_services_since: string | null;
  thresholds: { spike: number; deny: number };
  allowed_services: number;
  registration_spikes: RegistrationSpike[];
  unknown_services: UnknownService[];
  authorization_failures: AuthorizationFailure[];
  findings: number;
}

export function anomalyReportJson(report: AnomalyReport, db: string): AnomalyReportJson {
  return {
    db,
    now: report.now,
    since: report.since,
    unknown_services_since: report.unknownServicesSince,
    thresholds: report.thresholds,
    allowed_services: report.allowedServices,
    registration_spikes: report.registrationSpikes,
    unknown_services: report.unknownServices,
    authorization_failures: report.authorizationFailures,
    findings: report.findings,
  };
}

/** The window start for `since` before `now`, in the stored timestamp format (so it compares as text). */
export function windowStart(now: Date, sinceMs: number): string {
  return new Date(now.getTime() - sinceMs).toISOString();
}

/** The three analyses' statements, prepared once per connection (the benchmark reruns them). */
export function prepareAnomalyQueries(db: Database.Database) {
  return {
    registrationSpikes: db.prepare(REGISTRATION_SPIKES_SQL),
    unknownServices: db.prepare(UNKNOWN_SERVICES_SQL),
    unknownServicesWindowed: db.prepare(UNKNOWN_SERVICES_WINDOWED_SQL),
    authorizationFailures: db.prepare(AUTHORIZATION_FAILURES_SQL),
    allowedServices: db.prepare('SELECT COUNT(*) FROM allowed_services').pluck(),
  };
}

export function findRegistrationSpikes(db: Database.Database, since: string, threshold = DEFAULT_SPIKE_THRESHOLD): RegistrationSpike[] {
  return db.prepare(REGISTRATION_SPIKES_SQL).all({ since, threshold }) as RegistrationSpike[];
}

/** Without `since`, every kept registration (the seed's query); with it, those since then. */
export function findUnknownServices(db: Database.Database, since?: string): UnknownService[] {
  return (since === undefined ? db.prepare(UNKNOWN_SERVICES_SQL).all() : db.prepare(UNKNOWN_SERVICES_WINDOWED_SQL).all({ since })) as UnknownService[];
}

export function findAuthorizationFailures(db: Database.Database, since: string, threshold = DEFAULT_DENY_THRESHOLD): AuthorizationFailure[] {
  return db.prepare(AUTHORIZATION_FAILURES_SQL).all({ since, threshold }) as AuthorizationFailure[];
}

/**
 * Runs the three analyses in one read transaction so they see the same snapshot: spikes and denials
 * over the window, unknown services over every registration kept (the seed's query has no window)
 * unless `windowUnknownServices`.
 */
export function findAnomalies(db: Database.Database, options: AnomalyOptions): AnomalyReport {
  const spike = options.spikeThreshold ?? DEFAULT_SPIKE_THRESHOLD;
  const deny = options.denyThreshold ?? DEFAULT_DENY_THRESHOLD;
  const since = windowStart(options.now, options.sinceMs);
  const queries = prepareAnomalyQueries(db);
  const run = () => {
    const registrationSpikes = queries.registrationSpikes.all({ since, threshold: spike }) as RegistrationSpike[];
    const unknownServices = (options.windowUnknownServices ? queries.unknownServicesWindowed.all({ since }) : queries.unknownServices.all()) as UnknownService[];
    const authorizationFailures = queries.authorizationFailures.all({ since, threshold: deny }) as AuthorizationFailure[];
    const allowedServices = queries.allowedServices.get() as number;
    return { registrationSpikes, unknownServices, authorizationFailures, allowedServices };
  };
  // A deferred transaction only reads, so it works on a read-only connection too.
  const found = db.transaction(run).deferred();
  return {
    now: options.now.toISOString(),
    since,
    unknownServicesSince: options.windowUnknownServices ? since : null,
    thresholds: { spike, deny },
    ...found,
    findings: found.registrationSpikes.length + found.unknownServices.length + found.authorizationFailures.length,
  };
}
