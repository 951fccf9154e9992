/** The `host[:port]` of an absolute URL (an Origin header); undefined when it is none. */
export function hostOfUrl(url: string | undefined): string | undefined {
  return url !== undefined && URL.canParse(url) ? new URL(url).host : undefined;
}
