import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

/**
 * A certified OpenID Provider (panva/oidc-provider) on loopback, with token introspection and revocation on and
 * opaque access tokens for the client-credentials grant. Resource indicators set the token's `aud`.
 * Counts the introspection requests it receives, and can be stopped and started again on the same port.
 */
export interface OidcProvider {
  readonly issuer: string;
  readonly introspectionEndpoint: string;
  readonly introspections: number;
  /** Client secret of the `client_secret_basic` and `client_secret_post` clients. */
  readonly secret: string;
  /** The private key the `private_key_jwt` client signs its assertions with (its public key is registered). */
  readonly clientKey: KeyObject;
  /** An opaque access token for `resource` via client credentials (the resource becomes `aud`). */
  issueAccessToken(resource: string, scope?: string): Promise<string>;
  revoke(token: string): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export const CLIENTS = { basic: 'gw-basic', post: 'gw-post', jwt: 'gw-jwt', issuer: 'issuing-app' } as const;
const SECRET = 'a-client-secret-of-some-length-0123456789';

function clientMetadata(clientKey: KeyObject): object[] {
  const common = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };
  return [
    { ...common, client_id: CLIENTS.issuer, client_secret: SECRET, token_endpoint_auth_method: 'client_secret_basic' },
    { ...common, client_id: CLIENTS.basic, client_secret: SECRET, token_endpoint_auth_method: 'client_secret_basic' },
    { ...common, client_id: CLIENTS.post, client_secret: SECRET, token_endpoint_auth_method: 'client_secret_post' },
    {
      ...common,
      client_id: CLIENTS.jwt,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: { keys: [{ ...createPublicKey(clientKey).export({ format: 'jwk' }), alg: 'ES256', use: 'sig' }] },
    },
  ];
}

function createProvider(issuer: string, clientKey: KeyObject): Provider {
  return new Provider(issuer, {
    clients: clientMetadata(clientKey),
    features: {
      clientCredentials: { enabled: true },
      // Any authenticated client may introspect and revoke (the provider's defaults, stated so it does not warn).
      introspection: { enabled: true, allowedPolicy: () => true },
      revocation: { enabled: true, allowedPolicy: () => true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo: (_ctx: unknown, resource: string) => ({ scope: 'orders:read orders:write', audience: resource, accessTokenFormat: 'opaque' }),
      },
    },
    ttl: { ClientCredentials: 600 },
  });
}

async function listen(server: Server, port: number): Promise<number> {
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

export async function startOidcProvider(): Promise<OidcProvider> {
  const clientKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  let introspections = 0;
  let provider: Provider | undefined;
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.url === '/token/introspection') introspections += 1;
    void provider!.callback()(req, res);
  };
  let server = createServer(handler);
  const port = await listen(server, 0);
  const issuer = `http://127.0.0.1:${port}`;
  provider = createProvider(issuer, clientKey);
  const form = async (path: string, fields: Record<string, string>): Promise<Record<string, unknown>> => {
    const response = await fetch(`${issuer}${path}`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${CLIENTS.issuer}:${SECRET}`).toString('base64')}` },
      body: new URLSearchParams(fields),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${path}: ${response.status} ${text}`);
    return text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
  };
  const handle: OidcProvider = {
    issuer,
    introspectionEndpoint: `${issuer}/token/introspection`,
    get introspections() {
      return introspections;
    },
    secret: SECRET,
    clientKey,
    async issueAccessToken(resource, scope = 'orders:read') {
      const body = await form('/token', { grant_type: 'client_credentials', resource, scope });
      return body.access_token as string;
    },
    async revoke(token) {
      await form('/token/revocation', { token });
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    async start() {
      server = createServer(handler);
      await listen(server, port);
    },
    async close() {
      if (server.listening) await handle.stop();
    },
  };
  return handle;
}
