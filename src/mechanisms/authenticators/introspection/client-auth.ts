import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SignJWT } from 'jose';
import type { JsonRequest } from '../../../http/json-request.js';
import type { IntrospectionConfig } from '../../../config/introspection.js';

/** Builds the introspection request for one token, with the client's credentials in the form the IdP expects. */
export type IntrospectionRequestBuilder = (token: string, endpoint: string) => Promise<JsonRequest>;

/** How long a client assertion is good for: only for the one request it travels with. */
const ASSERTION_LIFETIME_S = 60;
const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const FORM_HEADERS = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' } as const;

/** RFC 6749 §2.3.1: the client id and secret are form-urlencoded before they are joined for Basic. */
function basicCredentials(clientId: string, secret: string): string {
  const encode = (text: string): string => new URLSearchParams({ '': text }).toString().slice(1);
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString('base64')}`;
}

/** RFC 7523 §3: iss = sub = client id, aud = the endpoint, a fresh jti, a short exp. */
function clientAssertion(clientId: string, endpoint: string, key: KeyObject, algorithm: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: algorithm, typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(endpoint)
    .setJti(randomUUID())
    .setIssuedAt()
    .setExpirationTime(`${ASSERTION_LIFETIME_S}s`)
    .sign(key);
}

/** Reads the client's private key once (a `private_key_jwt` client); the builder itself does no file I/O. */
export async function compileIntrospectionRequest(config: IntrospectionConfig): Promise<IntrospectionRequestBuilder> {
  const { clientId, auth } = config;
  switch (auth.method) {
    case 'client_secret_basic': {
      const headers = { ...FORM_HEADERS, authorization: basicCredentials(clientId, auth.secret.reveal()) };
      return (token) => Promise.resolve({ method: 'POST', headers, body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString() });
    }
    case 'client_secret_post':
      return (token) => Promise.resolve({
        method: 'POST',
        headers: FORM_HEADERS,
        body: new URLSearchParams({ token, token_type_hint: 'access_token', client_id: clientId, client_secret: auth.secret.reveal() }).toString(),
      });
    case 'private_key_jwt': {
      const key = createPrivateKey(await readFile(auth.keyFile));
      return async (token, endpoint) => {
        const client_assertion = await clientAssertion(clientId, endpoint, key, auth.algorithm);
        const body = new URLSearchParams({ token, token_type_hint: 'access_token', client_id: clientId, client_assertion_type: JWT_BEARER_ASSERTION, client_assertion });
        return { method: 'POST', headers: FORM_HEADERS, body: body.toString() };
      };
    }
  }
}
