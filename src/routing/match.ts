/** What a route matches on: the config's `match:` mapping, and the reserved endpoints' own paths. */
export interface RouteMatch {
  /** Exact host or `*.suffix`, lower-cased; undefined = any host. */
  readonly host: string | undefined;
  /** Pattern: `/a/b`, `/a/*`, `/a/{id}`, `/a/**`. */
  readonly path: string;
  /** Upper-cased; undefined = every method. */
  readonly methods: readonly string[] | undefined;
}

/** Anything the route table and the shadow check can work on: a route of the config, or a compiled plan. */
export interface MatchEntry {
  readonly name: string;
  readonly match: RouteMatch;
}
