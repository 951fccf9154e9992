import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';

/**
 * Kubernetes manifests as the deploy tests read them, validated with the OpenAPI schemas shipped by the
 * kubernetes-models packages (core API and the CRDs we use), plus the hardening every pod spec must carry.
 */

export interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  readonly spec?: Record<string, unknown>;
  readonly data?: Record<string, string>;
  readonly stringData?: Record<string, string>;
}

/** Where each API group's models live: core groups in kubernetes-models, CRDs in their own packages. */
const CRD_PACKAGES: Record<string, string> = {
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
  'gateway.envoyproxy.io': '@kubernetes-models/envoy-gateway',
  'gateway.networking.k8s.io': '@kubernetes-models/gateway-api',
  'security.istio.io': '@kubernetes-models/istio',
  'install.istio.io': '@kubernetes-models/istio',
  'traefik.io': '@kubernetes-models/traefik',
};

type ModelClass = new (data: unknown) => { validate(): void };

async function modelFor(apiVersion: string, kind: string): Promise<ModelClass> {
  const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
  const pkg = CRD_PACKAGES[group] ?? 'kubernetes-models';
  const models = (await import(`${pkg}/${apiVersion}`)) as Record<string, ModelClass | undefined>;
  const model = models[kind];
  if (!model) throw new Error(`no schema for ${apiVersion} ${kind} in ${pkg}`);
  return model;
}

/** Throws with the schema's complaint when the manifest does not validate. */
export async function validateManifest(manifest: Manifest): Promise<void> {
  const Model = await modelFor(manifest.apiVersion, manifest.kind);
  try {
    new Model(manifest).validate();
  } catch (err) {
    throw new Error(`${manifest.kind}/${manifest.metadata.name}: ${(err as Error).message}`);
  }
}

export async function readManifests(file: string): Promise<Manifest[]> {
  const documents = parseAllDocuments(await readFile(file, 'utf8'));
  for (const document of documents) if (document.errors.length > 0) throw new Error(`${file}: ${document.errors.join('; ')}`);
  return documents.map((document) => document.toJS() as Manifest).filter((manifest) => manifest !== null);
}

interface Container {
  name: string;
  image?: string;
  securityContext?: Record<string, unknown>;
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  env?: { valueFrom?: { secretKeyRef?: { name: string } } }[];
}

export interface PodSpec {
  securityContext?: Record<string, unknown>;
  containers: Container[];
  initContainers?: Container[];
  volumes?: { secret?: { secretName: string }; configMap?: { name: string } }[];
}

const WORKLOADS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job']);

/** Each workload's pod template, with its labels. */
export function podTemplates(manifests: readonly Manifest[]): { owner: Manifest; labels: Record<string, string>; spec: PodSpec }[] {
  return manifests
    .filter((manifest) => WORKLOADS.has(manifest.kind))
    .map((owner) => {
      const template = owner.spec?.template as { metadata?: { labels?: Record<string, string> }; spec: PodSpec };
      return { owner, labels: template.metadata?.labels ?? {}, spec: template.spec };
    });
}

/**
 * What a restricted Pod Security namespace and kubelet need, per container: the problems found, empty when none.
 * runAsUser must be numeric: with a named image USER kubelet cannot prove the user is not root.
 */
export function hardeningProblems(spec: PodSpec): string[] {
  const problems: string[] = [];
  const pod = spec.securityContext ?? {};
  for (const container of [...spec.containers, ...(spec.initContainers ?? [])]) {
    const effective = { ...pod, ...container.securityContext };
    const say = (what: string): number => problems.push(`${container.name}: ${what}`);
    if (effective.runAsNonRoot !== true) say('runAsNonRoot is not true');
    if (!Number.isInteger(effective.runAsUser) || (effective.runAsUser as number) <= 0) say('runAsUser is not a numeric non-root user');
    if (!Number.isInteger(effective.runAsGroup) || (effective.runAsGroup as number) <= 0) say('runAsGroup is not a numeric non-root group');
    if ((effective.seccompProfile as { type?: string } | undefined)?.type !== 'RuntimeDefault') say('seccompProfile is not RuntimeDefault');
    if (container.securityContext?.readOnlyRootFilesystem !== true) say('readOnlyRootFilesystem is not true');
    if (container.securityContext?.allowPrivilegeEscalation !== false) say('allowPrivilegeEscalation is not false');
    if (!((container.securityContext?.capabilities as { drop?: string[] } | undefined)?.drop ?? []).includes('ALL')) say('capabilities do not drop ALL');
    const { requests, limits } = container.resources ?? {};
    if (!requests?.cpu || !requests.memory || !limits?.memory) say('resources need requests.cpu, requests.memory and limits.memory');
  }
  return problems;
}

/** Names of the Secrets a pod spec reads, through env or volumes. */
export function secretsReferenced(spec: PodSpec): string[] {
  const fromEnv = spec.containers.flatMap((container) => (container.env ?? []).flatMap((env) => env.valueFrom?.secretKeyRef?.name ?? []));
  const fromVolumes = (spec.volumes ?? []).flatMap((volume) => volume.secret?.secretName ?? []);
  return [...new Set([...fromEnv, ...fromVolumes])];
}

/** True when the selector's every label is among the labels. */
export const selects = (selector: Record<string, string> | undefined, labels: Record<string, string>): boolean =>
  selector !== undefined && Object.entries(selector).every(([key, value]) => labels[key] === value);
