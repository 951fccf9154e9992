import { FetchError, requestJson, type FetchLimits } from '../../../http/json-request.js';
import { parseKeyServerUrl } from '../../../config/values.js';
import { isPlainObject } from '../../../lib/json.js';

/**
 * The `introspection_endpoint` of an issuer's discovery document. The document must name this very issuer (else
 * another party's document could point the gateway at an endpoint of its choosing), and the endpoint must pass the
 * rule a configured one does.
 */
export async function discoverIntrospectionEndpoint(issuer: string, limits: FetchLimits): Promise<string> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let body: unknown;
  try {
    ({ body } = await requestJson(url, { method: 'GET', headers: { accept: 'application/json' } }, limits));
  } catch (error) {
    throw error instanceof FetchError ? new FetchError(`discovery ${url}: ${error.message}`) : error;
  }
  if (!isPlainObject(body) || body.issuer !== issuer) throw new FetchError(`discovery ${url}: the document does not name the issuer ${JSON.stringify(issuer)}`);
  if (typeof body.introspection_endpoint !== 'string') throw new FetchError(`discovery ${url}: introspection_endpoint missing`);
  const endpoint = parseKeyServerUrl(body.introspection_endpoint);
  if (typeof endpoint === 'string') throw new FetchError(`discovery ${url}: introspection_endpoint ${endpoint}`);
  return endpoint.href;
}
