/**
 * The signed identity for upstreams (`identity.assertion`): a JWS naming the caller, the route and the upstream's
 * origin as its audience. Signing happens once per identity, route and upstream for half the assertion's lifetime
 * (the signer's cache), so the usual request only copies a cached string into its headers.
 */
import { AssertionSigner, type AssertionIdentity } from '../../assertion/signer.js';
import { loadSigningKeys, publicJwks } from '../../assertion/keys.js';
import type { AssertionConfig } from '../../config/types.js';
import { compileField, type FieldReader, type FieldSource } from '../../identity/fields.js';
import type { Identity } from '../../identity/identity.js';
import type { Compiled, ErrorRenderer, Finalizer, MechanismType, RequestContext } from '../../chain/kinds.js';
import { isThenable, PASS, refusal, type Verdict } from '../../chain/verdict.js';

interface Loaded {
  readonly signer: AssertionSigner;
  readonly jwks: string;
}

/** The fields' readers by name, and the adapter the signer reads an identity through. */
function identityAdapter(config: AssertionConfig): (identity: Identity, request: FieldSource) => AssertionIdentity {
  const readers = new Map<string, FieldReader>(config.fields.map(({ name, field }) => [name, compileField(field)]));
  return (identity, request) => ({
    subject: identity.subject ?? identity.clientId ?? '',
    issuer: identity.issuer.issuer,
    claims: identity.claims,
    exp: identity.exp,
    field: (name) => readers.get(name)?.(identity, request),
  });
}

interface RouteAssertion {
  readonly loaded: () => Loaded;
  readonly adapt: (identity: Identity, request: FieldSource) => AssertionIdentity;
  readonly header: string;
  /** Told why a signature failed: each request it fails for is refused with 503. */
  readonly failed: (err: unknown) => void;
}

function routeFinalizer({ loaded, adapt, header, failed }: RouteAssertion, route: string, audience: string, errors: ErrorRenderer): Finalizer {
  const unsigned = refusal('inject', errors.unavailable('The identity assertion could not be signed'), 'assertion_unsigned');
  const refuse = (err: unknown): Verdict => {
    failed(err);
    return unsigned;
  };
  const attach = (ctx: RequestContext, jws: string): Verdict => {
    if (ctx.upstreamHeaders !== undefined) ctx.upstreamHeaders[header] = jws;
    return PASS;
  };
  return {
    finalize(ctx) {
      if (ctx.identity === undefined) return PASS;
      const jws = loaded().signer.assertion(adapt(ctx.identity, ctx), route, audience);
      if (!isThenable(jws)) return attach(ctx, jws);
      return jws.then((signed) => attach(ctx, signed), refuse);
    },
  };
}

/** The registry's `assertion`: keys are read when the config starts, before it serves a request. */
export const assertion: MechanismType<Finalizer> = {
  create({ config, logger }) {
    const options = config.identity.assertion;
    if (options === undefined) return undefined;
    let state: Loaded | undefined;
    const loaded = (): Loaded => {
      if (state === undefined) throw new Error('assertion keys used before the config started');
      return state;
    };
    const shared: RouteAssertion = {
      loaded,
      adapt: identityAdapter(options),
      header: options.header.toLowerCase(),
      failed: (err) => logger.error({ err }, 'an identity assertion could not be signed; the request got 503'),
    };
    const compiled: Compiled<Finalizer> = {
      async start() {
        const keys = await loadSigningKeys(options.keyFiles);
        const signer = new AssertionSigner({ keys, issuer: options.issuer, ttlSeconds: options.ttlMs / 1000, fields: options.fields.map((field) => field.name) });
        state = { signer, jwks: JSON.stringify(publicJwks(keys)) };
        logger.info({ kids: keys.map((key) => key.kid), signing: keys[0]?.kid }, 'assertion keys loaded');
      },
      publishedKeys: () => state?.jwks,
      forRoute(route, errors) {
        const upstream = config.upstreams.get(route.upstream);
        if (upstream === undefined) return undefined;
        return routeFinalizer(shared, route.name, upstream.url.origin, errors);
      },
    };
    return compiled;
  },
};
