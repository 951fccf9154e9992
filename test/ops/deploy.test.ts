import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { formatProblem, loadConfig } from '../../src/config/load.js';
import { hardeningProblems, podTemplates, readManifests, secretsReferenced, selects, validateManifest, type Manifest } from './k8s-manifests.js';

/**
 * The Kubernetes examples run on a real cluster: every object validates against its schema (core API and CRDs),
 * every pod spec passes a restricted Pod Security namespace with a numeric non-root user, the Secrets they read
 * are defined, authgate's pods have a NetworkPolicy, a PodDisruptionBudget and a ServiceMonitor, the proxy in
 * front is wired to /_authgate/verify with the identity headers, and the embedded gateway.yaml passes `check`.
 */

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(REPO, 'deploy/kubernetes');
const ENV = {
  AUTHGATE_ADMIN_TOKEN: 'example-admin-token', REDIS_URL: 'redis://redis:6379',
  OIDC_CLIENT_SECRET: 'example-client-secret', SESSION_KEY: 'an-example-session-key-of-at-least-32-bytes',
};
const VERIFY = '/_authgate/verify';

const imageUser = /^USER\s+(\d+):(\d+)\s*$/m.exec(await readFile(join(REPO, 'Dockerfile'), 'utf8'));
const files = (await readdir(DEPLOY)).filter((name) => name.endsWith('.yaml'));

interface EmbeddedConfig {
  server?: { forward_auth?: string };
  identity?: { headers?: Record<string, string> };
}

const embeddedConfigs = (manifests: readonly Manifest[]): string[] =>
  manifests.flatMap((manifest) => (manifest.kind === 'ConfigMap' ? (manifest.data?.['gateway.yaml'] ?? []) : []));

/** The identity headers the embedded config sends upstream, lower-cased. */
function identityHeaders(manifests: readonly Manifest[]): string[] {
  const config = parse(embeddedConfigs(manifests)[0] ?? '{}') as EmbeddedConfig;
  return Object.keys(config.identity?.headers ?? {}).map((name) => name.toLowerCase());
}

/** What the proxy copies from a forward-auth answer onto the request: the identity headers, and Cookie without authgate's cookies. */
const copiedHeaders = (manifests: readonly Manifest[]): string[] => [...identityHeaders(manifests), 'cookie'];

const lower = (names: readonly string[] | string | undefined): string[] =>
  (typeof names === 'string' ? names.split(',') : (names ?? [])).map((name) => name.trim().toLowerCase());

const isAuthgate = (image: string | undefined): boolean => image?.includes('/authgate:') ?? false;
const authgatePods = (manifests: readonly Manifest[]) => podTemplates(manifests).filter(({ spec }) => spec.containers.some((c) => isAuthgate(c.image)));
const ofKind = (manifests: readonly Manifest[], kind: string) => manifests.filter((manifest) => manifest.kind === kind);
const at = (object: unknown, path: string): unknown =>
  path.split('.').reduce<unknown>((value, key) => (value as Record<string, unknown> | undefined)?.[key], object);

describe('Dockerfile USER', () => {
  it('is a numeric uid:gid that is not root', () => {
    expect(imageUser?.[1]).toBeDefined();
    expect(Number(imageUser?.[1])).toBeGreaterThan(0);
  });
});

describe.each(files)('deploy/kubernetes/%s', (name) => {
  const load = () => readManifests(join(DEPLOY, name));

  it('validates every object against its schema', async () => {
    const manifests = await load();
    expect(manifests.length).toBeGreaterThan(0);
    for (const manifest of manifests) await validateManifest(manifest);
  });

  it('carries an embedded gateway.yaml that passes `authgate check`', async () => {
    const configs = embeddedConfigs(await load());
    expect(configs.length).toBe(1);
    const file = join(await mkdtemp(join(tmpdir(), 'authgate-deploy-')), 'gateway.yaml');
    await writeFile(file, configs[0] as string);
    const loaded = await loadConfig(file, ENV);
    expect(loaded.problems.map(formatProblem)).toEqual([]);
  });

  it('hardens every pod spec: numeric non-root user, RuntimeDefault seccomp, read-only root, no privilege, resources', async () => {
    const pods = podTemplates(await load());
    expect(pods.length).toBeGreaterThan(0);
    for (const { owner, spec } of pods) expect(hardeningProblems(spec), owner.metadata.name).toEqual([]);
    for (const { spec } of authgatePods(await load())) {
      expect(spec.securityContext?.runAsUser, 'the image USER').toBe(Number(imageUser?.[1]));
      expect(spec.securityContext?.runAsGroup, 'the image USER group').toBe(Number(imageUser?.[2]));
    }
  });

  it('uses no snippet annotations', async () => {
    const keys = (await load()).flatMap((manifest) => Object.keys(manifest.metadata.annotations ?? {}));
    expect(keys.filter((key) => key.includes('snippet'))).toEqual([]);
  });

  it('defines every Secret its pods read', async () => {
    const manifests = await load();
    const defined = ofKind(manifests, 'Secret').map((secret) => `${secret.metadata.namespace}/${secret.metadata.name}`);
    for (const { owner, spec } of podTemplates(manifests)) {
      for (const secret of secretsReferenced(spec)) expect(defined).toContain(`${owner.metadata.namespace}/${secret}`);
    }
  });

  it("gives authgate's pods a NetworkPolicy limiting the gateway port to named peers, a PodDisruptionBudget and a ServiceMonitor", async () => {
    const manifests = await load();
    const pods = authgatePods(manifests);
    expect(pods.length).toBe(1);
    for (const { labels } of pods) {
      const policy = ofKind(manifests, 'NetworkPolicy').find((np) => selects(at(np, 'spec.podSelector.matchLabels') as Record<string, string>, labels));
      const rules = (at(policy, 'spec.ingress') ?? []) as { from?: unknown[]; ports?: { port: number }[] }[];
      const gatewayRules = rules.filter((rule) => rule.ports?.some((port) => port.port === 8080));
      expect(gatewayRules.length).toBeGreaterThan(0);
      for (const rule of gatewayRules) expect(rule.from?.length).toBeGreaterThan(0);
      expect(ofKind(manifests, 'PodDisruptionBudget').some((pdb) => selects(at(pdb, 'spec.selector.matchLabels') as Record<string, string>, labels))).toBe(true);

      const service = ofKind(manifests, 'Service').find((svc) => selects(at(svc, 'spec.selector') as Record<string, string>, labels));
      const monitor = ofKind(manifests, 'ServiceMonitor').find((sm) => selects(at(sm, 'spec.selector.matchLabels') as Record<string, string>, service?.metadata.labels ?? {}));
      const endpoints = (at(monitor, 'spec.endpoints') ?? []) as { port: string; path: string }[];
      const servicePorts = ((at(service, 'spec.ports') ?? []) as { name: string; port: number }[]).filter((port) => port.port === 9090);
      expect(endpoints.some((endpoint) => endpoint.path === '/metrics' && servicePorts.some((port) => port.name === endpoint.port))).toBe(true);
    }
  });
});

describe('the proxy in front asks /_authgate/verify and copies the identity headers', () => {
  const manifestsOf = (name: string) => readManifests(join(DEPLOY, name));
  const forwardAuthOf = (manifests: readonly Manifest[]) => (parse(embeddedConfigs(manifests)[0] ?? '{}') as EmbeddedConfig).server?.forward_auth;

  it('ingress-nginx: auth-url and auth-response-headers', async () => {
    const manifests = await manifestsOf('ingress-nginx.yaml');
    const annotations = ofKind(manifests, 'Ingress')[0]?.metadata.annotations ?? {};
    expect(annotations['nginx.ingress.kubernetes.io/auth-url']).toMatch(new RegExp(`${VERIFY}\\?host=\\$host$`));
    expect(lower(annotations['nginx.ingress.kubernetes.io/auth-response-headers'])).toEqual(copiedHeaders(manifests));
    expect(forwardAuthOf(manifests)).toBe('ingress-nginx');
  });

  it('Traefik: a ForwardAuth middleware that does not trust client X-Forwarded-*, behind one that strips identity headers', async () => {
    const manifests = await manifestsOf('traefik.yaml');
    const middlewares = ofKind(manifests, 'Middleware');
    const forwardAuth = middlewares.map((mw) => at(mw, 'spec.forwardAuth') as Record<string, unknown> | undefined).find(Boolean);
    expect(forwardAuth?.address).toMatch(new RegExp(`${VERIFY}$`));
    expect(forwardAuth?.trustForwardHeader).toBe(false);
    expect(lower(forwardAuth?.authResponseHeaders as string[])).toEqual(copiedHeaders(manifests));
    const stripped = middlewares.map((mw) => at(mw, 'spec.headers.customRequestHeaders') as Record<string, string> | undefined).find(Boolean);
    expect(lower(Object.keys(stripped ?? {}))).toEqual(identityHeaders(manifests));
    expect(forwardAuthOf(manifests)).toBe('traefik');
  });

  it('Envoy Gateway: a SecurityPolicy extAuth http service with the verify path as prefix, allowed by a ReferenceGrant', async () => {
    const manifests = await manifestsOf('envoy-gateway.yaml');
    const policy = ofKind(manifests, 'SecurityPolicy')[0];
    const http = at(policy, 'spec.extAuth.http') as { path: string; headersToBackend: string[]; backendRefs: { name: string; namespace: string; port: number }[] };
    expect(http.path).toBe(VERIFY);
    expect(lower(http.headersToBackend)).toEqual(copiedHeaders(manifests));
    expect(lower(at(policy, 'spec.extAuth.headersToExtAuth') as string[])).toContain('authorization');
    const backend = http.backendRefs[0];
    const service = ofKind(manifests, 'Service').find((svc) => svc.metadata.name === backend?.name && svc.metadata.namespace === backend.namespace);
    expect((at(service, 'spec.ports') as { port: number }[]).map((port) => port.port)).toContain(backend?.port);
    const grant = ofKind(manifests, 'ReferenceGrant').find((rg) => rg.metadata.namespace === backend?.namespace);
    expect(at(grant, 'spec.from')).toContainEqual({ group: 'gateway.envoyproxy.io', kind: 'SecurityPolicy', namespace: policy?.metadata.namespace });
    expect(forwardAuthOf(manifests)).toBe('envoy');
  });

  it('Istio: a CUSTOM AuthorizationPolicy naming an envoyExtAuthzHttp provider with the verify path as prefix', async () => {
    const manifests = await manifestsOf('istio.yaml');
    const providers = at(ofKind(manifests, 'IstioOperator')[0], 'spec.meshConfig.extensionProviders') as { name: string; envoyExtAuthzHttp: Record<string, unknown> }[];
    const policy = ofKind(manifests, 'AuthorizationPolicy')[0];
    expect(at(policy, 'spec.action')).toBe('CUSTOM');
    const provider = providers.find((p) => p.name === at(policy, 'spec.provider.name'))?.envoyExtAuthzHttp;
    expect(provider?.pathPrefix).toBe(VERIFY);
    expect(provider?.service).toBe('authgate.auth.svc.cluster.local');
    expect(lower(provider?.includeRequestHeadersInCheck as string[])).toContain('authorization');
    expect(lower(provider?.headersToUpstreamOnAllow as string[])).toEqual(copiedHeaders(manifests));
    expect(forwardAuthOf(manifests)).toBe('envoy');
  });

  it('the example Redis keeps revocations across a restart: append-only file on a persistent volume', async () => {
    const manifests = await manifestsOf('redis-replicas.yaml');
    const redis = ofKind(manifests, 'StatefulSet').find((set) => set.metadata.name === 'authgate-redis');
    const args = (at(redis, 'spec.template.spec.containers') as { args: string[] }[])[0]?.args ?? [];
    expect(args[args.indexOf('--appendonly') + 1]).toBe('yes');
    expect(args[args.indexOf('--dir') + 1]).toBe('/data');
    expect((at(redis, 'spec.volumeClaimTemplates') as { metadata: { name: string } }[]).map((claim) => claim.metadata.name)).toContain('data');
  });
});
