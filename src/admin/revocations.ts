import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { didYouMean } from '../config/suggest.js';
import { bearerToken } from '../http/bearer.js';
import { Errors, methodNotAllowed, sendError, writeJson, type GatewayError } from '../http/responses.js';
import type { Logger } from '../observability/log.js';
import { isPlainObject } from '../lib/json.js';
import type { Store } from '../store/types.js';

/** Revocation requests are a few hundred bytes; anything near this is not one. */
export const MAX_BODY_BYTES = 16 * 1024;
export const REVOCATION_TOO_LARGE: GatewayError = { status: 413, code: 'payload_too_large', description: 'The body is larger than 16 KiB' };
const MAX_ID_LENGTH = 1024;
const JTI_PATH_PREFIX = '/revocations/jti/';

const ADMIN_REALM = 'Bearer realm="authgate-admin"';
const Refusals = {
  unauthorized: { status: 401, code: 'unauthorized', description: 'A valid admin token is required', headers: { 'www-authenticate': ADMIN_REALM } },
  writesDisabled: { status: 403, code: 'forbidden', description: 'Write endpoints are disabled: no admin token is configured' },
  notFound: { status: 404, code: 'not_found', description: 'No such revocation endpoint' },
  notRevoked: { status: 404, code: 'not_found', description: 'This token identifier is not revoked' },
  badJson: { status: 400, code: 'invalid_request', description: 'The body is not valid JSON' },
  badShape: {
    status: 400,
    code: 'invalid_request',
    description: 'Expected {"jti", "exp", "issuer"?} or {"subject", "issuer"?, "before"?}',
  },
  badPath: { status: 400, code: 'invalid_request', description: 'The token identifier in the path is invalid' },
  tooLarge: REVOCATION_TOO_LARGE,
} as const satisfies Record<string, GatewayError>;

function allowing(methods: readonly string[]): { methods: readonly string[]; refusal: GatewayError } {
  return { methods, refusal: methodNotAllowed(methods) };
}
const COLLECTION_METHODS = allowing(['POST']);
const LOOKUP_METHODS = allowing(['GET', 'HEAD']);

export type RevocationRequest =
  | { readonly kind: 'jti'; readonly jti: string; readonly exp: number; readonly issuer: string | undefined }
  | { readonly kind: 'subject'; readonly subject: string; readonly before: number | undefined; readonly issuer: string | undefined };

const JTI_KEYS = new Set(['jti', 'exp', 'issuer']);
const SUBJECT_KEYS = new Set(['subject', 'before', 'issuer']);

/** Validates a POST body; undefined when it is not exactly one of the two documented shapes. */
export function parseRevocationRequest(body: unknown): RevocationRequest | undefined {
  if (!isPlainObject(body)) return undefined;
  const fields = body;
  const keys = Object.keys(fields);
  const issuer = fields['issuer'];
  if (issuer !== undefined && !isId(issuer)) return undefined;
  if ('jti' in fields) {
    const { jti, exp } = fields;
    if (!keys.every((key) => JTI_KEYS.has(key)) || !isId(jti) || !isEpochSeconds(exp)) return undefined;
    return { kind: 'jti', jti, exp, issuer };
  }
  if ('subject' in fields) {
    const { subject, before } = fields;
    if (!keys.every((key) => SUBJECT_KEYS.has(key)) || !isId(subject)) return undefined;
    if (before !== undefined && !isEpochSeconds(before)) return undefined;
    return { kind: 'subject', subject, before, issuer };
  }
  return undefined;
}

function isId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH;
}

function isEpochSeconds(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * The admin revocation API, mounted under `/revocations` by the admin listener.
 * Writes need `Authorization: Bearer <admin.token>` and are refused with 403 when no token is configured.
 * Reads need the same token when one is configured; without one they are open like the rest of the
 * admin listener (which binds to loopback by default), since they reveal no more than yes or no.
 */
export function createRevocationApi(deps: RevocationApiDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const api = new RevocationApi(deps);
  return (req, res) => api.handle(req, res);
}

interface RevocationApiDeps {
  readonly store: Store;
  readonly adminToken: string;
  readonly logger: Logger;
  /**
   * The running config's issuers, name → `iss`. Requests name an issuer as the config does; revocations are kept
   * under its `iss` (a renamed entry keeps them). A name not here would hold for no token.
   */
  issuers(): ReadonlyMap<string, string>;
}

class RevocationApi {
  private readonly tokenDigest: Buffer | undefined;

  constructor(private readonly deps: RevocationApiDeps) {
    this.tokenDigest = deps.adminToken === '' ? undefined : sha256(deps.adminToken);
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const requestId = randomUUID();
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const collection = url.pathname === '/revocations';
    const jtiLookup = url.pathname.startsWith(JTI_PATH_PREFIX) && url.pathname.length > JTI_PATH_PREFIX.length;
    if (!collection && !jtiLookup) return sendError(res, Refusals.notFound, requestId);
    const allowed = collection ? COLLECTION_METHODS : LOOKUP_METHODS;
    if (!allowed.methods.includes(req.method ?? '')) return sendError(res, allowed.refusal, requestId);
    if (jtiLookup) return this.lookUpJti(req, res, requestId, url);
    this.revoke(req, res, requestId).catch((error: unknown) => {
      this.deps.logger.error({ requestId, err: error }, 'admin: revocation request failed');
      sendError(res, Errors.internalError, requestId);
    });
  }

  /** Someone without the admin token knocking: worth a line (who, never what they sent). */
  private logRefusedToken(req: IncomingMessage, requestId: string): void {
    this.deps.logger.warn({ requestId, peer: req.socket.remoteAddress, method: req.method }, 'admin: revocation API request without a valid admin token refused');
  }

  private authorized(req: IncomingMessage): boolean {
    if (this.tokenDigest === undefined) return false;
    const header = req.headers.authorization;
    const presented = header === undefined ? undefined : bearerToken(header);
    return presented !== undefined && timingSafeEqual(sha256(presented), this.tokenDigest);
  }

  private async revoke(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const request = await this.readRequest(req);
    if ('status' in request) {
      if (request === Refusals.tooLarge) res.setHeader('connection', 'close');
      if (request === Refusals.unauthorized) this.logRefusedToken(req, requestId);
      return sendError(res, request, requestId);
    }
    const revocation = request.kind === 'jti' ? request : { ...request, before: request.before ?? Math.floor(Date.now() / 1000) };
    const { revocations } = this.deps.store;
    const iss = this.issOf(revocation.issuer);
    try {
      if (revocation.kind === 'jti') await revocations.revokeJti(revocation.jti, revocation.exp, iss);
      else await revocations.revokeSubject(revocation.subject, revocation.before, iss);
    } catch (error) {
      this.deps.logger.error({ requestId, revocation, err: error }, 'admin: revocation not replicated');
      return sendError(res, Errors.storeUnavailable, requestId);
    }
    this.deps.logger.info({ requestId, revocation }, 'admin: revoked');
    writeJson(res, 201, { revoked: { ...revocation, issuer: revocation.issuer ?? null } }, { 'x-request-id': requestId });
  }

  /** The request a POST asks for, or the refusal it gets. */
  private async readRequest(req: IncomingMessage): Promise<RevocationRequest | GatewayError> {
    if (this.tokenDigest === undefined) return Refusals.writesDisabled;
    if (!this.authorized(req)) return Refusals.unauthorized;
    const body = await readBody(req);
    if (body === 'too_large') return Refusals.tooLarge;
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return Refusals.badJson;
    }
    const request = parseRevocationRequest(parsed);
    if (request === undefined) return Refusals.badShape;
    return this.unknownIssuer(request.issuer) ?? request;
  }

  /** The `iss` of the issuer a request names (already checked to be configured). */
  private issOf(name: string | undefined): string | undefined {
    return name === undefined ? undefined : this.deps.issuers().get(name);
  }

  /** A refusal naming the configured issuers when `issuer` is given and is none of them. */
  private unknownIssuer(issuer: string | undefined): GatewayError | undefined {
    const names = [...this.deps.issuers().keys()];
    if (issuer === undefined || names.includes(issuer)) return undefined;
    const description = `Unknown issuer "${issuer}"${didYouMean(issuer, names)} (the issuers are the names under issuers in the config: ${names.join(', ') || 'none'})`;
    return { status: 400, code: 'invalid_request', description };
  }

  private lookUpJti(req: IncomingMessage, res: ServerResponse, requestId: string, url: URL): void {
    if (this.tokenDigest !== undefined && !this.authorized(req)) {
      this.logRefusedToken(req, requestId);
      return sendError(res, Refusals.unauthorized, requestId);
    }
    let jti: string;
    try {
      jti = decodeURIComponent(url.pathname.slice(JTI_PATH_PREFIX.length));
    } catch {
      return sendError(res, Refusals.badPath, requestId);
    }
    const issuer = url.searchParams.get('issuer') ?? undefined;
    if (!isId(jti) || (issuer !== undefined && !isId(issuer))) return sendError(res, Refusals.badPath, requestId);
    const unknown = this.unknownIssuer(issuer);
    if (unknown !== undefined) return sendError(res, unknown, requestId);
    if (!this.deps.store.revocations.isJtiRevoked(jti, this.issOf(issuer))) return sendError(res, Refusals.notRevoked, requestId);
    writeJson(res, 200, { jti, issuer: issuer ?? null, revoked: true }, { 'x-request-id': requestId });
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The body as text, or 'too_large' as soon as it passes MAX_BODY_BYTES (the rest is not read). */
export function readBody(req: IncomingMessage): Promise<string | 'too_large'> {
  const declared = Number(req.headers['content-length']);
  if (declared > MAX_BODY_BYTES) return Promise.resolve('too_large');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners('data');
        req.pause();
        resolve('too_large');
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });
}
