import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { connectionCertificate, type ClientCertificate } from '../http/client-certificate.js';
import type { Identity } from '../identity/identity.js';
import type { RateLimitDecision } from '../store/types.js';
import type { Credential, Plan, RequestContext, RequestFacts, Transport } from './kinds.js';

/** What the listener knows besides the facts: the TLS connection, whose peer certificate is read only when asked. */
export interface TransportFacts extends RequestFacts {
  readonly tls?: TLSSocket | undefined;
  /** The request body, for the few endpoints that read one (back-channel logout); undefined when there is none. */
  readonly body?: AsyncIterable<Buffer> | undefined;
}

/**
 * One request's context. Every field is set in the constructor, so all contexts share one shape and the steps'
 * property reads stay monomorphic.
 */
export class Context implements RequestContext {
  readonly method: string;
  readonly target: string;
  readonly host: string;
  readonly headers: IncomingHttpHeaders;
  readonly headersDistinct: NodeJS.Dict<string[]>;
  readonly peerIp: string;
  readonly trustedPeer: boolean;
  readonly proto: 'http' | 'https';
  readonly transport: Transport;
  readonly upgrade: boolean;
  readonly requestId: string;
  private readonly tls: TLSSocket | undefined;
  private readonly body: AsyncIterable<Buffer> | undefined;
  plan: Plan | undefined = undefined;
  path = '';
  query = '';
  clientIp = '';
  credential: Credential | undefined = undefined;
  identity: Identity | undefined = undefined;
  limit: RateLimitDecision | undefined = undefined;
  answerHeaders: readonly string[] | undefined = undefined;
  upstreamHeaders: OutgoingHttpHeaders | undefined = undefined;
  reportAs: RequestContext | undefined = undefined;

  constructor(facts: TransportFacts) {
    this.method = facts.method;
    this.target = facts.target;
    this.host = facts.host;
    this.headers = facts.headers;
    this.headersDistinct = facts.headersDistinct;
    this.peerIp = facts.peerIp;
    this.trustedPeer = facts.trustedPeer;
    this.proto = facts.proto;
    this.transport = facts.transport;
    this.upgrade = facts.transport === 'upgrade';
    this.requestId = facts.requestId;
    this.tls = facts.tls;
    this.body = facts.body;
  }

  async readBody(maxBytes: number): Promise<string | undefined> {
    if (this.body === undefined) return undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of this.body) {
      size += chunk.length;
      if (size > maxBytes) return undefined;
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  peerCertificate(): ClientCertificate | undefined {
    return this.tls === undefined ? undefined : connectionCertificate(this.tls);
  }
}
