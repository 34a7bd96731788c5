// What buildServer is handed (ServerDeps), and the shapes it shares with what it is handed: the body
// of one check, the caller and its authenticator, the audit analyses, the other workers of a cluster.
// Types only: everything with I/O is built by `pdp serve` (or a test) and handed in.
import type { FastifyInstance, FastifyRequest, FastifyServerOptions } from 'fastify';
import type { AnomalyReportJson } from '../audit/anomalies';
import type { AuditRecorder } from '../audit/recorder';
import type { Checkpointer } from '../audit/checkpointer';
import type { Engine } from '../engine';
import type { AuthnError } from './errors';
import type { Reloader } from './reload';

export interface AuthorizeBody {
  identity?: string;
  action: string;
  resource: string;
  namespace?: string;
  context?: Record<string, string | number | boolean | null> & { source_ip?: string; event_type?: string; instance_id?: string };
  credentials?: { token?: string; certificate?: string };
  explain?: boolean;
}

/** Who is calling the PDP (a PEP), established by TLS client certificates or bearer tokens. */
export interface Caller {
  identity: string;
  via: 'mtls' | 'token' | 'loopback';
}

/** Authentication of callers and subjects, supplied by `pdp serve` when TLS or tokens are on. */
export interface Authenticator {
  /** Establishes the caller; throws ApiError(401/429) when it cannot. */
  authenticateCaller(request: FastifyRequest): Promise<Caller> | Caller;
  /** Turns `credentials` into a verified subject identity; throws AuthnError (`invalid_subject_credentials`) when they do not verify. */
  authenticateSubject?(credentials: NonNullable<AuthorizeBody['credentials']>, request: FastifyRequest): Promise<string> | string;
  /**
   * Which kinds of subject credentials this server can verify (tokens need --tokens, certificates
   * --client-ca). A kind it cannot is a request it cannot serve (400), not a bad credential (422).
   */
  verifiesSubject?: { token: boolean; certificate: boolean };
  /** Whether the request carries caller credentials at all (a bearer token, a client certificate). */
  hasCredentials?(request: FastifyRequest): boolean;
  /**
   * Watches the TLS server's connections and reports the ones refused before any request (a client
   * certificate refused at the handshake): the server audits, counts or summarises each report.
   */
  watchConnections?(server: import('node:tls').Server, refused: (source: string, error: AuthnError) => void): void;
}

/** The anomaly analyses of the audit store (`pdp audit anomalies`), handed in by `pdp serve`: the server never opens SQLite. */
export type AuditAnomalies = (options: { now: Date; sinceMs: number; windowUnknownServices?: boolean; spikeThreshold?: number; denyThreshold?: number }) => AnomalyReportJson;

export interface ServerDeps {
  engine: Engine;
  recorder: AuditRecorder;
  reloader: Reloader;
  /** Entries in the decision cache per policy version; 0 disables it. */
  cacheEntries?: number;
  nodeName?: string;
  bodyLimit?: number;
  /**
   * Milliseconds a client has to send a whole request (headers and body); then 408 and the
   * connection is closed. Default 30 s. Without a bound, a client trickling a body a byte at a time
   * holds its connection (and file descriptor) forever without ever failing authentication.
   */
  requestTimeoutMs?: number;
  /** True once a shutdown has begun (`--shutdown-delay`): `/v1/ready` answers 503 while everything else is still served. */
  stopping?: () => boolean;
  /** Absent: the loopback development default (every local caller may use authorize and operations). */
  authenticator?: Authenticator;
  logger?: FastifyServerOptions['logger'];
  https?: import('node:https').ServerOptions;
  /** Extra fastify plugins to register first (e.g. rate limiting), given the instance. */
  plugins?: ((app: FastifyInstance) => Promise<void>)[];
  /** At most one summary row per locked-out source per this many ms (default 60 s); see refusals.ts. */
  refusalSummaryMs?: number;
  /** `GET /v1/audit/anomalies`; absent: that endpoint answers 404. */
  auditAnomalies?: AuditAnomalies;
  now?: () => Date;
  defaultMetrics?: boolean;
  /** `pdp serve --workers N`: the other workers of the cluster, reached through the primary. */
  cluster?: WorkerCluster;
  /** The audit checkpointer thread beside the recorder (audit/checkpointer.ts), for its metric. */
  checkpointer?: Pick<Checkpointer, 'onPass'>;
}

/** What one other worker answered to a reload relayed to it, or `error` (e.g. `timeout`). */
export interface OtherWorkerReload {
  worker: number;
  outcome?: { ok: boolean; version?: string; serving?: string; message?: string; auditUnavailable?: true };
  error?: string;
}

/**
 * This worker's view of the others (`pdp serve --workers N`). A reload through the API must reach
 * every worker (a grant turned into a deny must not keep being allowed by the others), and a
 * metrics scrape must be the sum over every worker (each has its own counters).
 */
export interface WorkerCluster {
  /** Reloads every other ready worker with `trigger`; resolves once each has answered (or timed out). */
  reloadOthers(trigger: string, sourceIp?: string): Promise<OtherWorkerReload[]>;
  /** Prometheus text: every ready worker's metrics (this one's included), aggregated. */
  metrics(): Promise<string>;
}
