/** stockctl's own version, from package.json (inlined into the bundle by esbuild). */
import pkg from '../package.json' with { type: 'json' };

export const STOCKCTL_VERSION: string = pkg.version;
