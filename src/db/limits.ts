/**
 * Constants of the database layer that the command line also shows (in `--help`), kept
 * apart from the modules that load the driver so that `--help` loads nothing but this.
 */

/** What a location is (the `locations.kind` column). */
export const LOCATION_KINDS = ['warehouse', 'store'] as const;

/** What an API token may do, least to most (the `api_tokens.role` column). */
export const TOKEN_ROLES = ['read', 'shop', 'support', 'admin'] as const;

/** The longest one statement may run, or a transaction sit idle, in seconds (STOCKCTL_STATEMENT_TIMEOUT). */
export const DEFAULT_STATEMENT_TIMEOUT_S = 30;
